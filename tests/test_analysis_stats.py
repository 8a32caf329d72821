"""Statistics checked against values worked out independently."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from holisafe_bench.analysis.agreement import (
    bootstrap_correlations,
    cohen_kappa,
    fleiss_kappa,
    rank_correlations,
)
from holisafe_bench.analysis.bootstrap import paired_difference, score_intervals
from holisafe_bench.analysis.published import judge_name_of, read_leaderboard_csv
from holisafe_bench.analysis.verdict_matrix import VerdictArrays

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"
# The repository's copy of the same tables, read when ../shared is absent.
PUBLISHED = REFERENCE if REFERENCE.is_dir() else REPO / "results" / "published"


def test_cohen_kappa_on_a_hand_built_table():
    # 2x2 table: both 0: 20, a0 b1: 5, a1 b0: 10, both 1: 15 (n = 50)
    a = np.array([0] * 20 + [0] * 5 + [1] * 10 + [1] * 15)
    b = np.array([0] * 20 + [1] * 5 + [0] * 10 + [1] * 15)
    # p_o = 35/50 = 0.7; p_a1 = 0.5, p_b1 = 0.4; p_e = 0.5*0.4 + 0.5*0.6 = 0.5 -> kappa 0.4
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == pytest.approx(1.0)


def test_fleiss_kappa_on_a_hand_worked_case():
    # 4 items, 3 raters. Items: [1,1,1], [0,0,0], [1,1,0], [0,0,1]
    ratings = np.array([[1, 1, 1], [0, 0, 0], [1, 1, 0], [0, 0, 1]])
    # P_i = 1, 1, 1/3, 1/3 -> P_bar = 2/3; p_1 = 6/12 = 0.5 -> P_e = 0.5; kappa = 1/3
    assert fleiss_kappa(ratings) == pytest.approx(1 / 3)


def _textbook_cohen(table: list[list[int]]) -> Fraction:
    """Cohen's kappa from a 2x2 table [[both 0, a0 b1], [a1 b0, both 1]], as textbooks write
    it: (p_o - p_e) / (1 - p_e), p_e from the two raters' own marginals."""
    (n00, n01), (n10, n11) = table
    n = n00 + n01 + n10 + n11
    p_o = Fraction(n00 + n11, n)
    p_e = Fraction((n00 + n01) * (n00 + n10) + (n10 + n11) * (n01 + n11), n * n)
    return (p_o - p_e) / (1 - p_e)


def _raters(table: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Two raters' labels that make the 2x2 table."""
    a, b = [], []
    for i in (0, 1):
        for j in (0, 1):
            a += [i] * table[i][j]
            b += [j] * table[i][j]
    return np.array(a), np.array(b)


@pytest.mark.parametrize(
    ("table", "by_hand"),
    [
        # p_o = 0.60; marginals 0.6/0.4 and 0.7/0.3: p_e = 0.42 + 0.12 = 0.54 -> 0.06/0.46
        ([[45, 15], [25, 15]], Fraction(3, 23)),
        # They never agree and each says 1 half the time: p_o = 0, p_e = 0.5 -> -1
        ([[0, 5], [5, 0]], Fraction(-1)),
        # Agreement no better than chance: p_o = p_e = 0.5 -> 0
        ([[25, 25], [25, 25]], Fraction(0)),
        # The first table of this file: p_o = 0.7, p_e = 0.5 -> 0.4
        ([[20, 5], [10, 15]], Fraction(2, 5)),
    ],
)
def test_cohen_kappa_equals_the_textbook_formula(table, by_hand):
    assert _textbook_cohen(table) == by_hand
    a, b = _raters(table)
    assert cohen_kappa(a, b) == pytest.approx(float(by_hand))
    assert cohen_kappa(b, a) == pytest.approx(float(by_hand))  # symmetric in the raters


def _textbook_fleiss(ratings: np.ndarray) -> Fraction:
    """Fleiss' kappa as Fleiss (1971) writes it, in exact fractions: P_i = (sum_j n_ij^2 -
    n) / (n (n - 1)), P_bar their mean, P_e = sum_j p_j^2."""
    items, raters = ratings.shape
    counts = [(raters - int(row.sum()), int(row.sum())) for row in ratings]
    p_i = [Fraction(sum(c * c for c in row) - raters, raters * (raters - 1)) for row in counts]
    p_bar = sum(p_i, Fraction(0)) / items
    p_j = [Fraction(sum(row[j] for row in counts), items * raters) for j in (0, 1)]
    p_e = sum(p * p for p in p_j)
    return (p_bar - p_e) / (1 - p_e)


def test_fleiss_kappa_on_a_second_hand_worked_case():
    # 5 items, 4 raters; items rated 1 by 4, 4, 3, 3 and 0 raters.
    ratings = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]])
    # P_i = 1, 1, 1/2, 1/2, 1 -> P_bar = 4/5; p_1 = 14/20 = 0.7 -> P_e = 0.49 + 0.09 = 0.58;
    # kappa = (0.8 - 0.58) / 0.42 = 11/21
    assert _textbook_fleiss(ratings) == Fraction(11, 21)
    assert fleiss_kappa(ratings) == pytest.approx(11 / 21)


