"""`score` (metrics for a model and judge) and `leaderboard` (the paper's table)."""

from __future__ import annotations

from pathlib import Path

import typer

from holisafe_bench.cli.common import (
    DecimalsOption,
    ResultsOption,
    check_level,
    layout,
    nothing_judged,
    split_csv,
)


def register(app: typer.Typer) -> None:
    app.command(
        "score",
        help=(
            "ASR per unsafe type, RR, mASR (macro mean of the four ASRs; --pooled for the June "
            "2025 definition), per-category and per-subcategory tables, and invalid counts "
            "with best/worst-case mASR bounds."
        ),
    )(score_cmd)
    app.command(
        "leaderboard",
        help=(
            "The paper's table for one judge: Model, S_IS_T→S↑ (100-RR), the four ASRs, "
            "mASR, RR, in percent. Formats: csv (the paper's layout), md, latex (booktabs, "
            "best bold, second underlined, groups as blocks), html (self-contained, sortable), "
            "json. --compare FILE lists deltas against a reference table such as "
            "results/published/leaderboard_4031_sm.csv; --ci adds rank intervals. --guard "
            "writes the guard table instead (guard-score's columns, one row per guard; "
            "--model names guards, --protocol picks image or input), and --compare "
            "results/published/guard_image.csv sets it beside the paper's guard table."
        ),
    )(leaderboard_cmd)


def score_cmd(
    models: list[str] = typer.Option(None, "--model", "-m", help="Default: every judged model."),
    judge: str = typer.Option("string-match", "--judge", "-j"),
    pooled: bool = typer.Option(False, "--pooled", help="Pooled mASR (labelled; not default)."),
    decimals: int = DecimalsOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ci: float = typer.Option(
        None, "--ci", help="Bootstrap intervals at this level (e.g. 0.95), stratified by type."
    ),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed (with --ci)."),
    out: Path = ResultsOption,
) -> None:
    import json

    from holisafe_bench.errors import HolisafeError
    from holisafe_bench.scoring import CurrentResponses, score_json

    check_level(ci)
    results = layout(out)
    names = split_csv(models) or results.models_with_verdicts(judge)
    if not names:
        raise HolisafeError(nothing_judged(results, judge))
    payload = []
    responses = CurrentResponses(results)
    for name in names:
        card = _scored_card(results, name, judge, pooled, responses, alone=len(names) == 1)
        if card is None:
            continue
        intervals = _intervals(results, card, ci, seed, decimals) if ci else None
        if as_json:
            payload.append(score_json(card, decimals, intervals))
        else:
            _print_card(card, decimals, intervals, seed)
    if as_json:
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _scored_card(results, name: str, judge: str, pooled: bool, responses, *, alone: bool):
    """The model's score card, or None (said on stderr) when it has no verdicts and other
    models are being scored; alone, that is an error."""
    from holisafe_bench.errors import HolisafeError
    from holisafe_bench.scoring import score_model

    path = results.verdicts(name, judge)
    if not path.exists():
        raise HolisafeError(f"no verdicts at {path}: run `holisafe-bench judge` first")
    card = score_model(results, name, judge, pooled=pooled, responses=responses)
    if not card.skipped.no_verdicts:
        return card
    if alone:
        raise HolisafeError(card.skipped.note(name, judge))
    typer.echo(card.skipped.note(name, judge), err=True)
    return None


def _print_card(card, decimals: int, intervals: dict | None, seed: int) -> None:
    """`score` as tables: per type, per category and subcategory, intervals, then what
    was invalid or left out."""
    from rich.console import Console

    from holisafe_bench.leaderboard import percent
    from holisafe_bench.scoring import coverage_note

    console = Console()
    o = card.overall
    console.print(_type_table(card, decimals))
    coverage = coverage_note(o)
    if coverage:
        console.print(coverage, soft_wrap=True, markup=False)
    console.print(_category_table(card, decimals))
    if intervals:
        console.print(_interval_table(intervals, seed, decimals))
    best, worst = o.masr_bounds()
    unreadable = card.skipped.unreadable
    console.print(
        f"invalid verdicts: {o.invalid} of {o.n}; mASR if all were adherence "
        f"{percent(best, decimals)}%, if all were violations {percent(worst, decimals)}%"
        + (f"; {unreadable} unreadable line(s) skipped" if unreadable else "")
    )
    skipped = card.skipped
    left_out = (skipped.stale_text(), skipped.unjudged_text())
    if any(left_out):
        hint = skipped.rejudge_hint(card.model, card.judge)
        console.print("; ".join(p for p in (*left_out, hint) if p), soft_wrap=True, markup=False)


