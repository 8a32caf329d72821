"""`guard-score` (a guard's classification metrics) and the guard table of `leaderboard
--guard`."""

from __future__ import annotations

from pathlib import Path

import typer

from holisafe_bench.cli.common import DecimalsOption, ResultsOption, check_level, layout, split_csv

GUARD_SCORE_HELP = (
    "Classification metrics of guard verdicts (holisafe-bench guard), unsafe as the positive "
    "class, in percent: accuracy, precision, recall, F1, specificity, AUROC and AUPRC (when "
    "the guard gives scores), 20-way accuracy (when it predicts categories), invalid "
    "outputs (left out of every metric and counted) and n. --json adds recall per category, "
    "accuracy per type and the 20-way confusion matrix; --ci bootstrap intervals stratified "
    "by type, as in score."
)


def register(app: typer.Typer) -> None:
    app.command("guard-score", help=GUARD_SCORE_HELP)(guard_score_cmd)


def _check_protocol(protocol: str) -> str:
    from holisafe_bench.errors import HolisafeError
    from holisafe_bench.guarding.verdict import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise HolisafeError(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    return protocol


def nothing_guarded(results, protocol: str) -> str:
    """What to run first when no guard verdicts of `protocol` are found."""
    return (
        f"no guard verdicts (protocol {protocol}) under {results.root}: run a guard first "
        f"(holisafe-bench guard --model NAME --protocol {protocol}); or point --results at "
        "your folder"
    )


def guard_rows(results, protocol: str, guards: list[str] | None):
    from holisafe_bench.errors import HolisafeError
    from holisafe_bench.leaderboard.guard_table import build_guard_rows

    rows = build_guard_rows(results, protocol, guards)
    if not rows:
        raise HolisafeError(nothing_guarded(results, protocol))
    return rows


def guard_score_cmd(
    guards: list[str] = typer.Option(
        None, "--guard", "-g", help="Guards to score (default: every guard with verdicts)."
    ),
    protocol: str = typer.Option("image", "--protocol", help="image or input."),
    decimals: int = DecimalsOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable, with every detail."),
    ci: float = typer.Option(
        None, "--ci", help="Bootstrap intervals at this level (e.g. 0.95), stratified by type."
    ),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed (with --ci)."),
    out: Path = ResultsOption,
) -> None:
    import json

    from holisafe_bench.analysis.guard_metrics import guard_json

    check_level(ci)
    results = layout(out)
    rows = guard_rows(results, _check_protocol(protocol), split_csv(guards))
    intervals = {r.guard: _intervals(results, r, protocol, ci, seed, decimals) for r in rows if ci}
    if as_json:
        payload = [guard_json(r.score, decimals, intervals.get(r.guard)) for r in rows]
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    _print_table(rows, protocol, decimals)
    if ci:
        _print_intervals(rows, intervals, seed, decimals)


def _intervals(results, row, protocol: str, level: float, seed: int, decimals: int) -> dict:
    """Bootstrap intervals of the guard's metrics, each estimate the row's own (exact) value,
    rounded as the table rounds it."""
    from holisafe_bench.analysis.guard_metrics import guard_intervals, load_guard_records
    from holisafe_bench.scoring import interval_percents

    records, _ = load_guard_records(results, row.guard, protocol)
    found = guard_intervals(records, level=level, seed=seed)
    return {
        "level": level,
        "stratified_by": "type",
        **{
            name: interval_percents(row.score.metric(name), v.low, v.high, decimals)
            for name, v in found.items()
        },
    }


SHORT_HEADERS = {
    "Accuracy": "Acc",
    "Precision": "Prec",
    "Recall": "Rec",
    "Specificity": "Spec",
    "20-way accuracy": "20-way",
    "invalid": "inv",
}


def _print_table(rows, protocol: str, decimals: int) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from holisafe_bench.leaderboard.guard_table import GUARD_COLUMNS

    # Eleven columns need about 100 characters: never cut a number to fit a narrower screen.
    console = Console(width=max(Console().width, 110))
    table = Table(
        title=f"guard classification, protocol {protocol} (percent; unsafe = positive)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in GUARD_COLUMNS:  # short headers, so the table fits 80 columns
        if col == "Guard":
            table.add_column(col, justify="left", no_wrap=True)
        else:
            table.add_column(SHORT_HEADERS.get(col, col), justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row.cells(decimals))
    console.print(table)
    for row in rows:
        note = _counts_note(row.score, decimals)
        if note:
            console.print(note, soft_wrap=True, markup=False, highlight=False)


def _counts_note(score, decimals: int) -> str | None:
    """One line per guard whose verdicts were not all valid: what was left out, and the
    accuracy had every invalid output and failed call been wrong or right."""
    from holisafe_bench.leaderboard import percent

    parts = []
    if score.invalid:
        reasons = ", ".join(f"{n} {why}" for why, n in score.invalid_reasons.items())
        parts.append(f"{score.invalid} invalid ({reasons})")
    if score.errors:
        parts.append(f"{score.errors} error(s) with no output")
    if score.invalid or score.errors:
        low, high = score.accuracy_bounds()
        parts.append(
            f"accuracy if all of these were wrong {percent(low, decimals)}%, if all were "
            f"right {percent(high, decimals)}%"
        )
    if score.missing:
        parts.append(f"{score.missing} selected sample(s) without a verdict")
    if score.errors or score.missing:
        parts.append(
            f"re-run `holisafe-bench guard --model {score.guard} --protocol {score.protocol}` "
            "to complete them"
        )
    if score.unreadable:
        parts.append(f"{score.unreadable} unreadable line(s) skipped")
    if score.valid and score.scored < score.valid:
        parts.append(f"AUROC/AUPRC n/a: {score.valid - score.scored} valid verdict(s) lack a score")
    return f"{score.display_name}: " + "; ".join(parts) if parts else None


def _print_intervals(rows, intervals: dict, seed: int, decimals: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from holisafe_bench.leaderboard.guard_table import COLUMN_METRIC

    metric_names = {m: c for c, m in COLUMN_METRIC.items()}
    level = next(iter(intervals.values()))["level"]
    table = Table(title=f"{level:.0%} bootstrap intervals (stratified by type, seed {seed})")
    for col in ("guard", "metric", "estimate %", "low %", "high %"):
        table.add_column(col, justify="left" if col in ("guard", "metric") else "right")
    for row in rows:
        for metric, name in metric_names.items():
            bounds = intervals[row.guard].get(metric)
            if bounds is not None:
                cells = ("n/a" if x is None else f"{x:.{decimals}f}" for x in bounds)
                table.add_row(row.display_name, name, *cells)
    Console().print(table)


def guard_leaderboard(
    *,
    fmt: str,
    protocol: str,
    decimals: int,
    guards: list[str] | None,
    output: Path | None,
    compare: Path | None,
    out: Path,
    refused: dict[str, object] | None = None,
) -> None:
    """`leaderboard --guard`: the guard table in `fmt`, or its comparison with a published
    guard table (--compare FILE). `refused`: options of the main table given (a set value
    is an error: they mean nothing for guards)."""
    from holisafe_bench.errors import HolisafeError
    from holisafe_bench.leaderboard.guard_table import (
        comparison_notes,
        read_guard_csv,
        write_guard_comparison,
        write_guard_leaderboard,
    )

    given = [name for name, value in (refused or {}).items() if value]
    if given:
        raise HolisafeError(
            f"{', '.join(given)}: not for the guard table (--guard); guard-score --ci gives "
            "the guards' bootstrap intervals"
        )
    rows = guard_rows(layout(out), _check_protocol(protocol), split_csv(guards))
    if compare is not None:
        reference = read_guard_csv(compare)
        for note in comparison_notes(rows, reference):
            typer.echo(note, err=True)
        text = write_guard_comparison(rows, reference, fmt, decimals)
    else:
        text = write_guard_leaderboard(rows, fmt, decimals)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text, nl=False)
