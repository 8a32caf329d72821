"""The paper's leaderboard for one judge, from the results folder, in several formats."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from holisafe_bench.paths import ResultsLayout
from holisafe_bench.registry import ModelSpec, load_models
from holisafe_bench.scoring import CurrentResponses, ScoreCard, score_model
from holisafe_bench.taxonomy import LEADERBOARD_COLUMNS, UNSAFE_TYPES


def percent(rate: Fraction | None, decimals: int = 1, *, double_round: bool = False) -> str:
    """A rate as a percentage, rounded half-up on the exact value (no float artefacts).

    `double_round` first rounds to one more decimal, then to `decimals`: the June 2025
    tables were made that way (it is the only rule under which all their cells agree with
    one set of counts), so it is an option for reproducing them, never the default."""
    if rate is None:
        return "n/a"
    value = Decimal(rate.numerator * 100) / Decimal(rate.denominator)
    if double_round:
        value = value.quantize(Decimal(1).scaleb(-(decimals + 1)), rounding=ROUND_HALF_UP)
    return str(value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


@dataclass
class LeaderboardRow:
    model: str
    display_name: str
    group: str
    card: ScoreCard

    def rates(self) -> list[Fraction | None]:
        """The paper's columns in order, as exact fractions of 1."""
        overall = self.card.overall
        rr = overall.rr
        return [
            None if rr is None else 1 - rr,
            *(overall.asr[t] for t in UNSAFE_TYPES),
            overall.masr,
            rr,
        ]


def build_leaderboard(
    layout: ResultsLayout,
    judge: str,
    *,
    pooled: bool = False,
    models: list[str] | None = None,
    registry: dict[str, ModelSpec] | None = None,
    responses: CurrentResponses | None = None,
) -> list[LeaderboardRow]:
    """Rows from current verdicts only; each row's `card.skipped` says what was left out
    (see `skipped_notes`). Pass one `responses` to read each model's responses once for
    several judges."""
    names = models or layout.models_with_verdicts(judge)
    responses = responses or CurrentResponses(layout)
    cards = {
        name: score_model(layout, name, judge, pooled=pooled, responses=responses)
        for name in names
        if layout.verdicts(name, judge).exists()
    }
    return leaderboard_rows(cards, registry, layout=layout)


def skipped_notes(rows: list[LeaderboardRow]) -> list[str]:
    """One line per model whose verdicts were not all scored (stale or unreadable)."""
    notes = (r.card.skipped.note(r.card.model, r.card.judge) for r in rows)
    return [n for n in notes if n]


def leaderboard_rows(
    cards: dict[str, ScoreCard],
    registry: dict[str, ModelSpec] | None = None,
    *,
    layout: ResultsLayout | None = None,
) -> list[LeaderboardRow]:
    """Score cards by model name as leaderboard rows, in the paper's order (then by name).
    A model not in the registry (run from a TOML path) is labelled as its run.json says."""
    registry = load_models() if registry is None else registry
    rows = []
    for name, card in cards.items():
        display_name, group = model_labels(name, registry, layout)
        rows.append(LeaderboardRow(model=name, display_name=display_name, group=group, card=card))

    def order(row: LeaderboardRow) -> tuple:
        spec = registry.get(row.model)
        paper = spec.paper_order if spec and spec.paper_order is not None else 10_000
        return (paper, row.model)

    return sorted(rows, key=order)


def model_labels(
    name: str, registry: dict[str, ModelSpec], layout: ResultsLayout | None
) -> tuple[str, str]:
    """(display name, group): the registry's, else the spec's own as the run recorded it."""
    spec = registry.get(name)
    if spec is not None:
        return spec.display_name, spec.group
    recorded: dict = {}
    if layout is not None:
        with contextlib.suppress(OSError, ValueError):
            recorded = json.loads(layout.run_manifest(name).read_text(encoding="utf-8"))
    return recorded.get("display_name") or name, recorded.get("group") or "unregistered"


def table_cells(
    rows: list[LeaderboardRow], decimals: int, double_round: bool = False
) -> list[list[str]]:
    return [
        [r.display_name, *(percent(x, decimals, double_round=double_round) for x in r.rates())]
        for r in rows
    ]


def to_csv(rows: list[LeaderboardRow], decimals: int = 1, double_round: bool = False) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LEADERBOARD_COLUMNS)
    writer.writerows(table_cells(rows, decimals, double_round))
    return buf.getvalue()


# What Markdown (GitHub's tables included) would read as syntax inside a cell.
_MARKDOWN_SPECIAL = re.compile(r"([\\|*_`\[\]<>~])")


def markdown_row(cells: list[str]) -> str:
    """One table row whose cells render as the literal text (model names are data)."""
    escaped = (_MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(c.splitlines())) for c in cells)
    return "| " + " | ".join(escaped) + " |"


def to_markdown(rows: list[LeaderboardRow], decimals: int = 1, double_round: bool = False) -> str:
    lines = [
        "| " + " | ".join(LEADERBOARD_COLUMNS) + " |",  # ours, and it renders as written
        "|" + "---|" + "---:|" * (len(LEADERBOARD_COLUMNS) - 1),
    ]
    cells = table_cells(rows, decimals, double_round)
    lines += [markdown_row(row) for row in cells]
    return "\n".join(lines) + "\n"


def to_json(rows: list[LeaderboardRow], decimals: int = 1, double_round: bool = False) -> str:
    def pct(rate: Fraction | None) -> str:
        return percent(rate, decimals, double_round=double_round)

    out = []
    for row in rows:
        overall = row.card.overall
        out.append(
            {
                "model": row.model,
                "display_name": row.display_name,
                "group": row.group,
                "columns": dict(
                    zip(
                        LEADERBOARD_COLUMNS[1:],
                        (pct(x) for x in row.rates()),
                        strict=True,
                    )
                ),
                "masr_definition": "pooled" if row.card.pooled else "macro",
                "counts": {
                    t: {"n": s.n, "valid": s.valid, "violations": s.violations}
                    for t, s in overall.per_type.items()
                },
                "invalid": overall.invalid,
                "masr_bounds": [pct(b) for b in overall.masr_bounds()],
            }
        )
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"


FORMATS = {"csv": to_csv, "md": to_markdown, "json": to_json}
