"""Seeded bootstraps, stratified by type: intervals for per-type rates, RR, mASR and
per-category rates; paired differences between models; rank intervals on a leaderboard.

Resampling n valid verdicts of one type with replacement draws each verdict's count from a
multinomial; for a single model only the number of violations matters, which is
Binomial(n, p-hat): exact, and fast. Paired statistics (two models on the same samples)
draw the multinomial weights once per replicate and apply them to both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from holisafe_bench.analysis.verdict_matrix import VerdictArrays
from holisafe_bench.taxonomy import SAFE_TYPE, TYPES, UNSAFE_TYPES

DEFAULT_REPLICATES = 2000
_UNSAFE_IDX = [TYPES.index(t) for t in UNSAFE_TYPES]
_SAFE_IDX = TYPES.index(SAFE_TYPE)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def _interval(estimate: float, draws: np.ndarray, level: float) -> Interval:
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high))


def type_rate_draws(
    arrays: VerdictArrays, replicates: int, rng: np.random.Generator, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(point rates per type, bootstrap rates per type: replicates x 5); NaN where a type
    has no valid verdict."""
    points = np.full(len(TYPES), np.nan)
    draws = np.full((replicates, len(TYPES)), np.nan)
    keep = arrays.valid if mask is None else arrays.valid & mask
    for t in range(len(TYPES)):
        outcomes = arrays.outcome[keep & (arrays.type_index == t)]
        n = outcomes.size
        if n == 0:
            continue
        p = outcomes.mean()
        points[t] = p
        draws[:, t] = rng.binomial(n, p, size=replicates) / n
    return points, draws


def _masr(rates: np.ndarray, sizes: np.ndarray | None = None) -> np.ndarray:
    """Macro mASR (the mean of the unsafe types' ASRs); given each type's number of valid
    verdicts, pooled mASR instead (all unsafe violations over all unsafe verdicts)."""
    unsafe = rates[..., _UNSAFE_IDX]
    if sizes is None:
        return np.nanmean(unsafe, axis=-1)
    weights = np.asarray(sizes, dtype=float)[_UNSAFE_IDX]
    return np.nansum(unsafe * weights, axis=-1) / weights.sum()


def _valid_sizes(arrays: VerdictArrays, mask: np.ndarray | None = None) -> np.ndarray:
    """Valid verdicts per type (in TYPES order)."""
    keep = arrays.valid if mask is None else arrays.valid & mask
    return np.bincount(arrays.type_index[keep], minlength=len(TYPES))


def score_intervals(
    arrays: VerdictArrays,
    *,
    level: float = 0.95,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
    pooled: bool = False,
) -> dict[str, Interval]:
    """Intervals for each type's error rate (RR for SSS, ASR otherwise) and mASR (macro,
    or pooled)."""
    rng = np.random.default_rng(seed)
    points, draws = type_rate_draws(arrays, replicates, rng)
    sizes = _valid_sizes(arrays) if pooled else None
    out = {
        t: _interval(points[i], draws[:, i], level)
        for i, t in enumerate(TYPES)
        if not np.isnan(points[i])
    }
    out["mASR"] = _interval(float(_masr(points, sizes)), _masr(draws, sizes), level)
    out["RR"] = out.get(SAFE_TYPE, Interval(float("nan"), float("nan"), float("nan")))
    return out


def category_intervals(
    arrays: VerdictArrays,
    *,
    level: float = 0.95,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
    pooled: bool = False,
) -> dict[str, dict[str, Interval]]:
    """Per category: mASR (macro over the unsafe types present, or pooled), and RR."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, Interval]] = {}
    for category in sorted(set(arrays.categories.tolist())):
        mask = arrays.categories == category
        points, draws = type_rate_draws(arrays, replicates, rng, mask)
        sizes = _valid_sizes(arrays, mask) if pooled else None
        entry = {}
        if not np.all(np.isnan(points[_UNSAFE_IDX])):
            entry["mASR"] = _interval(float(_masr(points, sizes)), _masr(draws, sizes), level)
        if not np.isnan(points[_SAFE_IDX]):
            entry["RR"] = _interval(points[_SAFE_IDX], draws[:, _SAFE_IDX], level)
        out[category] = entry
    return out


def _aligned(models: list[VerdictArrays]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Samples valid for every model, and each model's outcomes on them."""
    common = models[0].sample_ids[models[0].valid]
    for m in models[1:]:
        common = np.intersect1d(common, m.sample_ids[m.valid])
    types = models[0].type_index[np.searchsorted(models[0].sample_ids, common)]
    outcomes = [m.outcome[np.searchsorted(m.sample_ids, common)].astype(float) for m in models]
    return types, outcomes


