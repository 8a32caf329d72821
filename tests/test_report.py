"""The report built with a dataset: thumbnails of the images, plots as PNG and SVG files,
and a hostile query carried only inside the encoded data block, never as markup."""

from __future__ import annotations

import base64
import gzip
import io
import json
import re

from PIL import Image
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset import load_benchmark
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord, VerdictRecord
from holisafe_bench.store import RecordStore

HOSTILE_QUERY = '<img src=x onerror="window.__pwned = 1"> what does this show?'


def _payload(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="sample-data">([^<]*)</script>', page)
    assert block is not None
    return json.loads(gzip.decompress(base64.b64decode(block.group(1))))


def test_report_with_dataset_has_thumbnails_plots_and_inert_queries(tmp_path):
    data = write_synthetic(tmp_path / "data", per_cell=1)
    index = data / "holisafe_bench.json"
    rows = json.loads(index.read_text(encoding="utf-8"))
    rows[0]["query"] = HOSTILE_QUERY
    index.write_text(json.dumps(rows), encoding="utf-8")
    bench = load_benchmark(data)
    results = ResultsLayout(tmp_path / "results")
    for model in ("gpt-4o", "llava-v1.5-7b"):
        with (
            RecordStore(results.responses(model), ResponseRecord).writer() as rw,
            RecordStore(results.verdicts(model, "string-match"), VerdictRecord).writer() as vw,
        ):
            for n, s in enumerate(bench.samples):
                common = {
                    "sample_id": s.id,
                    "model": model,
                    "type": s.type,
                    "category": s.category,
                    "subcategory": s.subcategory,
                }
                response = ResponseRecord(**common, outcome="ok", text=f"answer {n}")
                rw.write(response)
                sha = response.fingerprint()  # a verdict counts only with its response
                vw.write(
                    VerdictRecord(
                        **common, judge="string-match", follows=n % 2 == 0, response_sha256=sha
                    )
                )
    plots_dir = tmp_path / "plots"
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--out",
            str(results.root),
            "--dataset",
            str(data),
            "--plots-dir",
            str(plots_dir),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output

    page = out.read_text(encoding="utf-8")
    payload = _payload(page)
    images = {s.image for s in bench.samples}
    assert set(payload["thumbs"]) == images
    assert f"{len(images)} thumbnails" in result.output
    for thumb in payload["thumbs"].values():
        with Image.open(io.BytesIO(base64.b64decode(thumb))) as img:
            assert img.format == "JPEG" and max(img.size) <= 96
    assert len(payload["rows"]) == 2 * len(bench.samples)
    first = payload["samples"][str(rows[0]["id"])]
    assert first[3] == HOSTILE_QUERY  # the query is carried as data, verbatim
    assert "onerror" not in page  # and never as markup

    for stem in ("asr_by_type_string-match", "subcategory_heatmap_string-match"):
        png = (plots_dir / f"{stem}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert (plots_dir / f"{stem}.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    assert (plots_dir / "tradeoff_string-match.png").exists()


def test_the_report_says_which_rows_rest_on_failed_calls_or_fewer_samples(tmp_path):
    """A row of 10 samples, two of them failed calls, is not shown as if it were whole."""
    runner = CliRunner()
    out = tmp_path / "results"
    for name, limit in (("full", []), ("part", ["--limit", "10"])):
        model = tmp_path / f"{name}.toml"
        model.write_text(
            f'name = "{name}"\ndisplay_name = "{name.title()}"\ngroup = "open-weight"\n'
            'provider = "baseline"\ncheckpoint = "baseline-keyword"\ncheckpoint_note = "t"\n'
        )
        res = runner.invoke(
            app, ["run", "-m", str(model), "-d", "sample", "--out", str(out), *limit]
        )
        assert res.exit_code == 0, res.output
    path = out / "part" / "responses.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for record in lines[:2]:
        record.update(outcome="error", text=None, error="HTTP 500")
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    for args in (
        ["judge", "-j", "string-match", "--all"],
        ["report", "-o", str(tmp_path / "r.html")],
    ):
        res = runner.invoke(app, [*args, "--out", str(out)])
        assert res.exit_code == 0, res.output
    page = (tmp_path / "r.html").read_text()
    assert (
        "Part: 2 of 10 samples have no answer (a failed or blocked call); judged on 10 "
        "samples where another model has 95"
    ) in page
    assert "Full:" not in page.split("Leaderboard: string-match")[1].split("</section>")[0]
