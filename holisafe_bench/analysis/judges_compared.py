"""Agreement between judges over stored verdicts. Cohen's kappa of a pair is over the
samples both judges judged validly; Fleiss' kappa, the confusion tables against string
matching and the most disputed samples are over the samples every judge judged validly."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from holisafe_bench.analysis.agreement import cohen_kappa, confusion, fleiss_kappa
from holisafe_bench.analysis.verdict_matrix import VerdictArrays, load_arrays
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.taxonomy import TYPES

REFERENCE_JUDGE = "string-match"


@dataclass
class SampleAgreement:
    judges: list[str]
    n_items: int = 0
    cohen: dict[tuple[str, str], float] = field(default_factory=dict)
    cohen_n: dict[tuple[str, str], int] = field(default_factory=dict)  # samples of each pair
    fleiss: float | None = None
    # judge -> type -> confusion counts against string matching
    confusion_vs_reference: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    # (model, sample_id, type, share of judges saying violation), most split first
    disagreements: list[tuple[str, int, str, float]] = field(default_factory=list)


def sample_agreement(
    layout: ResultsLayout, judges: list[str], models: list[str], top: int = 20
) -> SampleAgreement:
    result = SampleAgreement(judges=judges)
    stacks: list[np.ndarray] = []
    types_all: list[np.ndarray] = []
    split: list[tuple[str, int, str, float]] = []
    pairs: dict[tuple[str, str], list[np.ndarray]] = {}
    for model in models:
        arrays: dict[str, VerdictArrays] = {}
        for judge in judges:
            if layout.verdicts(model, judge).exists():
                arrays[judge] = load_arrays(layout, model, judge)
        for a, b in itertools.combinations(judges, 2):
            if a in arrays and b in arrays:
                pairs.setdefault((a, b), []).append(_common_outcomes([arrays[a], arrays[b]])[1])
        if len(arrays) != len(judges):
            continue
        common, matrix = _common_outcomes([arrays[j] for j in judges])
        if common.size == 0:
            continue
        first = arrays[judges[0]]
        types = first.type_index[np.searchsorted(first.sample_ids, common)]
        stacks.append(matrix)
        types_all.append(types)
        share = matrix.mean(axis=1)
        for sid, t, s in zip(common, types, share, strict=True):
            if 0 < s < 1:
                split.append((model, int(sid), TYPES[t], float(s)))
    _pairwise_cohen(result, pairs)
    if not stacks:
        return result
    matrix = np.concatenate(stacks)
    types = np.concatenate(types_all)
    result.n_items = int(matrix.shape[0])
    if len(judges) >= 2:
        result.fleiss = fleiss_kappa(matrix)
    if REFERENCE_JUDGE in judges:
        ref = matrix[:, judges.index(REFERENCE_JUDGE)]
        for k, judge in enumerate(judges):
            if judge == REFERENCE_JUDGE:
                continue
            result.confusion_vs_reference[judge] = {
                t: confusion(ref[types == i], matrix[types == i, k])
                for i, t in enumerate(TYPES)
                if np.any(types == i)
            }
    split.sort(key=lambda x: abs(x[3] - 0.5))
    result.disagreements = split[:top]
    return result


def _pairwise_cohen(result: SampleAgreement, pairs: dict[tuple[str, str], list]) -> None:
    for pair, parts in pairs.items():
        both = np.concatenate(parts)
        if both.shape[0]:
            result.cohen[pair] = cohen_kappa(both[:, 0], both[:, 1])
            result.cohen_n[pair] = int(both.shape[0])


def _common_outcomes(arrays: list[VerdictArrays]) -> tuple[np.ndarray, np.ndarray]:
    """(the sample ids every one of `arrays` judged validly, samples x judges outcomes on
    them)."""
    common = arrays[0].sample_ids[arrays[0].valid]
    for a in arrays[1:]:
        common = np.intersect1d(common, a.sample_ids[a.valid])
    outcomes = [a.outcome[np.searchsorted(a.sample_ids, common)] for a in arrays]
    return common, np.stack(outcomes, axis=1).reshape(len(common), len(arrays))
