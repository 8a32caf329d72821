"""The paper's leaderboard for one judge as rows, from the results folder or from score
cards; and a comparison of those rows against a reference table. Writers: `formats`."""

from __future__ import annotations

import contextlib
import json
import typing
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from holisafe_bench.paths import ResultsLayout
from holisafe_bench.registry import ModelGroup, ModelSpec, load_models
from holisafe_bench.scoring import (
    CurrentResponses,
    ScoreCard,
    decimal_percent,
    rounded_percent,
    score_model,
)
from holisafe_bench.taxonomy import LEADERBOARD_COLUMNS, UNSAFE_TYPES


def percent(rate: Fraction | None, decimals: int = 1, *, double_round: bool = False) -> str:
    """A rate as the text of a table cell: see `scoring.rounded_percent`; "n/a" if None."""
    value = rounded_percent(rate, decimals, double_round=double_round)
    return "n/a" if value is None else str(value)


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
    """One line per model whose verdicts were not all scored (stale, unreadable, or
    responses never judged)."""
    notes = (r.card.skipped.note(r.card.model, r.card.judge) for r in rows)
    return [n for n in notes if n]


def leaderboard_rows(
    cards: dict[str, ScoreCard],
    registry: dict[str, ModelSpec] | None = None,
    *,
    layout: ResultsLayout | None = None,
) -> list[LeaderboardRow]:
    """Score cards by model name as leaderboard rows, in the paper's order: its groups as
    blocks, each in the paper's order, then models outside the paper by name.
    A model not in the registry (run from a TOML path) is labelled as its run.json says."""
    registry = load_models() if registry is None else registry
    rows = []
    for name, card in cards.items():
        display_name, group = model_labels(name, registry, layout)
        rows.append(LeaderboardRow(model=name, display_name=display_name, group=group, card=card))

    groups = typing.get_args(ModelGroup)  # the paper's blocks, in its order

    def order(row: LeaderboardRow) -> tuple:
        # By group first, so each group is one block (LaTeX writes a block per run of a
        # group); in a group, the paper's order, then models outside the paper by name.
        spec = registry.get(row.model)
        paper = spec.paper_order if spec and spec.paper_order is not None else 10_000
        group = groups.index(row.group) if row.group in groups else len(groups)
        return (group, row.group, paper, row.model)

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
    """Per row: the display name, then each column's percentage as text."""
    return [
        [r.display_name, *(percent(x, decimals, double_round=double_round) for x in r.rates())]
        for r in rows
    ]


def compare_rows(
    rows: list[LeaderboardRow],
    reference: dict[str, dict[str, float]],
    decimals: int = 1,
    double_round: bool = False,
) -> list[list[str]]:
    """Per model and column: ours, the reference's, and ours minus the reference's (see
    `compared_cells`); ours with `double_round` if asked."""
    specs = load_models()
    out = []
    for row in rows:
        spec = specs.get(row.model)
        names = [row.display_name, *(spec.aliases if spec else ())]
        ref = next((reference[n] for n in names if n in reference), None)
        for col, rate in zip(LEADERBOARD_COLUMNS[1:], row.rates(), strict=True):
            ours = rounded_percent(rate, decimals, double_round=double_round)
            theirs = None if ref is None else ref.get(col)
            out.append([row.display_name, col, *compared_cells(ours, theirs, decimals)])
    return out


def compared_cells(ours: Decimal | None, theirs: float | None, decimals: int) -> list[str]:
    """Our cell, the reference's cell and the first minus the second, all at `decimals`
    (the reference rounded half-up on the decimal it was written as: 95.85 is 95.9 at one
    decimal, not the float's 95.8), so +0.0 means both tables print the same cell; 'n/a'
    where either side has no figure."""
    shown = "n/a" if ours is None else str(ours)
    if theirs is None:
        return [shown, "n/a", "n/a"]
    ref = decimal_percent(theirs, decimals)
    return [shown, str(ref), "n/a" if ours is None else f"{ours - ref:+}"]
