"""The leaderboard's writers, one table of formats: CSV (the paper's layout), Markdown,
LaTeX (booktabs, best bold, second underlined, model groups as row blocks), a
self-contained sortable HTML page, JSON; and each format's form of a comparison against a
reference table such as the published one."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from holisafe_bench.leaderboard.tables import (
    LeaderboardRow,
    compare_rows,
    percent,
    table_cells,
)
from holisafe_bench.taxonomy import LEADERBOARD_COLUMNS

Writer = Callable[[list[LeaderboardRow], int, bool], str]
TableWriter = Callable[[list[str], list[list[str]]], str]  # header and rows of text

COMPARISON_HEADER = ["Model", "column", "ours", "reference", "delta"]
GROUP_TITLES = {
    "open-weight": "Open-weight VLMs",
    "closed": "Closed VLMs",
    "safety-tuned": "Safety-tuned VLMs",
    "unregistered": "Other models",
}


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


# What Markdown (GitHub's tables included) would read as syntax inside a cell.
_MARKDOWN_SPECIAL = re.compile(r"([\\|*_`\[\]<>~])")


def markdown_row(cells: list[str]) -> str:
    """One table row whose cells render as the literal text (model names are data)."""
    escaped = (_MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(c.splitlines())) for c in cells)
    return "| " + " | ".join(escaped) + " |"


def markdown_text(header: list[str], rows: list[list[str]], left_columns: int = 1) -> str:
    """A table whose first `left_columns` are text (left-aligned), the rest numbers."""
    lines = [
        "| " + " | ".join(header) + " |",  # ours, and it renders as written
        "|" + "---|" * left_columns + "---:|" * (len(header) - left_columns),
    ]
    lines += [markdown_row(row) for row in rows]
    return "\n".join(lines) + "\n"


def is_pooled(rows: list[LeaderboardRow]) -> bool:
    return any(row.card.pooled for row in rows)


def _columns(rows: list[LeaderboardRow]) -> list[str]:
    """The paper's header; with pooled mASR its column says so (md, html)."""
    masr = "mASR (pooled)↓" if is_pooled(rows) else "mASR↓"
    return [masr if c == "mASR↓" else c for c in LEADERBOARD_COLUMNS]


def to_csv(rows: list[LeaderboardRow], decimals: int = 1, double_round: bool = False) -> str:
    # The paper's header as it is, pooled or not: the June 2025 tables are pooled under it
    # (the JSON format says which definition it wrote: masr_definition).
    return csv_text(list(LEADERBOARD_COLUMNS), table_cells(rows, decimals, double_round))


def to_markdown(rows: list[LeaderboardRow], decimals: int = 1, double_round: bool = False) -> str:
    return markdown_text(_columns(rows), table_cells(rows, decimals, double_round))


def to_json(rows: list[LeaderboardRow], decimals: int = 1, double_round: bool = False) -> str:
    def pct(rate) -> str:
        return percent(rate, decimals, double_round=double_round)

    out = [
        {
            "model": row.model,
            "display_name": row.display_name,
            "group": row.group,
            "columns": dict(zip(LEADERBOARD_COLUMNS[1:], map(pct, row.rates()), strict=True)),
            "masr_definition": "pooled" if row.card.pooled else "macro",
            "counts": {
                t: {"n": s.n, "valid": s.valid, "violations": s.violations}
                for t, s in row.card.overall.per_type.items()
            },
            "invalid": row.card.overall.invalid,
            "masr_bounds": [pct(b) for b in row.card.overall.masr_bounds()],
        }
        for row in rows
    ]
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"


def _comparison_json(header: list[str], rows: list[list[str]]) -> str:
    return json.dumps([dict(zip(header, r, strict=True)) for r in rows], indent=2) + "\n"


# --- LaTeX ---------------------------------------------------------------------------------

_HIGHER_IS_BETTER = [c.endswith("↑") for c in LEADERBOARD_COLUMNS[1:]]
_LATEX_HEADER = [
    "Model",
    r"$S_IS_T\to S\uparrow$",
    r"$S_IS_T\to U\downarrow$",
    r"$U_IS_T\downarrow$",
    r"$U_IU_T\downarrow$",
    r"$S_IU_T\downarrow$",
    r"mASR$\downarrow$",
    r"RR$\downarrow$",
]
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    **{c: "\\" + c for c in "&%$#_{}"},
}
_LATEX_SPECIAL_RE = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    """Text as LaTeX prints it literally. One pass, so the braces of \\textbackslash{} are
    not escaped again; newlines become spaces, as a table cell is one line."""
    text = " ".join(text.splitlines())
    return _LATEX_SPECIAL_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], text)


