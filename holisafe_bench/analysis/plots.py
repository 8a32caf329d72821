"""Plots (matplotlib, PNG and SVG): ASR per type per model, a model x subcategory heatmap,
judge-vs-judge mASR scatter with Spearman's rho, and the safety-helpfulness trade-off."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from holisafe_bench.leaderboard import LeaderboardRow
from holisafe_bench.taxonomy import SUBCATEGORIES, UNSAFE_TYPES


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


FORMATS = ("png", "svg")


def _save(fig, out_dir: Path, name: str, formats: tuple[str, ...]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in formats:
        path = out_dir / f"{name}.{ext}"
        fig.savefig(
            path, dpi=110, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None
        )
        paths.append(path)
    _pyplot().close(fig)
    return paths


def _pct(value) -> float:
    return float("nan") if value is None else float(value) * 100


def asr_by_type(
    rows: list[LeaderboardRow], out_dir: Path, judge: str, formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.6), 4))
    width = 0.8 / len(UNSAFE_TYPES)
    x = np.arange(len(rows))
    for i, t in enumerate(UNSAFE_TYPES):
        ax.bar(x + i * width, [_pct(r.card.overall.asr[t]) for r in rows], width, label=t)
    ax.set_xticks(x + width * (len(UNSAFE_TYPES) - 1) / 2)
    ax.set_xticklabels([r.display_name for r in rows], rotation=60, ha="right")
    ax.set_ylabel("ASR (%)")
    ax.set_title(f"ASR per type ({judge})")
    ax.legend(ncols=4, fontsize="small")
    return _save(fig, out_dir, f"asr_by_type_{judge}", formats)


def subcategory_heatmap(
    rows: list[LeaderboardRow], out_dir: Path, judge: str, formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    plt = _pyplot()
    matrix = np.array(
        [
            [
                _pct(r.card.per_subcategory[s].masr) if s in r.card.per_subcategory else np.nan
                for s in SUBCATEGORIES
            ]
            for r in rows
        ]
    )
    fig, ax = plt.subplots(figsize=(11, max(3, len(rows) * 0.35)))
    image = ax.imshow(matrix, aspect="auto", cmap="Reds", vmin=0, vmax=100)
    ax.set_xticks(range(len(SUBCATEGORIES)))
    ax.set_xticklabels(SUBCATEGORIES, rotation=60, ha="right", fontsize="small")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r.display_name for r in rows], fontsize="small")
    fig.colorbar(image, ax=ax, label="mASR (%)")
    ax.set_title(f"mASR per subcategory ({judge})")
    return _save(fig, out_dir, f"subcategory_heatmap_{judge}", formats)


def judge_scatter(
    masr: dict[str, dict[str, float]],
    judge_a: str,
    judge_b: str,
    out_dir: Path,
    formats: tuple[str, ...] = FORMATS,
) -> list[Path]:
    from scipy import stats

    plt = _pyplot()
    models = sorted(set(masr[judge_a]) & set(masr[judge_b]))
    x = [masr[judge_a][m] for m in models]
    y = [masr[judge_b][m] for m in models]
    rho = stats.spearmanr(x, y).statistic if len(models) > 2 else float("nan")
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(x, y)
    ax.plot([0, 100], [0, 100], color="gray", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"mASR by {judge_a} (%)")
    ax.set_ylabel(f"mASR by {judge_b} (%)")
    ax.set_title(f"Spearman ρ = {rho:.2f} over {len(models)} models")
    return _save(fig, out_dir, f"scatter_{judge_a}_vs_{judge_b}", formats)


def tradeoff(
    rows: list[LeaderboardRow], out_dir: Path, judge: str, formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for r in rows:
        safety = 100 - _pct(r.card.overall.masr)
        helpful = 100 - _pct(r.card.overall.rr)
        ax.scatter(safety, helpful)
        ax.annotate(r.display_name, (safety, helpful), fontsize="x-small")
    ax.set_xlabel("safety: 1 - mASR (%)")
    ax.set_ylabel("helpfulness: 1 - RR (%)")
    ax.set_title(f"Safety-helpfulness trade-off ({judge})")
    return _save(fig, out_dir, f"tradeoff_{judge}", formats)
