"""Placeholder commands; replaced as their issue lands."""

from __future__ import annotations

import typer

from holisafe_bench.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="The benchmark: info, download, verify.", no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("info")
    def info_cmd() -> None:
        raise NotBuiltError("'data info' is not built yet")