def test_fleiss_kappa_of_two_raters_is_scotts_pi_not_cohens_kappa():
    # The 2x2 table [[45, 15], [25, 15]]: Scott's pi pools both raters' marginals,
    # p_1 = (40 + 30) / 200 = 0.35 -> p_e = 0.35^2 + 0.65^2 = 0.545; p_o = 0.6;
    # pi = 0.055 / 0.455 = 11/91, while Cohen's kappa (own marginals) is 3/23.
    a, b = _raters([[45, 15], [25, 15]])
    ratings = np.stack([a, b], axis=1)
    assert fleiss_kappa(ratings) == pytest.approx(11 / 91)
    assert cohen_kappa(a, b) == pytest.approx(3 / 23)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fleiss_kappa_equals_the_textbook_formula_on_random_ratings(seed):
    rng = np.random.default_rng(seed)
    ratings = (rng.random((30, 3 + seed)) < 0.3 + 0.2 * seed).astype(int)
    assert fleiss_kappa(ratings) == pytest.approx(float(_textbook_fleiss(ratings)))


def test_rank_correlations_match_scipy():
    rng = np.random.default_rng(1)
    x = rng.random(12)
    y = x + rng.normal(0, 0.2, 12)
    masr = {"a": dict(enumerate(x)), "b": dict(enumerate(y))}
    (corr,) = rank_correlations(masr, replicates=200)
    assert corr.spearman.estimate == pytest.approx(stats.spearmanr(x, y).statistic)
    assert corr.kendall.estimate == pytest.approx(stats.kendalltau(x, y).statistic)
    assert corr.pearson.estimate == pytest.approx(stats.pearsonr(x, y).statistic)
    assert corr.spearman.low <= corr.spearman.estimate <= corr.spearman.high


def test_vectorised_bootstrap_correlations_equal_scipy_per_resample():
    rng = np.random.default_rng(2)
    # Rounded values make ties, which tau-b and average ranks must treat as scipy does.
    x = np.round(rng.random(9), 1)
    y = np.round(x + rng.normal(0, 0.3, 9), 1)
    idx = rng.integers(0, 9, size=(300, 9))
    draws = bootstrap_correlations(x[idx], y[idx])
    checked = 0
    for row, i in enumerate(idx):
        if np.ptp(x[i]) == 0 or np.ptp(y[i]) == 0:
            assert np.isnan(draws["kendall"][row])
            continue
        checked += 1
        assert draws["spearman"][row] == pytest.approx(stats.spearmanr(x[i], y[i]).statistic)
        assert draws["kendall"][row] == pytest.approx(stats.kendalltau(x[i], y[i]).statistic)
        assert draws["pearson"][row] == pytest.approx(stats.pearsonr(x[i], y[i]).statistic)
    assert checked > 250


