"""`holisafe-bench report`: one self-contained HTML file (no network needed to open it):
leaderboards per judge, plots, judge agreement, the manifests, and a sample browser.

Queries, responses and judge replies are untrusted. They reach the page only as gzipped,
base64-encoded JSON (inert inside its script block) and are rendered with textContent;
everything else from data is HTML-escaped by the template (templates/report.html.j2,
autoescape on)."""

from __future__ import annotations

import base64
import gzip
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from holisafe_bench.analysis import plots
from holisafe_bench.analysis.thumbnails import image_chunks, thumbnails
from holisafe_bench.leaderboard import SortableTable, leaderboard_rows, percent, sortable_table
from holisafe_bench.offload import Offload
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.provenance import package_versions
from holisafe_bench.records import utc_now
from holisafe_bench.registry import load_models
from holisafe_bench.rendering import render
from holisafe_bench.scoring import (
    load_current_verdicts,
    response_fingerprints,
    score_rows,
    verdict_rows,
)
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import CATEGORIES, TYPES


@dataclass
class ReportSummary:
    path: Path
    size_bytes: int
    models: int
    judges: int
    responses: int
    thumbnails: int
    notes: tuple[str, ...] = ()  # per model and judge: verdicts left out (stale, unreadable)


def _judges(layout: ResultsLayout) -> list[str]:
    found = layout.judges_with_verdicts()
    return sorted(found, key=lambda j: (j != "string-match", j))


def _models(layout: ResultsLayout) -> list[str]:
    return sorted(set(layout.models_with_responses()) | set(layout.models_with_any_verdicts()))


def _raw_records(path: Path) -> dict[int, dict[str, Any]]:
    """Latest JSON object per sample id (torn and broken lines skipped, as everywhere)."""
    out: dict[int, dict[str, Any]] = {}
    for record in RecordStore(path, dict).read_json():  # type: ignore[type-var]
        try:
            out[int(record["sample_id"])] = record
        except (KeyError, TypeError, ValueError):
            continue
    return out


class Image(NamedTuple):
    alt: str
    src: str  # a data: URL (the page needs no network)


def _image(plot_job: Any) -> Image:
    """The PNG of a plot made by the helper process (its job gives the files written)."""
    png = next(p for p in plot_job.result() if p.suffix == ".png")
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return Image(png.stem, f"data:image/png;base64,{data}")


@dataclass
class LeaderboardSection:
    judge: str
    table: SortableTable
    plots: list[Any]  # side by side; plot jobs until `resolve`, then Images
    wide: list[Any]  # each on a row of its own (the heatmap is wide)
    notes: list[str] = field(default_factory=list)  # what a row's numbers leave out

    def resolve(self) -> None:
        self.plots = [_image(j) for j in self.plots]
        self.wide = [_image(j) for j in self.wide]


def coverage_notes(rows: list[Any], verdicts: dict[str, list[Any]]) -> list[str]:
    """Per row whose numbers rest on less than the others': failed model calls (left out
    as invalid verdicts) and fewer samples judged than the best-covered model."""
    most = max((r.card.overall.n for r in rows), default=0)
    notes = []
    for row in rows:
        n = row.card.overall.n
        failed = sum(v.invalid == "no_response" for v in verdicts[row.model])
        parts = []
        if failed:
            parts.append(f"{failed} of {n} samples have no answer (a failed or blocked call)")
        if n < most:
            parts.append(f"judged on {n} samples where another model has {most}")
        if parts:
            notes.append(f"{row.display_name}: " + "; ".join(parts))
    return notes


@dataclass
class AgreementSection:
    rows: list[list[str]] = field(default_factory=list)  # empty: fewer than two judges
    plots: list[Any] = field(default_factory=list)

    def resolve(self) -> None:
        self.plots = [_image(j) for j in self.plots]


def _clip(text: str | None, limit: int) -> str:
    if text is None:
        return ""
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more chars]"


def build_report(
    layout: ResultsLayout,
    out_path: Path,
    *,
    bench: Any = None,
    max_response_chars: int = 400,
    max_reply_chars: int = 160,
    thumb_px: int = 96,
    plots_dir: Path | None = None,
) -> ReportSummary:
    """Write the report; with `plots_dir`, also every plot there as PNG and SVG."""
    judges = _judges(layout)
    models = _models(layout)
    records, notes = _current_records(layout, models, judges)
    formats = plots.FORMATS if plots_dir else ("png",)
    # Thumbnails and plots are made in a helper process while the rest is built here.
    with Offload() as helper, tempfile.TemporaryDirectory() as tmp:
        plot_dir = plots_dir or Path(tmp)
        thumb_jobs = [
            helper.submit(thumbnails, chunk, thumb_px)
            for chunk in image_chunks(bench, _image_keys(bench, records))
        ]
        leaderboards, masr = _leaderboard_sections(
            layout, records, judges, helper, plot_dir, formats
        )
        agreement = _agreement_section(masr, helper, plot_dir, formats)
        guards = _guard_sections(layout, helper, plot_dir, formats)
        samples, rows = _browser_rows(
            records, models, judges, bench, max_response_chars, max_reply_chars
        )
        helper.work_along()
        for section in [*leaderboards, agreement, *guards]:
            section.resolve()
        thumbs = dict(pair for job in thumb_jobs for pair in job.result())
    data = _encode_browser_data(models, judges, samples, rows, thumbs)
    manifests = _manifests(layout, models) + _guard_manifests(layout)
    page = _page(leaderboards, agreement, manifests, data, judges, guards)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8")
    n_thumbs = sum(1 for t in thumbs.values() if t)
    return ReportSummary(
        out_path, out_path.stat().st_size, len(models), len(judges), len(rows), n_thumbs, notes
    )


