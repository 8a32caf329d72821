"""Options and helpers shared by several commands."""

from __future__ import annotations

from pathlib import Path

import typer

from holisafe_bench.paths import DEFAULT_RESULTS_ROOT, ResultsLayout

ResultsOption = typer.Option(
    DEFAULT_RESULTS_ROOT, "--results", help="Results root folder.", show_default=True
)
DatasetOption = typer.Option(
    None,
    "--dataset",
    "-d",
    help=(
        "Benchmark source: 'hub' (etri-vilab/holisafe-bench, needs HF_TOKEN), 'sample' "
        "(the bundled synthetic sample), a folder with holisafe_bench.json + images/, "
        "or a .parquet / .jsonl / .json file."
    ),
)


def layout(root: Path) -> ResultsLayout:
    return ResultsLayout(root=root)


def split_csv(values: list[str] | None) -> list[str] | None:
    """Accept both repeated options and comma-separated lists."""
    if not values:
        return None
    out: list[str] = []
    for value in values:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out or None
