"""Placeholder commands; replaced as their issue lands."""

from __future__ import annotations

import typer

from holisafe_bench.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("demo", help="(not built yet)")
    def demo_cmd() -> None:
        raise NotBuiltError("'demo' is not built yet")
