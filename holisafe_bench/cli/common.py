"""Options and helpers shared by several commands."""

from __future__ import annotations

from pathlib import Path

import typer

from holisafe_bench.paths import DEFAULT_RESULTS_ROOT, ResultsLayout

ResultsOption = typer.Option(
    DEFAULT_RESULTS_ROOT, "--results", help="Results root folder.", show_default=True
)
DecimalsOption = typer.Option(
    1,
    "--decimals",
    min=0,
    max=6,
    help="Decimals of each percentage: 1 as in the paper, 2 for the June 2025 tables.",
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

# The sample selection of the stages that send samples (run, guard).
LimitOption = typer.Option(None, "--limit", min=1, help="Only the first N samples (after filters).")
TypesOption = typer.Option(
    None, "--types", help="Type codes to keep, e.g. SSU,UUU (repeat or comma-separate)."
)
CategoriesOption = typer.Option(None, "--categories", help="Categories to keep.")
IdsOption = typer.Option(None, "--ids", help="Sample ids to keep, e.g. 12,40.")


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


def chosen_samples(
    samples: list,
    *,
    limit: int | None,
    types: list[str] | None,
    categories: list[str] | None,
    ids: list[str] | None,
    sample_n: int | None = None,
    seed: int = 0,
) -> list:
    """The samples the selection options keep (list options repeated or comma-separated)."""
    from holisafe_bench.dataset import select

    return select(
        samples,
        limit=limit,
        types=split_csv(types),
        categories=split_csv(categories),
        ids=_sample_ids(ids),
        sample_n=sample_n,
        seed=seed,
    )


def _sample_ids(values: list[str] | None) -> list[int] | None:
    from holisafe_bench.errors import HolisafeError

    ids = []
    for text in split_csv(values) or []:
        try:
            ids.append(int(text))
        except ValueError:
            raise HolisafeError(
                f"--ids: {text!r} is not a sample id (ids are integers, e.g. --ids 12,40)"
            ) from None
    return ids or None


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
    import difflib

    from holisafe_bench.registry import load_judges

    judged = results.judges_with_verdicts()
    known = sorted({*judged, *load_judges()})
    if judge not in known and not Path(judge).suffix:
        close = difflib.get_close_matches(judge, known, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        present = f"verdicts here are of {', '.join(judged)}" if judged else "no verdicts here yet"
        return f"unknown judge {judge!r}: {hint}{present}; `holisafe-bench judges` lists them all"
    return (
        f"no verdicts of judge {judge!r} under {results.root}: judge the responses first "
        f"(holisafe-bench judge --judge {judge} --all)"
    )
