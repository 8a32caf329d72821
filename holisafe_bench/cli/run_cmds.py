"""Placeholder commands; replaced as their issue lands."""

from __future__ import annotations

import typer

from holisafe_bench.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("run", help="(not built yet)")
    def run_cmd() -> None:
        raise NotBuiltError("'run' is not built yet")

    @app.command("merge", help="(not built yet)")
    def merge_cmd() -> None:
        raise NotBuiltError("'merge' is not built yet")
