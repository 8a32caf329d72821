"""Plots (matplotlib, PNG and SVG): ASR per type per model, a model x subcategory heatmap,
judge-vs-judge mASR scatter with Spearman's rho, and the safety-helpfulness trade-off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from holisafe_bench.leaderboard import LeaderboardRow
from holisafe_bench.taxonomy import CATEGORY_SUBCATEGORIES, SUBCATEGORIES, UNSAFE_TYPES


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
    return _save(asr_by_type_figure(rows, judge), out_dir, f"asr_by_type_{judge}", formats)


def asr_by_type_figure(rows: list[LeaderboardRow], judge: str) -> Any:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.6), 4))
    width = 0.8 / len(UNSAFE_TYPES)
    x = np.arange(len(rows))
    for i, t in enumerate(UNSAFE_TYPES):
        ax.bar(x + i * width, [_pct(r.card.overall.asr[t]) for r in rows], width, label=t)
    ax.set_xticks(x + width * (len(UNSAFE_TYPES) - 1) / 2)
    # parse_math=False: a model name is text, never mathtext ("$" must not break a plot).
    ax.set_xticklabels([r.display_name for r in rows], rotation=60, ha="right", parse_math=False)
    ax.set_ylabel("ASR (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"ASR per type ({judge})", pad=24)
    # Above the axes, so it never covers a 100% bar.
    ax.legend(ncols=4, fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return fig


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
    ax.set_yticklabels([r.display_name for r in rows], fontsize="small", parse_math=False)
    _category_bands(ax)
    fig.colorbar(image, ax=ax, label="mASR (%)")
    ax.set_title(f"mASR per subcategory, grouped by category ({judge})", pad=34)
    return _save(fig, out_dir, f"subcategory_heatmap_{judge}", formats)


def _category_bands(ax) -> None:
    """A line between categories and each category's name above its columns (names on two
    staggered rows, so neighbouring one-column categories do not collide)."""
    from matplotlib.transforms import blended_transform_factory

    above = blended_transform_factory(ax.transData, ax.transAxes)  # x in columns, y in axes
    start = 0
    for index, (category, subs) in enumerate(CATEGORY_SUBCATEGORIES.items()):
        end = start + len(subs)
        if start:
            ax.axvline(start - 0.5, color="black", linewidth=1.2)
        ax.text(
            (start + end - 1) / 2,
            1.01 + 0.05 * (index % 2),
            category,
            ha="center",
            va="bottom",
            fontsize="x-small",
            transform=above,
            clip_on=False,
        )
        start = end


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
    # A judge that gives every model the same mASR has no ranking: rho is undefined, and
    # says so in the title rather than as a scipy warning on the terminal.
    varied = len(set(x)) > 1 and len(set(y)) > 1
    rho = stats.spearmanr(x, y).statistic if len(models) > 2 and varied else float("nan")
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(x, y)
    ax.plot([0, 100], [0, 100], color="gray", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"mASR by {judge_a} (%)")
    ax.set_ylabel(f"mASR by {judge_b} (%)")
    ax.set_title(f"Spearman ρ = {rho:.2f} over {len(models)} models")
    return _save(fig, out_dir, f"scatter_{judge_a}_vs_{judge_b}", formats)


GROUP_COLOURS = {"open-weight": "tab:blue", "closed": "tab:orange", "safety-tuned": "tab:green"}


def tradeoff(
    rows: list[LeaderboardRow], out_dir: Path, judge: str, formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    fig, _ = tradeoff_figure(rows, judge)
    return _save(fig, out_dir, f"tradeoff_{judge}", formats)


def tradeoff_figure(rows: list[LeaderboardRow], judge: str) -> tuple[Any, list]:
    """The trade-off scatter and its label artists (tests read their positions)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    points: dict[tuple[float, float], list[LeaderboardRow]] = {}
    for r in rows:
        point = (100 - _pct(r.card.overall.masr), 100 - _pct(r.card.overall.rr))
        points.setdefault(point, []).append(r)
    for group, colour in GROUP_COLOURS.items():
        members = [p for p, rs in points.items() if rs[0].group == group]
        if members:
            ax.scatter(*zip(*members, strict=True), color=colour, label=group, zorder=3)
    others = [p for p, rs in points.items() if rs[0].group not in GROUP_COLOURS]
    if others:
        ax.scatter(*zip(*others, strict=True), color="tab:gray", label="other", zorder=3)
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.set_xlabel("safety: 100 - mASR (%)")
    ax.set_ylabel("helpfulness: 100 - RR (%)")
    ax.set_title(f"Safety-helpfulness trade-off ({judge})")
    # Outside the axes, so no point or label hides under it.
    ax.legend(title="group", fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    # Models on the same point share one label ("A / B"); labels are then moved apart.
    labels = {p: " / ".join(r.display_name for r in rs) for p, rs in points.items()}
    return fig, place_labels(ax, labels)


# Offsets (points) tried in turn for a label: beside the point first, then rings further
# out in eight directions (those get a leader line).
_OFFSETS = [(6, 4), (-6, 4), (6, -10), (-6, -10)] + [
    (dx * k, dy * k)
    for k in range(1, 9)
    for dx, dy in ((8, 10), (-8, 10), (8, -14), (-8, -14), (0, 14), (0, -18), (14, 0), (-14, 0))
]


def label_box(text, renderer):
    """A label's own extent (an annotation's extent would include its leader line)."""
    from matplotlib.text import Text

    text.update_positions(renderer)
    return Text.get_window_extent(text, renderer)


_LEADER = {"arrowstyle": "-", "color": "0.6", "lw": 0.5}


def place_labels(ax, labels: dict[tuple[float, float], str]) -> list:
    """Annotate each point with its label at the first offset where the label stays inside
    the axes and overlaps no label placed before it (and no point); a label that fits
    nowhere takes its last try."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed_boxes = []
    point_boxes = [_point_box(ax, p) for p in labels]
    texts = []
    for point, label in sorted(labels.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        for dx, dy in _OFFSETS:
            text = ax.annotate(
                label,
                point,
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize="x-small",
                parse_math=False,
                ha="left" if dx >= 0 else "right",
                arrowprops=None if abs(dx) + abs(dy) <= 16 else _LEADER,
            )
            box = label_box(text, renderer).expanded(1.02, 1.1)
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(b) for b in placed_boxes + point_boxes):
                break
            if (dx, dy) != _OFFSETS[-1]:
                text.remove()
        placed_boxes.append(box)
        texts.append(text)
    return texts


def _point_box(ax, point: tuple[float, float]):
    from matplotlib.transforms import Bbox

    x, y = ax.transData.transform(point)
    return Bbox.from_extents(x - 3, y - 3, x + 3, y + 3)


# --- guard classification ---------------------------------------------------------------------


def guard_roc(
    curves: dict[str, tuple[list[float], list[float]]],
    out_dir: Path,
    protocol: str,
    formats: tuple[str, ...] = FORMATS,
) -> list[Path]:
    """ROC curves of the guards that give scores, one line each, on one protocol."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, linewidth=1.4, label=name)
    ax.plot([0, 1], [0, 1], color="gray", linewidth=0.8, linestyle="--")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("false positive rate (safe flagged unsafe)")
    ax.set_ylabel("true positive rate (unsafe caught)")
    ax.set_title(f"Guard ROC curves, protocol {protocol}")
    if curves:
        legend = ax.legend(fontsize="small", loc="lower right")
        for text in legend.get_texts():
            text.set_parse_math(False)  # a guard name is text, never mathtext
    return _save(fig, out_dir, f"guard_roc_{protocol}", formats)


def guard_confusion(
    matrix: list[list[int]],
    labels: tuple[tuple[str, ...], tuple[str, ...]],
    title: str,
    out_dir: Path,
    stem: str,
    formats: tuple[str, ...] = FORMATS,
) -> list[Path]:
    """The 20-way confusion matrix: rows the image's label, columns the predicted one;
    colour the share of the row, the count written in each non-empty cell."""
    plt = _pyplot()
    rows, columns = labels
    counts = np.array(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig, ax = plt.subplots(figsize=(10, 8.5))
    image = ax.imshow(shares * 100, cmap="Blues", vmin=0, vmax=100)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns, rotation=60, ha="right", fontsize="x-small")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize="x-small")
    for (i, j), count in np.ndenumerate(counts):
        if count:
            colour = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, str(int(count)), ha="center", va="center", fontsize=6, color=colour)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("image label")
    fig.colorbar(image, ax=ax, label="share of the row (%)")
    ax.set_title(f"20-way confusion: {title}", parse_math=False)
    return _save(fig, out_dir, stem, formats)