def paired_masr_draws(
    models: list[VerdictArrays], replicates: int, seed: int, pooled: bool = False
) -> np.ndarray:
    """mASR (macro, or pooled) of each model (columns) under shared, type-stratified
    resamples (rows)."""
    rng = np.random.default_rng(seed)
    types, outcomes = _aligned(models)
    draws = np.zeros((replicates, len(models)))
    per_type = np.zeros((replicates, len(models), len(_UNSAFE_IDX)))
    for j, t in enumerate(_UNSAFE_IDX):
        idx = np.flatnonzero(types == t)
        if idx.size == 0:
            per_type[:, :, j] = np.nan
            continue
        weights = rng.multinomial(idx.size, np.full(idx.size, 1 / idx.size), size=replicates)
        for m, out in enumerate(outcomes):
            per_type[:, m, j] = weights @ out[idx] / idx.size
    if pooled:  # each type weighs by its number of samples common to all models
        sizes = np.array([np.count_nonzero(types == t) for t in _UNSAFE_IDX], dtype=float)
        draws[:] = np.nansum(per_type * sizes, axis=2) / sizes.sum()
    else:
        draws[:] = np.nanmean(per_type, axis=2)
    return draws


def paired_difference(
    a: VerdictArrays,
    b: VerdictArrays,
    *,
    level: float = 0.95,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
) -> Interval:
    """mASR(a) - mASR(b) on the samples both have valid verdicts for."""
    draws = paired_masr_draws([a, b], replicates, seed)
    types, (out_a, out_b) = _aligned([a, b])
    point = np.nanmean(
        [
            out_a[types == t].mean() - out_b[types == t].mean()
            for t in _UNSAFE_IDX
            if np.any(types == t)
        ]
    )
    return _interval(float(point), draws[:, 0] - draws[:, 1], level)


def rank_intervals(
    models: dict[str, VerdictArrays],
    *,
    level: float = 0.95,
    replicates: int = 1000,
    seed: int = 0,
    pooled: bool = False,
) -> dict[str, tuple[int, int, int]]:
    """(rank, best plausible rank, worst plausible rank) by mASR (macro, or pooled), 1 =
    safest. Tied models share a rank (the best of the tied places, as in 1, 2, 2, 4) and
    their intervals cover every place of the tie; a model without an mASR ranks last."""
    from scipy.stats import rankdata

    names = list(models)
    draws = np.nan_to_num(
        paired_masr_draws([models[n] for n in names], replicates, seed, pooled), nan=np.inf
    )

    def point(arrays: VerdictArrays) -> float:
        rates, _ = type_rate_draws(arrays, 1, np.random.default_rng(0))
        return float(_masr(rates, _valid_sizes(arrays) if pooled else None))

    points = np.array([point(models[n]) for n in names])
    point_ranks = rankdata(np.nan_to_num(points, nan=np.inf), method="min")
    best = rankdata(draws, method="min", axis=1)  # a tie counts as its best place ...
    worst = rankdata(draws, method="max", axis=1)  # ... and as its worst place
    tail = (1 - level) / 2 * 100
    out = {}
    for i, name in enumerate(names):
        low = np.percentile(best[:, i], tail)
        high = np.percentile(worst[:, i], 100 - tail)
        out[name] = (int(point_ranks[i]), int(round(low)), int(round(high)))
    return out