def _type_table(card, decimals: int):
    from rich.table import Table

    from holisafe_bench.leaderboard import percent
    from holisafe_bench.taxonomy import TYPES

    o = card.overall
    title = f"{card.model} / {card.judge}: {card.masr_label} {percent(o.masr, decimals)}%"
    table = Table(title=title)
    for col in ("type", "n", "valid", "invalid", "violations", "error rate %"):
        table.add_column(col, justify="right" if col != "type" else "left")
    for t in TYPES:
        s = o.per_type[t]
        label = f"{t} ({'RR' if t == 'SSS' else 'ASR'})"
        counts = (str(x) for x in (s.n, s.valid, s.invalid, s.violations))
        table.add_row(label, *counts, percent(s.rate, decimals))
    return table


def _category_table(card, decimals: int):
    from rich.table import Table

    from holisafe_bench.leaderboard import percent

    def rates(g) -> tuple[str, str, str]:
        return str(g.n), percent(g.masr, decimals), percent(g.rr, decimals)

    cats = Table(title="per category / subcategory")
    for col in ("category", "subcategory", "n", "mASR %", "RR %"):
        cats.add_column(col)
    listed: set[str] = set()
    for cat, g in card.per_category.items():
        cats.add_row(cat, "(all)", *rates(g))
        for sub, sg in card.per_subcategory.items():
            if sub in _subs_of(cat):
                cats.add_row("", sub, *rates(sg))
                listed.add(sub)
    # Subcategories the taxonomy does not name (a dataset read with --lenient) still show.
    for sub, sg in card.per_subcategory.items():
        if sub not in listed:
            cats.add_row("(not in the taxonomy)", sub, *rates(sg))
    return cats


def _interval_table(intervals: dict, seed: int, decimals: int):
    from rich.table import Table

    def row(metric: str, bounds: list[float | None]) -> tuple[str, ...]:
        return (metric, *("n/a" if x is None else f"{x:.{decimals}f}" for x in bounds))

    table = Table(
        title=f"{intervals['level']:.0%} bootstrap intervals (stratified by type, seed {seed})"
    )
    for col in ("metric", "estimate %", "low %", "high %"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for metric, bounds in intervals["overall"].items():
        table.add_row(*row(metric, bounds))
    for category, metrics in intervals["per_category"].items():
        for metric, bounds in metrics.items():
            table.add_row(*row(f"{category} {metric}", bounds))
    return table


def _subs_of(category: str) -> tuple[str, ...]:
    from holisafe_bench.taxonomy import CATEGORY_SUBCATEGORIES

    return CATEGORY_SUBCATEGORIES.get(category, ())


def leaderboard_cmd(
    judge: str = typer.Option("string-match", "--judge", "-j"),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv | md | latex | html | json"),
    pooled: bool = typer.Option(
        False, "--pooled", help="Pooled mASR, as in the June 2025 tables (labelled option)."
    ),
    decimals: int = DecimalsOption,
    double_round: bool = typer.Option(
        False,
        "--double-round",
        help="Round to one more decimal first, as the June 2025 tables did (off by default).",
    ),
    models: list[str] = typer.Option(None, "--model", "-m", help="Default: every judged model."),
    output: Path = typer.Option(
        None, "--output", "-o", help="Write to this file instead of stdout."
    ),
    compare: Path = typer.Option(
        None, "--compare", help="A reference leaderboard CSV: print deltas against it."
    ),
    ci: float = typer.Option(
        None, "--ci", help="Add rank intervals at this level (e.g. 0.95), by bootstrap."
    ),
    guard: bool = typer.Option(
        False, "--guard", help="The guard classification table (holisafe-bench guard-score)."
    ),
    protocol: str = typer.Option("image", "--protocol", help="With --guard: image or input."),
    out: Path = ResultsOption,
) -> None:
    # Long: only in its signature (one typer option per flag).
    from holisafe_bench.analysis.published import read_leaderboard_csv
    from holisafe_bench.errors import HolisafeError
    from holisafe_bench.leaderboard import (
        FORMATS,
        build_leaderboard,
        skipped_notes,
        write_comparison,
        write_leaderboard,
    )

    if fmt not in FORMATS:
        raise HolisafeError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    check_level(ci)
    if guard:  # its own rows, written by the same format table
        from holisafe_bench.cli.guard_score_cmds import guard_leaderboard

        not_for_guards = {"--pooled": pooled, "--double-round": double_round, "--ci": ci}
        guard_leaderboard(
            fmt=fmt, protocol=protocol, decimals=decimals, guards=models, output=output,
            compare=compare, out=out, refused=not_for_guards,
        )  # fmt: skip
        return
    results = layout(out)
    rows = build_leaderboard(results, judge, pooled=pooled, models=split_csv(models))
    if not rows:
        raise HolisafeError(nothing_judged(results, judge))
    for note in skipped_notes(rows):
        typer.echo(note, err=True)
    if compare is not None:
        reference = read_leaderboard_csv(compare)
        text = write_comparison(rows, reference, fmt, decimals, double_round)
    else:
        text = write_leaderboard(rows, fmt, decimals, double_round)
    if ci:
        _print_rank_intervals(results, judge, rows, ci, pooled)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text, nl=False)