def _arrays(rates: dict[int, float], n: int, seed: int = 0) -> VerdictArrays:
    rng = np.random.default_rng(seed)
    types, outcome = [], []
    for t, p in rates.items():
        k = round(p * n)
        values = np.array([1] * k + [0] * (n - k))
        rng.shuffle(values)
        types += [t] * n
        outcome += values.tolist()
    return _verdict_arrays(types, outcome)


def _verdict_arrays(types: list[int], outcome: list[int]) -> VerdictArrays:
    """One model's verdicts, sample ids 0.. in order, all in one category."""
    size = len(types)
    return VerdictArrays(
        sample_ids=np.arange(size),
        type_index=np.array(types, dtype=np.int8),
        categories=np.array(["hate"] * size),
        subcategories=np.array(["race"] * size),
        outcome=np.array(outcome, dtype=np.int8),
    )


def test_bootstrap_interval_matches_the_binomial_normal_approximation():
    # One type with p = 0.5 over n = 2000: the 95% interval is p +- 1.96 sqrt(p(1-p)/n).
    arrays = _arrays({1: 0.5}, 2000)
    interval = score_intervals(arrays, replicates=4000, seed=3)["SSU"]
    half = 1.96 * np.sqrt(0.25 / 2000)
    assert interval.estimate == pytest.approx(0.5)
    assert interval.low == pytest.approx(0.5 - half, abs=0.004)
    assert interval.high == pytest.approx(0.5 + half, abs=0.004)


def test_paired_difference_of_a_model_with_itself_is_exactly_zero():
    arrays = _arrays({1: 0.3, 2: 0.6, 3: 0.1, 4: 0.2}, 200)
    diff = paired_difference(arrays, arrays, replicates=300)
    assert (diff.estimate, diff.low, diff.high) == (0.0, 0.0, 0.0)
    other = _arrays({1: 0.5, 2: 0.8, 3: 0.3, 4: 0.4}, 200, seed=1)
    gap = paired_difference(other, arrays, replicates=300)
    assert gap.estimate == pytest.approx(0.2)
    assert 0 < gap.low < 0.2 < gap.high


def test_published_tables_give_the_papers_rho_of_099():
    tables = {
        judge_name_of(p): {m: v["mASR↓"] for m, v in read_leaderboard_csv(p).items()}
        for p in sorted(PUBLISHED.glob("leaderboard_4031_*.csv"))
    }
    assert sorted(tables) == ["claude", "gemini", "gpt4o", "sm"]
    by_pair = {(c.judge_a, c.judge_b): c for c in rank_correlations(tables, replicates=200)}
    assert round(by_pair[("gpt4o", "sm")].spearman.estimate, 2) == 0.99
    assert round(by_pair[("gemini", "sm")].spearman.estimate, 2) == 0.99


def test_tied_models_share_a_rank_and_an_interval_covering_the_tie():
    from holisafe_bench.analysis.bootstrap import rank_intervals

    always = {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}  # every unsafe sample answered: mASR 100%
    never = {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0}  # every unsafe sample refused: mASR 0%
    models = {
        "safe": _arrays(never, 50),
        "tied-a": _arrays(always, 50, seed=1),
        "tied-b": _arrays(always, 50, seed=2),
        "tied-c": _arrays(always, 50, seed=3),
    }
    ranks = rank_intervals(models, level=0.95, replicates=200)
    # Rates of 0 and 1 have no sampling spread, so every interval is exact.
    assert ranks == {
        "safe": (1, 1, 1),
        "tied-a": (2, 2, 4),
        "tied-b": (2, 2, 4),
        "tied-c": (2, 2, 4),
    }


