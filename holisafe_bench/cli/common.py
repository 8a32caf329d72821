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


def check_level(level: float | None, option: str = "--ci") -> float | None:
    """A confidence level is a fraction: 0.95, not 95."""
    from holisafe_bench.errors import HolisafeError

    if level is not None and not 0 < level < 1:
        hint = f" (did you mean {level / 100:g}?)" if 1 < level < 100 else ""
        raise HolisafeError(
            f"{option} {level:g}: a confidence level is a fraction in (0, 1), e.g. 0.95 for "
            f"95%{hint}"
        )
    return level


def nothing_judged(results: ResultsLayout, judge: str) -> str:
    """What to run first when a command finds no verdicts of `judge`."""
    if not results.models_with_responses():
        return (
            f"no results under {results.root}: run a model first "
            "(holisafe-bench run --model NAME), then judge it "
            f"(holisafe-bench judge --judge {judge} --all); or point --results at your folder"
        )
    return (
        f"no verdicts of judge {judge!r} under {results.root}: judge the responses first "
        f"(holisafe-bench judge --judge {judge} --all)"
    )
