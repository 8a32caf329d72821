"""Leaderboard formats beyond CSV/Markdown/JSON: LaTeX (booktabs, best bold, second
underlined, model groups as row blocks), a self-contained sortable HTML table, and a
comparison against a reference leaderboard such as the published one."""

from __future__ import annotations

import html
import re
from fractions import Fraction

from holisafe_bench.leaderboard import LeaderboardRow, percent
from holisafe_bench.registry import load_models
from holisafe_bench.taxonomy import LEADERBOARD_COLUMNS

GROUP_TITLES = {
    "open-weight": "Open-weight VLMs",
    "closed": "Closed VLMs",
    "safety-tuned": "Safety-tuned VLMs",
    "unregistered": "Other models",
}
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


def to_latex(rows: list[LeaderboardRow], decimals: int = 1, double_round: bool = False) -> str:
    ranks = _ranks(rows)
    lines = [
        r"% requires \usepackage{booktabs}",
        r"\begin{tabular}{l" + "r" * (len(LEADERBOARD_COLUMNS) - 1) + "}",
        r"\toprule",
        " & ".join(_LATEX_HEADER) + r" \\",
        r"\midrule",
    ]
    group = None
    for i, row in enumerate(rows):
        if row.group != group:
            if group is not None:
                lines.append(r"\midrule")
            group = row.group
            title = latex_escape(GROUP_TITLES.get(group, group))
            lines.append(
                rf"\multicolumn{{{len(LEADERBOARD_COLUMNS)}}}{{l}}{{\textit{{{title}}}}} \\"
            )
        cells = [latex_escape(row.display_name)]
        for col, rate in enumerate(row.rates()):
            text = percent(rate, decimals, double_round=double_round)
            place = ranks[col].get(i)
            if place == 1:
                text = rf"\textbf{{{text}}}"
            elif place == 2:
                text = rf"\underline{{{text}}}"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def asset(name: str) -> str:
    from importlib import resources

    return (
        resources.files("holisafe_bench.analysis")
        .joinpath(f"assets/{name}")
        .read_text(encoding="utf-8")
    )


def html_table(
    rows: list[LeaderboardRow],
    decimals: int = 1,
    double_round: bool = False,
    table_id: str = "leaderboard",
) -> str:
    """A sortable table; every cell is escaped text (no markup from data)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("Group", *LEADERBOARD_COLUMNS))
    body = []
    for row in rows:
        cells = [
            f'<td data-value="{html.escape(row.group)}">{html.escape(row.group)}</td>',
            f'<td data-value="{html.escape(row.display_name)}">'
            f"{html.escape(row.display_name)}</td>",
        ]
        for rate in row.rates():
            text = percent(rate, decimals, double_round=double_round)
            value = "" if rate is None else f"{float(rate) * 100:.6f}"
            cells.append(f'<td data-value="{value}">{html.escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="sortable" id="{html.escape(table_id)}"><thead><tr>{head}</tr>'
        f"</thead><tbody>{''.join(body)}</tbody></table>"
    )


def to_html(rows: list[LeaderboardRow], decimals: int = 1, double_round: bool = False) -> str:
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>HoliSafe-Bench leaderboard'
        "</title><style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "th,td{padding:4px 8px;border-bottom:1px solid #ddd}th{cursor:pointer}"
        "td:nth-child(n+3){text-align:right}</style></head><body>"
        "<p>Click a column header to sort.</p>"
        + html_table(rows, decimals, double_round)
        + f"<script>{asset('sortable.js')}</script></body></html>\n"
    )


def compare_rows(
    rows: list[LeaderboardRow], reference: dict[str, dict[str, float]], decimals: int = 1
) -> list[list[str]]:
    """Per model and column: ours, the reference's, and ours minus the reference's."""
    specs = load_models()
    out = []
    for row in rows:
        spec = specs.get(row.model)
        names = [row.display_name, *(spec.aliases if spec else ())]
        ref = next((reference[n] for n in names if n in reference), None)
        for col, rate in zip(LEADERBOARD_COLUMNS[1:], row.rates(), strict=True):
            ours = percent(rate, decimals)
            if ref is None or rate is None:
                out.append([row.display_name, col, ours, "n/a", "n/a"])
                continue
            delta = Fraction(rate) - Fraction(str(ref[col])) / 100
            signed = ("-" if delta < 0 else "+") + percent(abs(delta), decimals)
            out.append([row.display_name, col, ours, f"{ref[col]:.{decimals}f}", signed])
    return out
