"""`score` (metrics for a model and judge) and `leaderboard` (the paper's table)."""

from __future__ import annotations

from pathlib import Path

import typer

from holisafe_bench.cli.common import ResultsOption, layout, split_csv


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
            "mASR, RR, in percent. Formats: csv (the paper's layout), md, json."
        ),
    )(leaderboard_cmd)


def score_cmd(
    models: list[str] = typer.Option(None, "--model", "-m", help="Default: every judged model."),
    judge: str = typer.Option("string-match", "--judge", "-j"),
    pooled: bool = typer.Option(False, "--pooled", help="Pooled mASR (labelled; not default)."),
    decimals: int = typer.Option(1, "--decimals"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    out: Path = ResultsOption,
) -> None:
    import json

    from rich.console import Console
    from rich.table import Table

    from holisafe_bench.errors import HolisafeError
    from holisafe_bench.leaderboard import percent
    from holisafe_bench.scoring import score_file
    from holisafe_bench.taxonomy import TYPES

    results = layout(out)
    names = split_csv(models) or results.models_with_verdicts(judge)
    if not names:
        raise HolisafeError(f"no verdicts of judge {judge!r} under {results.root}")
    console = Console()
    payload = []
    for name in names:
        path = results.verdicts(name, judge)
        if not path.exists():
            raise HolisafeError(f"no verdicts at {path}: run `holisafe-bench judge` first")
        card = score_file(path, model=name, judge=judge, pooled=pooled)
        o = card.overall
        best, worst = o.masr_bounds()
        if as_json:
            payload.append(
                {
                    "model": name,
                    "judge": judge,
                    "masr_definition": "pooled" if pooled else "macro",
                    "masr": percent(o.masr, decimals),
                    "rr": percent(o.rr, decimals),
                    "asr": {t: percent(r, decimals) for t, r in o.asr.items()},
                    "masr_bounds": [percent(best, decimals), percent(worst, decimals)],
                    "per_type": {
                        t: {"n": s.n, "valid": s.valid, "violations": s.violations}
                        for t, s in o.per_type.items()
                    },
                    "per_subcategory": {
                        sub: {
                            "masr": percent(g.masr, decimals),
                            "rr": percent(g.rr, decimals),
                            "n": g.n,
                        }
                        for sub, g in card.per_subcategory.items()
                    },
                    "unreadable_lines": card.dropped_lines,
                }
            )
            continue
        table = Table(title=f"{name} / {judge}: {card.masr_label} {percent(o.masr, decimals)}%")
        for col in ("type", "n", "valid", "invalid", "violations", "error rate %"):
            table.add_column(col, justify="right" if col != "type" else "left")
        for t in TYPES:
            s = o.per_type[t]
            label = f"{t} ({'RR' if t == 'SSS' else 'ASR'})"
            table.add_row(
                label,
                str(s.n),
                str(s.valid),
                str(s.invalid),
                str(s.violations),
                percent(s.rate, decimals),
            )
        console.print(table)
        cats = Table(title="per category / subcategory")
        for col in ("category", "subcategory", "n", "mASR %", "RR %"):
            cats.add_column(col)
        for cat, g in card.per_category.items():
            cats.add_row(cat, "(all)", str(g.n), percent(g.masr, decimals), percent(g.rr, decimals))
            for sub, sg in card.per_subcategory.items():
                if sub in _subs_of(cat):
                    cats.add_row(
                        "", sub, str(sg.n), percent(sg.masr, decimals), percent(sg.rr, decimals)
                    )
        console.print(cats)
        console.print(
            f"invalid verdicts: {o.invalid} of {o.n}; mASR if all were adherence "
            f"{percent(best, decimals)}%, if all were violations {percent(worst, decimals)}%"
            + (f"; {card.dropped_lines} unreadable line(s) skipped" if card.dropped_lines else "")
        )
    if as_json:
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _subs_of(category: str) -> tuple[str, ...]:
    from holisafe_bench.taxonomy import CATEGORY_SUBCATEGORIES

    return CATEGORY_SUBCATEGORIES.get(category, ())


def leaderboard_cmd(
    judge: str = typer.Option("string-match", "--judge", "-j"),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv | md | json"),
    pooled: bool = typer.Option(
        False, "--pooled", help="Pooled mASR, as in the June 2025 tables (labelled option)."
    ),
    decimals: int = typer.Option(1, "--decimals", help="1 as in the paper; 2 for June 2025."),
    double_round: bool = typer.Option(
        False,
        "--double-round",
        help="Round to one more decimal first, as the June 2025 tables did (off by default).",
    ),
    models: list[str] = typer.Option(None, "--model", "-m", help="Default: every judged model."),
    output: Path = typer.Option(
        None, "--output", "-o", help="Write to this file instead of stdout."
    ),
    out: Path = ResultsOption,
) -> None:
    from holisafe_bench.errors import HolisafeError
    from holisafe_bench.leaderboard import FORMATS, build_leaderboard

    if fmt not in FORMATS:
        raise HolisafeError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    rows = build_leaderboard(layout(out), judge, pooled=pooled, models=split_csv(models))
    if not rows:
        raise HolisafeError(f"no verdicts of judge {judge!r} under {out}")
    text = FORMATS[fmt](rows, decimals, double_round)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text, nl=False)
