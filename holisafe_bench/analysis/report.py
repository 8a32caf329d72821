"""`holisafe-bench report`: one self-contained HTML file (no network needed to open it):
leaderboards per judge, plots, judge agreement, the manifests, and a sample browser.

Queries, responses and judge replies are untrusted. They reach the page only as gzipped,
base64-encoded JSON (inert inside its script block) and are rendered with textContent;
everything else from data is HTML-escaped."""

from __future__ import annotations

import base64
import gzip
import html
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from holisafe_bench.analysis import plots
from holisafe_bench.analysis.formats import asset, html_table
from holisafe_bench.analysis.offload import Offload
from holisafe_bench.analysis.thumbnails import image_chunks, thumbnails
from holisafe_bench.leaderboard import leaderboard_rows
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.provenance import package_versions
from holisafe_bench.records import utc_now
from holisafe_bench.registry import load_models
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


def _img(paths: list[Path]) -> str:
    png = next(p for p in paths if p.suffix == ".png")
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'


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
        pending = _leaderboard_sections(layout, records, judges, helper, plot_dir, formats)
        manifests = _manifest_section(layout, models)
        samples, rows = _browser_rows(
            records, models, judges, bench, max_response_chars, max_reply_chars
        )
        helper.work_along()
        sections = [_resolve(parts) for parts in pending] + [manifests]
        thumbs = dict(pair for job in thumb_jobs for pair in job.result())
    data = _encode_browser_data(models, judges, samples, rows, thumbs)
    page = _page(sections, data, judges)
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


Parts = list[Any]  # HTML strings and plot jobs (each gives PNG/SVG paths)


def _resolve(parts: Parts) -> str:
    return "".join(p if isinstance(p, str) else _img(p.result()) for p in parts)


def _leaderboard_sections(
    layout: ResultsLayout,
    records: dict[str, Any],
    judges: list[str],
    helper: Offload,
    plot_dir: Path,
    formats: tuple[str, ...],
) -> list[Parts]:
    sections: list[Parts] = []
    masr: dict[str, dict[str, float]] = {}
    registry = load_models()
    for judge in judges:
        # Scored from the records already read for the sample browser: one parse.
        cards = {
            model: score_rows(verdict_rows(verdicts[judge].values())[0], model=model, judge=judge)
            for model, (_, verdicts) in records.items()
            if verdicts[judge]
        }
        rows = leaderboard_rows(cards, registry, layout=layout)
        if not rows:
            continue
        masr[judge] = {
            r.model: float(r.card.overall.masr) * 100
            for r in rows
            if r.card.overall.masr is not None
        }
        sections.append(
            [
                f'<section id="leaderboard-{html.escape(judge)}">'
                f"<h2>Leaderboard: {html.escape(judge)}</h2>"
                "<p>Percent; mASR is the macro mean of the four ASRs. Click a header to sort."
                f"</p>{html_table(rows, table_id='lb-' + judge)}",
                '<div class="plots">',
                helper.submit(plots.asr_by_type, rows, plot_dir, judge, formats),
                helper.submit(plots.tradeoff, rows, plot_dir, judge, formats),
                "</div>",  # the heatmap is wide: a row of its own
                helper.submit(plots.subcategory_heatmap, rows, plot_dir, judge, formats),
                "</section>",
            ]
        )
    sections.append(_agreement_section(masr, helper, plot_dir, formats))
    return sections


def _image_keys(bench: Any, records: dict[str, Any]) -> list[str]:
    if bench is None:
        return []
    ids = {i for responses, verdicts in records.values() for i in responses}
    ids |= {i for _, verdicts in records.values() for v in verdicts.values() for i in v}
    return sorted({bench.by_id[i].image for i in ids if i in bench.by_id})


def _agreement_section(
    masr: dict[str, dict[str, float]], helper: Offload, plot_dir: Path, formats: tuple[str, ...]
) -> Parts:
    if len(masr) < 2:
        return [
            '<section id="agreement"><h2>Judge agreement</h2>'
            "<p>Only one judge has verdicts: nothing to "
            "compare.</p></section>"
        ]
    from holisafe_bench.analysis.agreement import rank_correlations

    rows = []
    for c in rank_correlations(masr, replicates=500):
        cells = "".join(f"<td>{html.escape(text)}</td>" for text in c.cells())
        rows.append(
            f"<tr><td>{html.escape(c.judge_a)}</td><td>{html.escape(c.judge_b)}</td>"
            f"<td>{c.n_models}</td>{cells}</tr>"
        )
    judges = sorted(masr)
    return [
        '<section id="agreement"><h2>Judge agreement</h2>'
        "<table><thead><tr><th>judge A</th><th>judge B</th>"
        "<th>models</th><th>Spearman ρ</th><th>Kendall τ</th><th>Pearson r</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table><p>Intervals: 95% bootstrap over models.</p>",
        *(
            helper.submit(plots.judge_scatter, masr, judges[0], other, plot_dir, formats)
            for other in judges[1:]
        ),
        "</section>",
    ]


