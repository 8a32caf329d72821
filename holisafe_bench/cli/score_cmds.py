"""Placeholder commands; replaced as their issue lands."""

from __future__ import annotations

import typer

from holisafe_bench.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("score", help="(not built yet)")
    def score_cmd() -> None:
        raise NotBuiltError("'score' is not built yet")

    @app.command("leaderboard", help="(not built yet)")
    def leaderboard_cmd() -> None:
        raise NotBuiltError("'leaderboard' is not built yet")
