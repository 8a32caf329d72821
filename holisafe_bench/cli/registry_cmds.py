"""`models` and `judges`: what is registered."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "models",
        help=(
            "List the registered models (model_adapters/*.toml). Add a model by writing a TOML "
            "file and passing its path to --model; check it first with --check FILE."
        ),
    )(models_cmd)
    app.command("judges", help="List the registered judges (judges/*.toml).")(judges_cmd)


def models_cmd(
    group: str = typer.Option(None, "--group", help="open-weight | closed | safety-tuned"),
    provider: str = typer.Option(None, "--provider", help="vllm | openai | anthropic | ..."),
    paper_only: bool = typer.Option(False, "--paper-only", help="Only the 21 published models."),
    as_json: bool = typer.Option(False, "--json"),
    wide: bool = typer.Option(
        False, "--wide", help="Every column (display name, checkpoint); wider than 80."
    ),
    check: Path = typer.Option(None, "--check", help="Validate a model TOML file and exit."),
) -> None:
    import json

    from holisafe_bench.registry import get_model, load_models

    if check is not None:
        spec = get_model(str(check))  # the same checks `run` makes; errors are one line
        typer.echo(f"{check}: valid model {spec.name!r} ({spec.provider}, {spec.checkpoint})")
        return
    specs = [
        s
        for s in load_models().values()
        if (group is None or s.group == group)
        and (provider is None or s.provider == provider)
        and (not paper_only or s.in_paper)
    ]
    specs.sort(key=lambda s: (s.paper_order or 1000, s.name))
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in specs], indent=2))
        return
    columns = ["name", "group", "provider", "paper"]
    if wide:
        columns[1:1] = ["display name"]
        columns[-1:-1] = ["checkpoint"]
    rows = [
        {
            "name": s.name,
            "display name": s.display_name,
            "group": s.group,
            "provider": s.provider,
            "checkpoint": s.checkpoint,
            "paper": "yes" if s.in_paper else "",
        }
        for s in specs
    ]
    hint = "" if wide else " (--wide for display names and checkpoints)"
    _print_table(f"{len(specs)} models{hint}", columns, rows, wide=wide)


def _print_table(title: str, columns: list[str], rows: list[dict[str, str]], *, wide: bool) -> None:
    """A compact table; cells are never cut (the default columns fit 80 characters)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for col in columns:
        table.add_column(col, no_wrap=True, overflow="fold")
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    # A wide table is allowed past the terminal (a pager or a wide window shows it whole).
    Console(width=10_000 if wide else None).print(table)


def judges_cmd(
    as_json: bool = typer.Option(False, "--json"),
    wide: bool = typer.Option(False, "--wide", help="Also the description column."),
) -> None:
    import json

    from holisafe_bench.registry import load_judges

    specs = sorted(load_judges().values(), key=lambda s: s.name)
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in specs], indent=2))
        return
    columns = ["name", "kind", "provider", "model"] + (["description"] if wide else [])
    rows = [
        {
            "name": s.name,
            "kind": s.kind,
            "provider": s.provider or "-",
            "model": s.model or "-",
            "description": s.description,
        }
        for s in specs
    ]
    hint = "" if wide else " (--wide for descriptions)"
    _print_table(f"{len(specs)} judges{hint}", columns, rows, wide=wide)
