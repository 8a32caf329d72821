"""Placeholder commands; replaced as their issue lands."""

from __future__ import annotations

import typer

from holisafe_bench.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("import", help="(not built yet)")
    def import_cmd() -> None:
        raise NotBuiltError("'import' is not built yet")

    @app.command("export", help="(not built yet)")
    def export_cmd() -> None:
        raise NotBuiltError("'export' is not built yet")
