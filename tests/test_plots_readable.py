"""Plots a person can read: tied models share one label, no two labels overlap, labels stay
inside the axes, the axes say what they show, and the legends sit outside the data."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

from holisafe_bench.analysis import plots
from holisafe_bench.taxonomy import UNSAFE_TYPES


def _row(name: str, masr: Fraction, rr: Fraction, group: str = "open-weight"):
    overall = SimpleNamespace(masr=masr, rr=rr, asr=dict.fromkeys(UNSAFE_TYPES, masr))
    card = SimpleNamespace(overall=overall, per_subcategory={})
    return SimpleNamespace(model=name, display_name=name, group=group, card=card)


def _rows():
    # Three models tied at 100% mASR / 0% RR (the case that printed labels on each other),
    # a cluster of near neighbours, and points at the edges of the axes.
    rows = [_row(f"Tied-Model-{i}", Fraction(1), Fraction(0)) for i in range(3)]
    rows += [
        _row(f"Near-{i}", Fraction(50 + i, 100), Fraction(50 + i % 2, 100), "closed")
        for i in range(6)
    ]
    rows += [
        _row("Edge-Safe-Helpful", Fraction(0), Fraction(0), "safety-tuned"),
        _row("Edge-Refuses", Fraction(0), Fraction(1)),
    ]
    return rows


def test_tradeoff_labels_do_not_overlap_and_ties_share_one_label():
    fig, texts = plots.tradeoff_figure(_rows(), "string-match")
    renderer = fig.canvas.get_renderer()
    labels = [t.get_text() for t in texts]
    assert "Tied-Model-0 / Tied-Model-1 / Tied-Model-2" in labels
    assert len(texts) == 1 + 6 + 2  # one label per distinct point
    boxes = [plots.label_box(t, renderer) for t in texts]
    for i, a in enumerate(boxes):
        for j, b in enumerate(boxes[:i]):
            assert not a.overlaps(b), f"labels {labels[i]!r} and {labels[j]!r} overlap"
    frame = fig.axes[0].get_window_extent(renderer)
    for label, box in zip(labels, boxes, strict=True):
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), label
    ax = fig.axes[0]
    assert ax.get_xlabel() == "safety: 100 - mASR (%)"
    assert ax.get_ylabel() == "helpfulness: 100 - RR (%)"
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["open-weight", "closed", "safety-tuned"]
    assert legend.get_window_extent(renderer).x0 >= frame.x1  # outside the data


def test_bar_chart_legend_sits_above_the_bars(tmp_path):
    rows = [_row(f"M{i}", Fraction(1), Fraction(0)) for i in range(4)]  # every bar at 100%
    fig = plots.asr_by_type_figure(rows, "sm")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    top_of_bars = max(bar.get_window_extent(renderer).y1 for bar in ax.patches)
    assert legend.y0 >= top_of_bars - 0.5
    title = ax.title.get_window_extent(renderer)
    assert not title.overlaps(legend)
    assert plots.asr_by_type(rows, tmp_path, "sm", ("png",))[0].stat().st_size > 0


def test_model_names_with_dollar_signs_are_plain_text(tmp_path):
    names = ["a $m$ b", "x $\\frac{1}{$"]  # mathtext, and broken mathtext
    rows = [_row(n, Fraction(i, 3), Fraction(1, 3)) for i, n in enumerate(names)]
    for plot in (plots.asr_by_type, plots.tradeoff, plots.subcategory_heatmap):
        assert plot(rows, tmp_path, "sm", ("png", "svg"))
    _, texts = plots.tradeoff_figure(rows, "sm")
    assert sorted(t.get_text() for t in texts) == sorted(names)
