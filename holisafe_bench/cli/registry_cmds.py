"""Placeholder commands; replaced as their issue lands."""

from __future__ import annotations

import typer

from holisafe_bench.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("models", help="(not built yet)")
    def models_cmd() -> None:
        raise NotBuiltError("'models' is not built yet")

    @app.command("judges", help="(not built yet)")
    def judges_cmd() -> None:
        raise NotBuiltError("'judges' is not built yet")