def _current_records(
    layout: ResultsLayout, models: list[str], judges: list[str]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Each model's responses and, per judge, the verdicts of those responses; what was
    left out (stale verdicts, unreadable lines) as one note per model and judge."""
    records, notes = {}, []
    for model in models:
        responses = _raw_records(layout.responses(model))
        current = response_fingerprints(responses.values())
        verdicts = {}
        for judge in judges:
            found = load_current_verdicts(layout.verdicts(model, judge), current)
            verdicts[judge] = found.records
            note = found.skipped.note(model, judge)
            if note:
                notes.append(note)
        records[model] = (responses, verdicts)
    return records, tuple(notes)


def _leaderboard_sections(
    layout: ResultsLayout,
    records: dict[str, Any],
    judges: list[str],
    helper: Offload,
    plot_dir: Path,
    formats: tuple[str, ...],
) -> tuple[list[LeaderboardSection], dict[str, dict[str, float]]]:
    """A section per judge with verdicts, its plots submitted to the helper; and each
    judge's mASR (percent) by model, for the agreement section."""
    sections: list[LeaderboardSection] = []
    masr: dict[str, dict[str, float]] = {}
    registry = load_models()
    for judge in judges:
        # Scored from the records already read for the sample browser: one parse.
        scored = {
            model: verdict_rows(verdicts[judge].values())[0]
            for model, (_, verdicts) in records.items()
            if verdicts[judge]
        }
        cards = {
            model: score_rows(found, model=model, judge=judge) for model, found in scored.items()
        }
        rows = leaderboard_rows(cards, registry, layout=layout)
        if not rows:
            continue
        masr[judge] = {
            r.model: float(r.card.overall.masr) * 100
            for r in rows
            if r.card.overall.masr is not None
        }
        side_by_side = (plots.asr_by_type, plots.tradeoff)
        section = LeaderboardSection(
            judge,
            sortable_table(rows, table_id="lb-" + judge),
            [helper.submit(plot, rows, plot_dir, judge, formats) for plot in side_by_side],
            [helper.submit(plots.subcategory_heatmap, rows, plot_dir, judge, formats)],
            coverage_notes(rows, scored),
        )
        sections.append(section)
    return sections, masr


@dataclass
class GuardSection:
    """The guard table of one protocol, its ROC curves and each category-predicting
    guard's confusion matrix (plot jobs until `resolve`, then Images)."""

    protocol: str
    table: SortableTable
    plots: list[Any]
    wide: list[Any]

    def resolve(self) -> None:
        self.plots = [_image(j) for j in self.plots]
        self.wide = [_image(j) for j in self.wide]


def _guard_sections(
    layout: ResultsLayout, helper: Offload, plot_dir: Path, formats: tuple[str, ...]
) -> list[GuardSection]:
    """A section per protocol with guard verdicts (none: the report is as it was)."""
    from holisafe_bench.analysis.guard_metrics import (
        CONFUSION_COLUMNS,
        CONFUSION_ROWS,
        protocols_with_verdicts,
    )
    from holisafe_bench.leaderboard.guard_table import build_guard_rows, guard_sortable_table

    sections = []
    for protocol in protocols_with_verdicts(layout):
        rows = build_guard_rows(layout, protocol)
        curves = {
            f"{r.display_name} (AUROC {percent(r.score.auroc)})": r.score.roc
            for r in rows
            if r.score.roc is not None
        }
        roc = []  # no guard with scores: no curve to draw
        if curves:
            roc.append(helper.submit(plots.guard_roc, curves, plot_dir, protocol, formats))
        wide = [
            helper.submit(
                plots.guard_confusion,
                r.score.twenty_way.matrix,
                (CONFUSION_ROWS, CONFUSION_COLUMNS),
                f"{r.display_name} ({protocol})",
                plot_dir,
                f"guard_confusion_{r.guard}_{protocol}",
                formats,
            )
            for r in rows
            if r.score.twenty_way is not None
        ]
        table = guard_sortable_table(rows, table_id=f"guards-{protocol}")
        sections.append(GuardSection(protocol, table, roc, wide))
    return sections


def _guard_manifests(layout: ResultsLayout) -> list[tuple[str, str]]:
    from holisafe_bench.analysis.guard_metrics import guards_with_verdicts, protocols_with_verdicts

    paths = [
        layout.guard_manifest(guard, protocol)
        for protocol in protocols_with_verdicts(layout)
        for guard in guards_with_verdicts(layout, protocol)
    ]
    return [
        (str(p.relative_to(layout.root)), p.read_text(encoding="utf-8"))
        for p in paths
        if p.exists()
    ]


def _image_keys(bench: Any, records: dict[str, Any]) -> list[str]:
    if bench is None:
        return []
    ids = {i for responses, verdicts in records.values() for i in responses}
    ids |= {i for _, verdicts in records.values() for v in verdicts.values() for i in v}
    return sorted({bench.by_id[i].image for i in ids if i in bench.by_id})


def _agreement_section(
    masr: dict[str, dict[str, float]], helper: Offload, plot_dir: Path, formats: tuple[str, ...]
) -> AgreementSection:
    if len(masr) < 2:
        return AgreementSection()
    from holisafe_bench.analysis.agreement import rank_correlations

    rows = [
        [c.judge_a, c.judge_b, str(c.n_models), *c.cells()]
        for c in rank_correlations(masr, replicates=500)
    ]
    judges = sorted(masr)
    scatters = [
        helper.submit(plots.judge_scatter, masr, judges[0], other, plot_dir, formats)
        for other in judges[1:]
    ]
    return AgreementSection(rows, scatters)


def _manifests(layout: ResultsLayout, models: list[str]) -> list[tuple[str, str]]:
    """(path under the results folder, text) of each run and verdict manifest."""
    out = []
    for model in models:
        files = [
            layout.run_manifest(model),
            *sorted((layout.model_dir(model) / "verdicts").glob("*.json")),
        ]
        out += [
            (str(path.relative_to(layout.root)), path.read_text(encoding="utf-8"))
            for path in files
            if path.exists()
        ]
    return out


def _browser_rows(
    records: dict[str, Any],
    models: list[str],
    judges: list[str],
    bench: Any,
    max_response_chars: int,
    max_reply_chars: int,
) -> tuple[dict[str, list[Any]], list[list[Any]]]:
    """Sample facts by id, and one row per (model, sample) with each judge's verdict code
    (1 violation, 0 adherence, -1 invalid, -2 missing) and clipped reply. Sample ids are
    carried as strings, keys and row cells alike."""
    samples: dict[str, list[Any]] = {}
    rows = []
    for m_index, model in enumerate(models):
        responses, verdicts = records[model]
        ids = sorted(set(responses) | {i for v in verdicts.values() for i in v})
        for sample_id in ids:
            resp = responses.get(sample_id) or {}
            any_record = resp or next(v[sample_id] for v in verdicts.values() if sample_id in v)
            key = str(sample_id)
            if key not in samples:
                sample = bench.by_id.get(sample_id) if bench is not None else None
                samples[key] = [
                    any_record.get("type"),
                    any_record.get("category"),
                    any_record.get("subcategory"),
                    sample.query if sample else "(query not available: pass --dataset)",
                    sample.image if sample else "",
                ]
            codes, replies = [], []
            for judge in judges:
                v = verdicts[judge].get(sample_id)
                if v is None:
                    codes.append(-2)
                    replies.append("")
                    continue
                follows = v.get("follows")
                codes.append(-1 if follows is None else int(not follows))
                reply = v.get("raw") or v.get("invalid") or v.get("detail") or ""
                replies.append(_clip(reply, max_reply_chars))
            outcome = resp.get("outcome", "missing")
            rows.append(
                [
                    m_index,
                    key,  # a string: JavaScript numbers lose ids above 2**53
                    _clip(resp.get("text"), max_response_chars),
                    "" if outcome == "ok" else outcome,
                    codes,
                    replies,
                ]
            )
    return samples, rows


def _encode_browser_data(
    models: list[str],
    judges: list[str],
    samples: dict[str, list[Any]],
    rows: list[list[Any]],
    thumbs: dict[str, str | None],
) -> str:
    payload = {
        "models": models,
        "judges": judges,
        "types": list(TYPES),
        "categories": list(CATEGORIES),
        "samples": samples,
        "rows": rows,
        "thumbs": {k: v for k, v in thumbs.items() if v},
    }
    blob = gzip.compress(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        compresslevel=6,
    )
    return base64.b64encode(blob).decode("ascii")


def _page(
    leaderboards: list[LeaderboardSection],
    agreement: AgreementSection,
    manifests: list[tuple[str, str]],
    data: str,
    judges: list[str],
    guards: list[GuardSection] | None = None,
) -> str:
    nav = [(f"leaderboard-{j}", f"Leaderboard: {j}") for j in judges]
    nav += [("agreement", "Judge agreement")]
    nav += [("guards", "Guard classification")] if guards else []
    nav += [("manifests", "Manifests"), ("samples", "Samples")]
    return render(
        "report.html.j2",
        generated=utc_now(),
        judges=judges,
        versions=", ".join(f"{k} {v}" for k, v in package_versions().items()),
        nav=nav,
        leaderboards=leaderboards,
        agreement=agreement,
        guards=guards or [],
        manifests=manifests,
        data=data,
    )