def _ranks(rows: list[LeaderboardRow]) -> list[dict[int, int]]:
    """Per column: row index -> 1 (best) or 2 (second), ties sharing a place."""
    out = []
    for col, higher in enumerate(_HIGHER_IS_BETTER):
        values = sorted(
            {r.rates()[col] for r in rows if r.rates()[col] is not None}, reverse=higher
        )
        place = {v: i + 1 for i, v in enumerate(values[:2])}
        out.append(
            {i: place[r.rates()[col]] for i, r in enumerate(rows) if r.rates()[col] in place}
        )
    return out


def _latex_cells(row: LeaderboardRow, places: list[int | None], decimals, double_round):
    """The row's cells: best of a column bold, second underlined."""
    cells = [latex_escape(row.display_name)]
    for rate, place in zip(row.rates(), places, strict=True):
        text = percent(rate, decimals, double_round=double_round)
        cells.append({1: rf"\textbf{{{text}}}", 2: rf"\underline{{{text}}}"}.get(place, text))
    return cells


def to_latex(rows: list[LeaderboardRow], decimals: int = 1, double_round: bool = False) -> str:
    ranks = _ranks(rows)
    width = len(LEADERBOARD_COLUMNS)
    header = list(_LATEX_HEADER)
    if is_pooled(rows):
        header[header.index(r"mASR$\downarrow$")] = r"mASR (pooled)$\downarrow$"
    lines = [
        r"% requires \usepackage{booktabs}",
        r"\begin{tabular}{l" + "r" * (width - 1) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    group = None
    for i, row in enumerate(rows):
        if row.group != group:
            if group is not None:
                lines.append(r"\midrule")
            group = row.group
            title = latex_escape(GROUP_TITLES.get(group, group))
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{title}}}}} \\")
        places = [column.get(i) for column in ranks]
        lines.append(" & ".join(_latex_cells(row, places, decimals, double_round)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


# --- HTML ----------------------------------------------------------------------------------


@dataclass
class SortableTable:
    """What the `sortable_table` macro (templates/_table.html.j2) shows. Every text is
    escaped by the template; `value` is what a column sorts by."""

    id: str
    columns: list[str]
    rows: list[dict]


def sortable_table(
    rows: list[LeaderboardRow],
    decimals: int = 1,
    double_round: bool = False,
    table_id: str = "leaderboard",
) -> SortableTable:
    out = []
    for row in rows:
        cells = [
            {
                "text": percent(rate, decimals, double_round=double_round),
                "value": "" if rate is None else f"{float(rate) * 100:.6f}",
            }
            for rate in row.rates()
        ]
        out.append({"group": row.group, "name": row.display_name, "cells": cells})
    return SortableTable(table_id, ["Group", *_columns(rows)], out)


def to_html(rows: list[LeaderboardRow], decimals: int = 1, double_round: bool = False) -> str:
    from holisafe_bench.rendering import render  # Jinja2: only the HTML format needs it

    return render("leaderboard.html.j2", table=sortable_table(rows, decimals, double_round))


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    leaderboard: Writer
    comparison: TableWriter  # `leaderboard --compare`: ours, the reference's, the delta


FORMATS: dict[str, Format] = {
    "csv": Format(to_csv, csv_text),
    "md": Format(to_markdown, partial(markdown_text, left_columns=2)),
    # A comparison is a long list, not a table to typeset or sort: CSV.
    "latex": Format(to_latex, csv_text),
    "html": Format(to_html, csv_text),
    "json": Format(to_json, _comparison_json),
}


def write_leaderboard(
    rows: list[LeaderboardRow], fmt: str, decimals: int = 1, double_round: bool = False
) -> str:
    return FORMATS[fmt].leaderboard(rows, decimals, double_round)


def write_comparison(
    rows: list[LeaderboardRow],
    reference: dict[str, dict[str, float]],
    fmt: str,
    decimals: int = 1,
    double_round: bool = False,
) -> str:
    """Per model and column, ours against `reference` (display name -> column -> percent)."""
    table = compare_rows(rows, reference, decimals, double_round)
    return FORMATS[fmt].comparison(COMPARISON_HEADER, table)
