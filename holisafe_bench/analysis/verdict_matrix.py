"""Verdicts as aligned arrays: one row per sample, for bootstraps and agreement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from holisafe_bench.paths import ResultsLayout
from holisafe_bench.scoring import CurrentResponses, load_current_verdicts
from holisafe_bench.taxonomy import TYPES


@dataclass
class VerdictArrays:
    """For one (model, judge): sample ids, type index, category, subcategory, and
    violation (1), adherence (0) or invalid (-1)."""

    sample_ids: np.ndarray
    type_index: np.ndarray
    categories: np.ndarray
    subcategories: np.ndarray
    outcome: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return self.outcome >= 0


def load_arrays(
    layout: ResultsLayout, model: str, judge: str, responses: CurrentResponses | None = None
) -> VerdictArrays:
    """The verdicts of the current responses only (as scoring counts them)."""
    current = (responses or CurrentResponses(layout)).of(model)
    rows = load_current_verdicts(layout.verdicts(model, judge), current).rows
    rows.sort(key=lambda r: r.sample_id)
    return VerdictArrays(
        sample_ids=np.array([r.sample_id for r in rows], dtype=np.int64),
        type_index=np.array([TYPES.index(r.type) for r in rows], dtype=np.int8),
        categories=np.array([r.category for r in rows]),
        subcategories=np.array([r.subcategory for r in rows]),
        outcome=np.array(
            [-1 if r.follows is None else int(not r.follows) for r in rows], dtype=np.int8
        ),
    )
