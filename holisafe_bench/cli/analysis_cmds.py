"""Placeholder commands; replaced as their issue lands."""

from __future__ import annotations

import typer

from holisafe_bench.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("agreement", help="(not built yet)")
    def agreement_cmd() -> None:
        raise NotBuiltError("'agreement' is not built yet")

    @app.command("report", help="(not built yet)")
    def report_cmd() -> None:
        raise NotBuiltError("'report' is not built yet")
