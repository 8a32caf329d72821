"""The guard leaderboard: one row per guard with verdicts of a protocol, written in every
format of `formats.FORMATS` through the same writers (CSV, Markdown, LaTeX, the sortable
HTML page, JSON); and its comparison against the paper's guard table
(results/published/guard_image.csv)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from holisafe_bench.analysis.guard_metrics import (
    METRICS,
    GuardScore,
    guard_json,
    guards_with_verdicts,
    read_guard_manifest,
    score_guard_file,
)
from holisafe_bench.errors import HolisafeError
from holisafe_bench.leaderboard.formats import (
    FORMATS,
    SortableTable,
    csv_text,
    latex_escape,
    markdown_text,
)
from holisafe_bench.leaderboard.tables import compared_cells, percent
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.scoring import rounded_percent

# The metric columns of the table, in METRICS order, then the counts.
METRIC_COLUMNS: tuple[str, ...] = (
    "Accuracy",
    "Precision",
    "Recall",
    "F1",
    "Specificity",
    "AUROC",
    "AUPRC",
    "20-way accuracy",
)
GUARD_COLUMNS: tuple[str, ...] = ("Guard", *METRIC_COLUMNS, "invalid", "n")
COLUMN_METRIC = dict(zip(METRIC_COLUMNS, METRICS, strict=True))
# The paper's guard table has these four, in this order.
PUBLISHED_COLUMNS: tuple[str, ...] = ("Accuracy", "F1", "Precision", "Recall")
COMPARISON_HEADER = ["Guard", "column", "ours", "reference", "delta"]


@dataclass
class GuardRow:
    guard: str
    display_name: str
    kind: str  # safety_head, policy_probs, generative, zero_shot (from the manifest)
    score: GuardScore

    def rates(self) -> list[Fraction | None]:
        return [self.score.metric(m) for m in METRICS]

    def cells(self, decimals: int = 1) -> list[str]:
        rates = [percent(r, decimals) for r in self.rates()]
        return [self.display_name, *rates, str(self.score.invalid), str(self.score.n)]


def _paper_order() -> dict[str, int]:
    """Registered guards' positions in the paper's table. Only for ordering rows: a
    registry that cannot be read leaves the rows in name order."""
    from holisafe_bench.guarding.spec import load_guards

    try:
        guards = load_guards()
    except HolisafeError:
        return {}
    return {n: g.paper_order for n, g in guards.items() if g.paper_order is not None}


def build_guard_rows(
    layout: ResultsLayout, protocol: str, guards: list[str] | None = None
) -> list[GuardRow]:
    """A row per guard with verdicts of `protocol` (or the named ones), in the paper's
    order, then by name. A named guard without verdicts is an error naming the file."""
    names = guards or guards_with_verdicts(layout, protocol)
    rows = []
    for name in names:
        path = layout.guard_verdicts(name, protocol)
        if not path.exists():
            raise HolisafeError(
                f"no guard verdicts at {path}: run "
                f"`holisafe-bench guard --model {name} --protocol {protocol}` first"
            )
        score = score_guard_file(layout, name, protocol)
        manifest = read_guard_manifest(layout.guard_manifest(name, protocol))
        kind = manifest.kind if manifest else "unknown"
        rows.append(GuardRow(name, score.display_name, kind, score))
    order = _paper_order()
    return sorted(rows, key=lambda r: (order.get(r.guard, 10_000), r.guard))


# --- formats --------------------------------------------------------------------------------


def _cells(rows: list[GuardRow], decimals: int) -> list[list[str]]:
    return [r.cells(decimals) for r in rows]


def guard_csv(rows: list[GuardRow], decimals: int = 1) -> str:
    return csv_text(list(GUARD_COLUMNS), _cells(rows, decimals))


def guard_markdown(rows: list[GuardRow], decimals: int = 1) -> str:
    return markdown_text(list(GUARD_COLUMNS), _cells(rows, decimals))


def _places(rows: list[GuardRow]) -> list[dict[int, int]]:
    """Per metric column: row index -> 1 (best) or 2 (second); higher is better for all."""
    out = []
    for col in range(len(METRICS)):
        values = sorted({r.rates()[col] for r in rows} - {None}, reverse=True)
        place = {v: i + 1 for i, v in enumerate(values[:2])}
        out.append(
            {i: place[r.rates()[col]] for i, r in enumerate(rows) if r.rates()[col] in place}
        )
    return out


def guard_latex(rows: list[GuardRow], decimals: int = 1) -> str:
    """booktabs; in each metric column the best value bold, the second underlined."""
    places = _places(rows)
    header = [latex_escape(c) for c in GUARD_COLUMNS]
    lines = [
        r"% requires \usepackage{booktabs}",
        r"\begin{tabular}{l" + "r" * (len(GUARD_COLUMNS) - 1) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for i, row in enumerate(rows):
        cells = row.cells(decimals)
        out = [latex_escape(cells[0])]
        for col, text in enumerate(cells[1 : 1 + len(METRICS)]):
            place = places[col].get(i)
            out.append({1: rf"\textbf{{{text}}}", 2: rf"\underline{{{text}}}"}.get(place, text))
        out += cells[1 + len(METRICS) :]
        lines.append(" & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def guard_sortable_table(
    rows: list[GuardRow], decimals: int = 1, table_id: str = "guard-leaderboard"
) -> SortableTable:
    """The rows for the `sortable_table` macro: the guard's kind in the group column."""
    out = []
    for row in rows:
        cells = [
            {
                "text": percent(rate, decimals),
                "value": "" if rate is None else f"{float(rate) * 100:.6f}",
            }
            for rate in row.rates()
        ]
        cells += [{"text": str(v), "value": str(v)} for v in (row.score.invalid, row.score.n)]
        out.append({"group": row.kind, "name": row.display_name, "cells": cells})
    return SortableTable(table_id, ["Kind", *GUARD_COLUMNS], out)


