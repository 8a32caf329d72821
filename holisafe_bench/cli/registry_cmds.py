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
    check: Path = typer.Option(None, "--check", help="Validate a model TOML file and exit."),
) -> None:
    import json

    from rich.console import Console
    from rich.table import Table

    from holisafe_bench.registry import get_model, load_models

    if check is not None:
        spec = get_model(str(check))
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
    table = Table(title=f"{len(specs)} models")
    for col in ("name", "display name", "group", "provider", "checkpoint", "paper"):
        table.add_column(col, no_wrap=col in ("name", "checkpoint"))
    for s in specs:
        table.add_row(
            s.name, s.display_name, s.group, s.provider, s.checkpoint, "yes" if s.in_paper else ""
        )
    Console().print(table)


def judges_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    import json

    from rich.console import Console
    from rich.table import Table

    from holisafe_bench.registry import load_judges

    specs = sorted(load_judges().values(), key=lambda s: s.name)
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in specs], indent=2))
        return
    table = Table(title=f"{len(specs)} judges")
    for col in ("name", "kind", "provider", "model", "description"):
        table.add_column(col)
    for s in specs:
        table.add_row(s.name, s.kind, s.provider or "-", s.model or "-", s.description)
    Console().print(table)
