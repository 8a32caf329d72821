"""How much judges agree: rank correlation of models' mASR, per-sample kappas, confusion
matrices against string matching, and the samples judges disagree on most."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from holisafe_bench.analysis.bootstrap import Interval

# Two points always lie on a line (r = +-1) and one has no correlation at all.
MIN_MODELS = 3


@dataclass(frozen=True)
class Correlation:
    """One pair of judges over the models both scored. When there is nothing to correlate
    (too few models, or one judge gives them all the same mASR) the intervals are None and
    `note` says why."""

    judge_a: str
    judge_b: str
    n_models: int
    spearman: Interval | None = None
    kendall: Interval | None = None
    pearson: Interval | None = None
    note: str | None = None

    def cells(self) -> list[str]:
        """The Spearman, Kendall and Pearson cells of a table row."""
        if self.note is not None:
            return [self.note, "n/a", "n/a"]
        return [
            f"{i.estimate:.3f} [{i.low:.3f}, {i.high:.3f}]"
            for i in (self.spearman, self.kendall, self.pearson)
            if i is not None
        ]


def _degenerate(a: str, b: str, x: np.ndarray, y: np.ndarray) -> str | None:
    """Why x and y have no correlation to compute, if they have none."""
    if len(x) < MIN_MODELS:
        return f"n/a: needs {MIN_MODELS} models, have {len(x)}"
    for judge, values in ((a, x), (b, y)):
        if np.ptp(values) == 0:
            return f"n/a: {judge} gives every model the same mASR"
    return None


def rank_correlations(
    masr: dict[str, dict[str, float]],
    *,
    level: float = 0.95,
    replicates: int = 2000,
    seed: int = 0,
) -> list[Correlation]:
    """masr[judge][model]: every pair of judges, over the models both scored; bootstrap CIs
    resample models with replacement (a resample where one judge's values are all equal has
    no correlation and is left out). A pair with fewer than MIN_MODELS models, or with one
    judge constant, gets a note instead of intervals."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2 * 100
    out = []
    for a, b in itertools.combinations(sorted(masr), 2):
        models = sorted(set(masr[a]) & set(masr[b]))
        x = np.array([masr[a][m] for m in models])
        y = np.array([masr[b][m] for m in models])
        note = _degenerate(a, b, x, y)
        if note is not None:
            out.append(Correlation(a, b, len(models), note=note))
            continue
        points = {
            "spearman": stats.spearmanr(x, y).statistic,
            "kendall": stats.kendalltau(x, y).statistic,
            "pearson": stats.pearsonr(x, y).statistic,
        }
        idx = rng.integers(0, len(models), size=(replicates, len(models)))
        draws = bootstrap_correlations(x[idx], y[idx])
        intervals = {}
        for name, point in points.items():
            low, high = np.nanpercentile(draws[name], [tail, 100 - tail])
            intervals[name] = Interval(float(point), float(low), float(high))
        out.append(Correlation(a, b, len(models), **intervals))
    return out


def bootstrap_correlations(xs: np.ndarray, ys: np.ndarray) -> dict[str, np.ndarray]:
    """Pearson, Spearman and Kendall's tau-b of every row pair (replicates x models) at once:
    the same statistics as scipy's, without a Python call per replicate. Rows where either
    side is constant give NaN."""
    from scipy.stats import rankdata

    def pearson(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du = u - u.mean(axis=1, keepdims=True)
        dv = v - v.mean(axis=1, keepdims=True)
        with np.errstate(all="ignore"):
            r = (du * dv).sum(axis=1) / np.sqrt((du**2).sum(axis=1) * (dv**2).sum(axis=1))
        return np.clip(r, -1.0, 1.0)

    # Pairwise signs: concordant minus discordant pairs over the pairs untied on each side.
    sx = np.sign(xs[:, :, None] - xs[:, None, :])
    sy = np.sign(ys[:, :, None] - ys[:, None, :])
    with np.errstate(all="ignore"):
        kendall = (sx * sy).sum(axis=(1, 2)) / np.sqrt(
            np.abs(sx).sum(axis=(1, 2)) * np.abs(sy).sum(axis=(1, 2))
        )
    constant = (np.ptp(xs, axis=1) == 0) | (np.ptp(ys, axis=1) == 0)
    draws = {
        "spearman": pearson(rankdata(xs, axis=1), rankdata(ys, axis=1)),
        "kendall": kendall,
        "pearson": pearson(xs, ys),
    }
    for values in draws.values():
        values[constant] = np.nan
    return draws


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two binary raters on the same items."""
    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    observed = float(np.mean(a == b))
    pa, pb = a.mean(), b.mean()
    expected = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa(ratings: np.ndarray) -> float:
    """Fleiss' kappa for binary ratings: items x raters, every rater rates every item."""
    ratings = np.asarray(ratings, dtype=int)
    n_items, n_raters = ratings.shape
    ones = ratings.sum(axis=1)
    counts = np.stack([n_raters - ones, ones], axis=1)
    p_item = (np.sum(counts * (counts - 1), axis=1)) / (n_raters * (n_raters - 1))
    p_bar = p_item.mean()
    p_cat = counts.sum(axis=0) / (n_items * n_raters)
    p_e = float(np.sum(p_cat**2))
    return 1.0 if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


def confusion(reference: np.ndarray, other: np.ndarray) -> dict[str, int]:
    """Counts of (reference, other) verdicts: 1 = violation, 0 = adherence."""
    return {
        "both_adhere": int(np.sum((reference == 0) & (other == 0))),
        "ref_adheres_other_violates": int(np.sum((reference == 0) & (other == 1))),
        "ref_violates_other_adheres": int(np.sum((reference == 1) & (other == 0))),
        "both_violate": int(np.sum((reference == 1) & (other == 1))),
    }