def guard_html(rows: list[GuardRow], decimals: int = 1) -> str:
    from holisafe_bench.rendering import render  # Jinja2: only the HTML format needs it

    return render("leaderboard.html.j2", table=guard_sortable_table(rows, decimals))


def guard_json_text(rows: list[GuardRow], decimals: int = 1) -> str:
    out = [
        {
            "guard": row.guard,
            "display_name": row.display_name,
            "kind": row.kind,
            "protocol": row.score.protocol,
            "columns": dict(zip(GUARD_COLUMNS[1:], row.cells(decimals)[1:], strict=True)),
            "detail": guard_json(row.score, decimals),
        }
        for row in rows
    ]
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"


# The guard table's writer per format name: the same names as `formats.FORMATS`.
GUARD_WRITERS = {
    "csv": guard_csv,
    "md": guard_markdown,
    "latex": guard_latex,
    "html": guard_html,
    "json": guard_json_text,
}


def write_guard_leaderboard(rows: list[GuardRow], fmt: str, decimals: int = 1) -> str:
    return GUARD_WRITERS[fmt](rows, decimals)


# --- the published table and the comparison ----------------------------------------------------


@dataclass(frozen=True)
class PublishedGuard:
    values: dict[str, float | None]  # column -> percent; None: not transcribed
    note: str = ""


def read_guard_csv(path: Path) -> dict[str, PublishedGuard]:
    """Display name -> the published figures (empty cells allowed: not transcribed)."""
    try:
        with Path(path).open(encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            missing = [c for c in ("Guard", *PUBLISHED_COLUMNS) if c not in fields]
            if missing:
                raise HolisafeError(f"{path}: not a guard table CSV (missing columns {missing})")
            columns = [c for c in fields if c in COLUMN_METRIC]
            return {
                row["Guard"]: _published_row(path, line, row, columns)
                for line, row in enumerate(reader, start=2)
            }
    except OSError as exc:
        raise HolisafeError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _published_row(path: Path, line: int, row: dict, columns: list[str]) -> PublishedGuard:
    values: dict[str, float | None] = {}
    for col in columns:
        text = (row.get(col) or "").strip()
        try:
            values[col] = float(text) if text else None
        except ValueError:
            raise HolisafeError(
                f"{path} line {line}, field {col!r}: {text!r} is not a number"
            ) from None
    return PublishedGuard(values, (row.get("note") or "").strip())


def compare_guard_rows(
    rows: list[GuardRow], reference: dict[str, PublishedGuard], decimals: int = 1
) -> list[list[str]]:
    """Per guard and published column: ours, the reference's, ours minus the reference's;
    'n/a' where either side has no figure."""
    out = []
    for row in rows:
        ref = reference.get(row.display_name)
        columns = list(ref.values) if ref else list(PUBLISHED_COLUMNS)
        for col in columns:
            ours = rounded_percent(row.score.metric(COLUMN_METRIC[col]), decimals)
            theirs = ref.values.get(col) if ref else None
            out.append([row.display_name, col, *compared_cells(ours, theirs, decimals)])
    return out


def comparison_notes(rows: list[GuardRow], reference: dict[str, PublishedGuard]) -> list[str]:
    """What a reader of the comparison should know: guards the table lacks, or whose
    figures it leaves empty (with the table's own note)."""
    notes = []
    for row in rows:
        ref = reference.get(row.display_name)
        if ref is None:
            notes.append(f"{row.display_name}: not in the published guard table")
        elif any(v is None for v in ref.values.values()):
            notes.append(f"{row.display_name}: no published figures ({ref.note or 'empty'})")
    return notes


def write_guard_comparison(
    rows: list[GuardRow], reference: dict[str, PublishedGuard], fmt: str, decimals: int = 1
) -> str:
    """In the format's comparison writer, as `leaderboard --compare` writes the main table."""
    table = compare_guard_rows(rows, reference, decimals)
    return FORMATS[fmt].comparison(COMPARISON_HEADER, table)
