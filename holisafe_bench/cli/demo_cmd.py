"""`demo`: the whole pipeline offline on the bundled sample."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "demo",
        help=(
            "Run the whole pipeline offline on the bundled synthetic sample: a tiny "
            "random-weight LLaVA through the transformers provider, string-match judging, "
            "scoring and the leaderboard. Needs no GPU, network or keys; its numbers are noise."
        ),
    )(demo_cmd)


def demo_cmd(
    out: Path = typer.Option(
        Path("results/demo"), "--results", help="Results root the demo writes."
    ),
    limit: int = typer.Option(None, "--limit", min=1, help="Only the first N samples."),
) -> None:
    from holisafe_bench.demo import run_demo

    run_demo(out, limit=limit, say=typer.echo)
