"""Placeholder commands; replaced as their issue lands."""

from __future__ import annotations

import typer

from holisafe_bench.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("judge", help="(not built yet)")
    def judge_cmd() -> None:
        raise NotBuiltError("'judge' is not built yet")