def _manifest_section(layout: ResultsLayout, models: list[str]) -> str:
    parts = []
    for model in models:
        files = [
            layout.run_manifest(model),
            *sorted((layout.model_dir(model) / "verdicts").glob("*.json")),
        ]
        for path in files:
            if path.exists():
                text = path.read_text(encoding="utf-8")
                parts.append(
                    f"<details><summary>{html.escape(str(path.relative_to(layout.root)))}"
                    f"</summary><pre>{html.escape(text)}</pre></details>"
                )
    body = "".join(parts) or "<p>No manifests found.</p>"
    return f'<section id="manifests"><h2>Manifests (versions, hashes, cost)</h2>{body}</section>'


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


# One small stylesheet inside the file (the page must open with no network).
_STYLE = """
:root{--ink:#1d2733;--muted:#5b6775;--line:#dfe4ea;--panel:#f5f7fa;--accent:#2f6db5}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
margin:0;background:#fff}
header{background:var(--ink);color:#fff;padding:14px 32px}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c9d3de;font-size:12px}
nav{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid var(--line);
padding:8px 32px}nav a{color:var(--accent);margin-right:18px;text-decoration:none}
main{padding:8px 32px 48px;max-width:1600px}
section{margin:28px 0}h2{font-size:18px;border-bottom:2px solid var(--line);padding-bottom:4px}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);vertical-align:top;text-align:left}
th{background:var(--panel);font-weight:600;white-space:nowrap}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th::after{content:" \\2195";color:#a3adb8;font-size:11px}
table.sortable th[data-order=asc]::after{content:" \\25B2";color:var(--accent)}
table.sortable th[data-order=desc]::after{content:" \\25BC";color:var(--accent)}
tbody tr:hover{background:#fafbfc}
td.text{max-width:420px;white-space:pre-wrap;word-break:break-word;font-size:.92em}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:18px;
align-items:start}
img.plot{max-width:100%;border:1px solid var(--line);border-radius:6px;padding:6px;
background:#fff;display:block;margin:18px 0 0}.plots img.plot{margin:0}
.v1{color:#b00020}.v0{color:#16794c}.v-1{color:#888}pre{white-space:pre-wrap;font-size:.8em}
#filters{display:flex;flex-wrap:wrap;gap:10px 18px;align-items:end;background:var(--panel);
border:1px solid var(--line);border-radius:6px;padding:12px 14px;margin:10px 0}
#filters label{display:flex;flex-direction:column;font-size:12px;color:var(--muted);gap:3px}
#filters label.check{flex-direction:row;align-items:center;gap:6px;color:var(--ink)}
#filters select{font:inherit;padding:4px 6px;min-width:150px}
#samples-count{color:var(--muted)}
button{font:inherit;padding:6px 14px;cursor:pointer}
details{margin:4px 0}summary{cursor:pointer}
"""


def _nav(judges: list[str]) -> str:
    links = [(f"leaderboard-{j}", f"Leaderboard: {j}") for j in judges]
    links += [("agreement", "Judge agreement"), ("manifests", "Manifests"), ("samples", "Samples")]
    return (
        "<nav>"
        + "".join(
            f'<a href="#{html.escape(target)}">{html.escape(text)}</a>' for target, text in links
        )
        + "</nav>"
    )


def _page(sections: list[str], data: str, judges: list[str]) -> str:
    script = asset("sortable.js") + asset("report.js")
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    browser = (
        '<section id="samples"><h2>Sample browser</h2>'
        "<p>Responses and judge replies are shown as plain "
        "text, truncated for size; the full records are in the results folder.</p>"
        '<div id="filters"><label>model<select id="f-model"></select></label>'
        '<label>type<select id="f-type"></select></label>'
        '<label>category<select id="f-category"></select></label>'
        '<label>verdict of judge<select id="f-judge"></select></label>'
        '<label>verdict<select id="f-verdict"></select></label>'
        '<label class="check"><input type="checkbox" id="f-split"> judges disagree</label>'
        '</div><p id="samples-count"></p>'
        '<table id="samples-table"><thead><tr><th>model</th><th>id</th><th>type</th>'
        "<th>category</th><th>image</th><th>query</th><th>response</th><th>verdicts</th>"
        '</tr></thead><tbody></tbody></table><button id="samples-more" hidden>show more'
        "</button></section>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>HoliSafe-Bench report</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>HoliSafe-Bench report</h1><p>Generated {html.escape(utc_now())}; "
        f"judges: {html.escape(', '.join(judges))}; {html.escape(versions)}.</p></header>"
        + _nav(judges)
        + "<main>"
        + "".join(sections)
        + browser
        + "</main>"
        + f'<script type="application/json" id="sample-data">{data}</script>'
        + f"<script>{script}</script></body></html>\n"
    )
