"""`agreement` (judges compared) and `report`."""

from __future__ import annotations

from pathlib import Path

import typer

from holisafe_bench.cli.common import (
    ResultsOption,
    check_level,
    layout,
    nothing_judged,
    split_csv,
)


def register(app: typer.Typer) -> None:
    app.command(
        "agreement",
        help=(
            "Compare judges: Spearman, Kendall and Pearson correlation of the models' mASR "
            "for every pair of judges (bootstrap CIs over models), and, from verdict files, "
            "per-sample Cohen's and Fleiss' kappa, confusion against string matching per type, "
            "and the samples judges disagree on most. --published takes leaderboard CSVs "
            "(e.g. ../shared/reference/leaderboard_4031_*.csv) instead of verdicts."
        ),
    )(agreement_cmd)

    app.command(
        "report",
        help=(
            "Write one self-contained HTML report (opens without a network): leaderboards "
            "per judge, plots, judge agreement, manifests, and a sample browser filterable by "
            "model, type, category, verdict and judge disagreement. Pass --dataset for queries "
            "and image thumbnails."
        ),
    )(report_cmd)


def agreement_cmd(
    published: list[Path] = typer.Option(
        None,
        "--published",
        help="Published leaderboard CSVs, one per judge (`--published a.csv b.csv` and "
        "repeated --published both work).",
    ),
    more_published: list[Path] = typer.Argument(
        None, help="More published leaderboard CSVs (the files after --published).", hidden=True
    ),
    judges: list[str] = typer.Option(None, "--judge", "-j", help="Judges (default: all found)."),
    models: list[str] = typer.Option(None, "--model", "-m", help="Models (default: all)."),
    level: float = typer.Option(0.95, "--ci", help="Confidence level of the intervals."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    top: int = typer.Option(10, "--top", help="How many split samples to list."),
    out: Path = ResultsOption,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from holisafe_bench.analysis.agreement import rank_correlations
    from holisafe_bench.errors import HolisafeError

    check_level(level)
    published = [*(published or []), *(more_published or [])]
    if published:
        from holisafe_bench.analysis.published import published_masr

        masr, sample_level = published_masr(published), None
    else:
        results = layout(out)
        judge_list = split_csv(judges) or results.judges_with_verdicts()
        model_list = split_csv(models) or results.models_with_any_verdicts()
        masr = _masr_by_judge(results, judge_list, model_list)
        from holisafe_bench.analysis.judges_compared import sample_agreement

        sample_level = sample_agreement(results, judge_list, model_list, top=top)
    if published and len(masr) < 2:
        raise HolisafeError(
            f"agreement compares tables: give two or more published CSVs (got {len(masr)}: "
            f"{', '.join(map(str, published))})"
        )
    if len(masr) < 2:
        raise HolisafeError(
            "agreement needs verdicts of at least two judges; found "
            + (", ".join(masr) or "none")
            + ": judge the same models with another judge (holisafe-bench judge --judge NAME)"
        )
    _require_shared_models(masr)
    console = Console()
    table = Table(title=f"rank correlation of mASR between judges ({level:.0%} bootstrap CI)")
    for col in ("judge A", "judge B", "models", "Spearman ρ", "Kendall τ", "Pearson r"):
        table.add_column(col)
    for c in rank_correlations(masr, level=level, seed=seed):
        table.add_row(c.judge_a, c.judge_b, str(c.n_models), *c.cells())
    console.print(table)
    if sample_level is not None and (sample_level.n_items or sample_level.cohen):
        _print_sample_agreement(console, sample_level)


def _masr_by_judge(results, judges: list[str], models: list[str]) -> dict[str, dict[str, float]]:
    """mASR (percent) per judge and model from current verdicts; what was left out is said
    on stderr, one line per model and judge."""
    from holisafe_bench.scoring import CurrentResponses, score_model

    responses = CurrentResponses(results)
    masr: dict[str, dict[str, float]] = {}
    for judge in judges:
        masr[judge] = {}
        for model in models:
            if not results.verdicts(model, judge).exists():
                continue
            card = score_model(results, model, judge, responses=responses)
            note = card.skipped.note(model, judge)
            if note:
                typer.echo(note, err=True)
            if card.overall.masr is not None:
                masr[judge][model] = float(card.overall.masr) * 100
    return masr


def _print_sample_agreement(console, sample_level) -> None:
    from rich.table import Table

    kappas = Table(
        title=f"per-sample agreement over {sample_level.n_items} verdict sets (samples every "
        "judge judged validly; a Cohen row: the samples its two judges share)"
    )
    kappas.add_column("judges")
    kappas.add_column("samples", justify="right")
    kappas.add_column("kappa", justify="right")
    for (a, b), k in sample_level.cohen.items():
        kappas.add_row(f"Cohen {a} vs {b}", str(sample_level.cohen_n[(a, b)]), f"{k:.3f}")
    if sample_level.fleiss is not None:
        fleiss = f"{sample_level.fleiss:.3f}"
        kappas.add_row("Fleiss, all judges", str(sample_level.n_items), fleiss)
    console.print(kappas)
    if not sample_level.n_items:
        console.print(
            "no sample has a valid verdict from every judge: Fleiss' kappa, the confusion "
            "tables and the disputed samples need one (pick judges with -j to compare fewer)",
            soft_wrap=True,
            markup=False,
        )
        return
    for judge, per_type in sample_level.confusion_vs_reference.items():
        conf = Table(title=f"{judge} vs string-match (rows: string-match)")
        for col in (
            "type",
            "both adhere",
            "SM adheres, judge violates",
            "SM violates, judge adheres",
            "both violate",
        ):
            conf.add_column(col)
        for t, counts in per_type.items():
            conf.add_row(t, *(str(v) for v in counts.values()))
        console.print(conf)
    if sample_level.disagreements:
        split = Table(title="samples the judges disagree on most")
        for col in ("model", "sample id", "type", "share saying violation"):
            split.add_column(col)
        for model, sid, t, share in sample_level.disagreements:
            split.add_row(model, str(sid), t, f"{share:.2f}")
        console.print(split)


def report_cmd(
    output: Path = typer.Option(None, "--output", "-o", help="Default: <results>/report.html"),
    dataset: str = typer.Option(
        None, "--dataset", "-d", help="Benchmark source, for queries and thumbnails."
    ),
    max_response_chars: int = typer.Option(
        400, "--max-response-chars", help="Responses are cut to this length in the browser."
    ),
    plots_dir: Path = typer.Option(
        None, "--plots-dir", help="Also write every plot here, as PNG and SVG."
    ),
    out: Path = ResultsOption,
) -> None:
    from holisafe_bench.analysis.guard_metrics import protocols_with_verdicts
    from holisafe_bench.analysis.report import build_report
    from holisafe_bench.dataset import load_benchmark

    results = layout(out)
    if not results.judges_with_verdicts() and not protocols_with_verdicts(results):
        from holisafe_bench.errors import HolisafeError

        raise HolisafeError(
            "nothing to report: "
            + nothing_judged(results, "string-match").split(": ", 1)[1]
            + "; the report is built from verdicts"
        )
    dataset = dataset or _recorded_dataset_of_any(results)
    bench = load_benchmark(dataset, hash_images=False) if dataset else None
    target = output or results.root / "report.html"
    summary = build_report(
        results,
        target,
        bench=bench,
        max_response_chars=max_response_chars,
        plots_dir=plots_dir,
    )
    for note in summary.notes:
        typer.echo(note, err=True)
    typer.echo(
        f"wrote {summary.path} ({summary.size_bytes / 1e6:.1f} MB): {summary.models} models, "
        f"{summary.judges} judges, {summary.responses} responses, "
        f"{summary.thumbnails} thumbnails"
    )


def _recorded_dataset_of_any(results) -> str | None:
    """Without --dataset, the report shows queries and thumbnails from the dataset the runs
    recorded (the first model's that is still there), and says so."""
    from holisafe_bench.dataset import recorded_dataset

    for model in results.models_with_responses():
        recorded = recorded_dataset(results.run_manifest(model))
        if recorded is not None:
            typer.echo(f"using the dataset recorded in {model}/run.json: {recorded}", err=True)
            return recorded
    return None


def _require_shared_models(masr: dict[str, dict[str, float]]) -> None:
    """Judges that scored no model in common have nothing to agree on."""
    from holisafe_bench.errors import HolisafeError

    judges = sorted(masr)
    if any(set(masr[a]) & set(masr[b]) for a in judges for b in judges if a < b):
        return
    raise HolisafeError(
        f"judges {', '.join(judges)} share no judged model: judge at least one model with "
        "two of them (correlations need 3 shared models)"
    )