def _print_rank_intervals(results, judge: str, rows, level: float, pooled: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from holisafe_bench.analysis.bootstrap import rank_intervals
    from holisafe_bench.analysis.verdict_matrix import load_arrays

    arrays = {r.model: load_arrays(results, r.model, judge) for r in rows}
    ranks = rank_intervals(arrays, level=level, pooled=pooled)
    label = "pooled mASR" if pooled else "mASR"
    table = Table(title=f"rank by {label} (1 = safest), {level:.0%} bootstrap interval")
    for col in ("model", "rank", "interval"):
        table.add_column(col)
    for row in sorted(rows, key=lambda r: ranks[r.model][0]):
        rank, low, high = ranks[row.model]
        table.add_row(row.display_name, str(rank), f"{low}-{high}")
    Console(stderr=True).print(table)


def _intervals(results, card, level: float, seed: int, decimals: int) -> dict:
    """Bootstrap intervals of the card's metrics: each estimate is the card's own value
    (exact, rounded as the score table rounds it), mASR as the card defines it (macro or
    pooled)."""
    from holisafe_bench.analysis.bootstrap import category_intervals, score_intervals
    from holisafe_bench.analysis.verdict_matrix import load_arrays
    from holisafe_bench.scoring import interval_percents
    from holisafe_bench.taxonomy import SAFE_TYPE

    arrays = load_arrays(results, card.model, card.judge)
    pooled, o = card.pooled, card.overall
    overall = score_intervals(arrays, level=level, seed=seed, pooled=pooled)
    exact = {t: o.per_type[t].rate for t in o.per_type} | {"mASR": o.masr}
    names = {t: f"ASR {t}" for t in o.asr} | {SAFE_TYPE: "RR (SSS)", "mASR": card.masr_label}
    by_category = category_intervals(arrays, level=level, seed=seed, pooled=pooled)

    def cells(estimate, interval) -> list:
        return interval_percents(estimate, interval.low, interval.high, decimals)

    def category_exact(category: str, metric: str):
        group = card.per_category[category]
        return group.masr if metric == "mASR" else group.rr

    return {
        "level": level,
        "overall": {names[k]: cells(exact[k], v) for k, v in overall.items() if k in names},
        "per_category": {
            cat: {k: cells(category_exact(cat, k), v) for k, v in metrics.items()}
            for cat, metrics in by_category.items()
        },
    }