def test_rank_intervals_of_models_with_sampling_spread():
    """Clear gaps give exact ranks; two models with the same rates (other samples) share
    rank 1 and each may plausibly be first or second."""
    from holisafe_bench.analysis.bootstrap import rank_intervals

    def rates(p: float) -> dict[int, float]:
        return {1: p, 2: p, 3: p, 4: p}

    models = {
        "even-a": _arrays(rates(0.2), 100, seed=1),
        "even-b": _arrays(rates(0.2), 100, seed=2),
        "worse": _arrays(rates(0.5), 100, seed=3),
        "worst": _arrays(rates(0.9), 100, seed=4),
    }
    ranks = rank_intervals(models, level=0.95, replicates=400, seed=0)
    # mASR 20, 20, 50, 90 (% of 400 unsafe samples each): a 30-point gap is over 7
    # standard errors of the bootstrap, so no resample swaps those places.
    assert ranks == {
        "even-a": (1, 1, 2),
        "even-b": (1, 1, 2),
        "worse": (3, 3, 3),
        "worst": (4, 4, 4),
    }


def _sized(counts: dict[int, tuple[int, int]]) -> VerdictArrays:
    """Per type index: (violations, valid verdicts), the same sample ids for every call."""
    types, outcome = [], []
    for t, (bad, n) in counts.items():
        types += [t] * n
        outcome += [1] * bad + [0] * (n - bad)
    return _verdict_arrays(types, outcome)


def test_pooled_intervals_and_ranks_follow_the_pooled_definition():
    """A: SSU 0 of 100, USU 150 of 300: macro 25%, pooled 37.5%. B: 30 of 100 and 90 of
    300: 30% either way. Macro ranks A safer, pooled ranks B safer."""
    from holisafe_bench.analysis.bootstrap import category_intervals, rank_intervals

    a, b = _sized({1: (0, 100), 2: (150, 300)}), _sized({1: (30, 100), 2: (90, 300)})
    assert score_intervals(a, replicates=200)["mASR"].estimate == pytest.approx(0.25)
    pooled = score_intervals(a, replicates=400, pooled=True)["mASR"]
    assert pooled.estimate == pytest.approx(0.375)
    assert pooled.low < 0.375 < pooled.high < 0.45  # USU's spread over 400 samples, not 300
    by_category = category_intervals(a, replicates=200, pooled=True)
    assert by_category["hate"]["mASR"].estimate == pytest.approx(0.375)
    models = {"A": a, "B": b}
    assert rank_intervals(models, replicates=200)["A"][0] == 1
    assert rank_intervals(models, replicates=200, pooled=True)["B"][0] == 1


def test_published_tables_sharing_a_judge_are_both_kept_and_models_meet_by_alias():
    """Two string-match tables (4,031 and 4,163 rows) are two columns, not one replacing
    the other; the 4,163 table's 'Qwen-2.5-VL-7B' is the registry's qwen2.5-vl-7b, as the
    4,031 table's 'Qwen2.5-VL-7B' is."""
    from holisafe_bench.analysis.published import published_masr

    paths = [PUBLISHED / f"leaderboard_{n}.csv" for n in ("4031_sm", "4163_sm", "4031_gpt4o")]
    tables = published_masr(paths)
    assert sorted(tables) == ["4031_sm", "4163_sm", "gpt4o"]
    assert (
        tables["4031_sm"]["qwen2.5-vl-7b"]
        == read_leaderboard_csv(paths[0])["Qwen2.5-VL-7B"]["mASR↓"]
    )
    assert (
        tables["4163_sm"]["qwen2.5-vl-7b"]
        == read_leaderboard_csv(paths[1])["Qwen-2.5-VL-7B"]["mASR↓"]
    )
    assert len(set(tables["4031_sm"]) & set(tables["4163_sm"])) == 17  # every 4,163 model
    by_pair = {(c.judge_a, c.judge_b): c for c in rank_correlations(tables, replicates=100)}
    assert by_pair[("4031_sm", "gpt4o")].n_models == 21
