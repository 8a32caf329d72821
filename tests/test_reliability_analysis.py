"""Analysis outputs stay correct on awkward inputs (issue 10): agreement and report with a
single model, placeholders inside queries, sample ids beyond 2**53, and model names full of
Markdown and LaTeX syntax. Everything goes through the CLI."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from holisafe_bench import registry
from holisafe_bench.cli.main import app
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord, VerdictRecord
from holisafe_bench.store import RecordStore
from holisafe_bench.testing.fake_vendors import openai_server
from tests.browser import Browser, chromium_path
from tests.conftest import KEY

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _payload(page: str, **json_options) -> dict:
    """The report's embedded sample data, decoded as the page's script does it."""
    block = re.search(r'<script type="application/json" id="sample-data">([^<]*)</script>', page)
    assert block is not None
    return json.loads(gzip.decompress(base64.b64decode(block.group(1))), **json_options)


def _write_results(root: Path, model: str, ids: list[int]) -> None:
    """Responses and string-match verdicts of `model` on `ids` (SSU, violation on odd ids)."""
    layout = ResultsLayout(root)
    with (
        RecordStore(layout.responses(model), ResponseRecord).writer() as rw,
        RecordStore(layout.verdicts(model, "string-match"), VerdictRecord).writer() as vw,
    ):
        for sample_id in ids:
            common = {
                "sample_id": sample_id,
                "model": model,
                "type": "SSU",
                "category": "hate",
                "subcategory": "race",
            }
            rw.write(ResponseRecord(**common, outcome="ok", text=f"answer to {sample_id}"))
            vw.write(VerdictRecord(**common, judge="string-match", follows=sample_id % 2 == 0))


# --- item 7: one model judged by two judges ------------------------------------------------


def _second_string_judge(tmp_path: Path) -> Path:
    """A string matcher that takes the keyword baseline's every answer ("Here is ...") for a
    refusal, so it disagrees with string-match on every sample."""
    path = tmp_path / "sm-here.toml"
    path.write_text(
        'name = "sm-here"\ndisplay_name = "Here-is matcher"\nkind = "string_match"\n'
        'start_phrases = ["here is"]\n'
    )
    return path


def test_agreement_and_report_with_one_model_and_two_judges(kw_run, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # Rich tables: no cell wrapped over two lines
    data, out = kw_run
    for judge in ("string-match", _second_string_judge(tmp_path)):
        res = _invoke("judge", "--judge", judge, "--model", "kw", "-d", data, "--out", out)
        assert res.exit_code == 0, res.output

    res = _invoke("agreement", "--out", out)
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "n/a: needs 3 models, have 1" in flat
    # The per-sample statistics are still there: kappas, confusion, disputed samples.
    assert "Cohen sm-here vs string-match" in flat
    assert "sm-here vs string-match (rows: string-match)" in flat
    assert "samples the judges disagree on most" in flat

    report = tmp_path / "report.html"
    res = _invoke("report", "--out", out, "-o", report)
    assert res.exit_code == 0, res.output
    page = report.read_text(encoding="utf-8")
    assert "n/a: needs 3 models, have 1" in page
    assert "Leaderboard: sm-here" in page and "Leaderboard: string-match" in page


def _published(path: Path, masr: dict[str, float]) -> Path:
    header = "Model,S_IS_T→S↑,S_IS_T→U↓,U_IS_T↓,U_IU_T↓,S_IU_T↓,mASR↓,RR↓\n"
    rows = "".join(f"{m},90,{v},{v},{v},{v},{v},10\n" for m, v in masr.items())
    path.write_text(header + rows, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("b_masr", "note"),
    [
        ({"m1": 10.0, "m2": 20.0}, "n/a: needs 3 models, have 2"),
        ({"m1": 30.0, "m2": 30.0, "m3": 30.0}, "n/a: b gives every model the same mASR"),
    ],
)
def test_agreement_on_published_tables_without_a_correlation(tmp_path, monkeypatch, b_masr, note):
    monkeypatch.setenv("COLUMNS", "200")
    a = _published(tmp_path / "a.csv", {"m1": 10.0, "m2": 25.0, "m3": 40.0})
    b = _published(tmp_path / "b.csv", b_masr)
    res = _invoke("agreement", "--published", a, "--published", b)
    assert res.exit_code == 0, res.output
    assert note in res.output
    assert "nan" not in res.output


# --- item 10b: placeholders inside a query stay literal -----------------------------------

TRICKY_QUERY = "Explain {response} and {safety_label} and {query} to me"


def test_placeholders_inside_a_query_reach_the_judge_literally(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    data = write_synthetic(tmp_path / "data", per_cell=1)
    index = data / "holisafe_bench.json"
    rows = json.loads(index.read_text(encoding="utf-8"))
    rows[0]["query"] = TRICKY_QUERY
    index.write_text(json.dumps(rows), encoding="utf-8")
    model = tmp_path / "kw.toml"
    model.write_text(
        'name = "kw"\ndisplay_name = "KW"\ngroup = "open-weight"\nprovider = "baseline"\n'
        'checkpoint = "baseline-keyword"\n'
    )
    out = tmp_path / "results"
    res = _invoke("run", "--model", model, "-d", data, "--out", out, "--ids", rows[0]["id"])
    assert res.exit_code == 0, res.output
    response = json.loads((out / "kw" / "responses.jsonl").read_text().splitlines()[0])["text"]

    prompts: list[str] = []
    server = openai_server(reply=lambda text: prompts.append(text) or "<label>True</label>")
    server.start()
    try:
        res = _invoke(
            "judge", "--judge", "gpt4o", "--model", "kw", "-d", data, "--out", out,
            "--base-url", server.base_url + "/v1",
        )  # fmt: skip
    finally:
        server.stop()
    assert res.exit_code == 0, res.output
    assert len(prompts) == 1
    prompt = prompts[0]
    # The default template ends with one line per input: Question, Safety label, Response.
    question, label, answer = prompt.splitlines()[-3:]
    assert question == f"Question: {TRICKY_QUERY}"
    assert label.startswith("Safety label: ")
    assert answer == f"Response: {response}"
    assert prompt.count(response) == 1  # only in its own block, never inside the query


# --- item 10c: sample ids above 2**53 -------------------------------------------------------

BIG_IDS = [2**53 + 1, 2**53 + 2]  # the same number once parsed as a JS double


def _big_id_report(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    _write_results(root, "gpt-4o", BIG_IDS)
    report = tmp_path / "report.html"
    res = _invoke("report", "--out", root, "-o", report)
    assert res.exit_code == 0, res.output
    return report


def test_report_carries_sample_ids_beyond_2_53_as_distinct_strings(tmp_path):
    page = _big_id_report(tmp_path).read_text(encoding="utf-8")
    payload = _payload(page)
    assert [row[1] for row in payload["rows"]] == [str(i) for i in BIG_IDS]
    assert set(payload["samples"]) == {str(i) for i in BIG_IDS}
    # Parsed the way JavaScript parses it (every number a double), the ids stay apart.
    as_js = _payload(page, parse_int=float)
    assert len({row[1] for row in as_js["rows"]}) == 2
    assert all(row[1] in as_js["samples"] for row in as_js["rows"])


def test_sample_browser_filters_rows_with_ids_beyond_2_53(tmp_path):
    if chromium_path() is None:
        message = "chromium is not installed; the Python-side check above still runs"
        if os.environ.get("HOLISAFE_REQUIRE_BROWSER") == "1":  # CI has it: missing = failure
            pytest.fail(message)
        pytest.skip(message)
    report = _big_id_report(tmp_path)
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(report.as_uri())
        assert browser.wait_for("document.body.getAttribute('data-ready')") == "1"
        browser.eval(
            "(() => { const t = document.getElementById('f-type'); t.value = 'SSU';"
            " t.dispatchEvent(new Event('change')); })()"
        )
        shown = browser.eval(
            "Array.from(document.querySelectorAll('#samples-table tbody tr'))"
            ".map(r => [r.cells[1].textContent, r.cells[6].textContent])"
        )
        assert shown == [[str(i), f"answer to {i}"] for i in BIG_IDS]
    finally:
        browser.close()


# --- item 10d: model names escaped for Markdown and LaTeX -----------------------------------

HOSTILE_NAME = "K|W *b* _i_ `c` [l](u) <b>x</b> a\\b & 5% $m$ #1 {g} ~t ^h"


@pytest.fixture()
def hostile_results(tmp_path, monkeypatch):
    """A registered model whose display name is full of Markdown and LaTeX syntax, run with
    the baseline provider and judged by string matching."""
    adapters = tmp_path / "model_adapters"
    adapters.mkdir()
    (adapters / "hostile.toml").write_text(
        'name = "hostile"\ngroup = "open-weight"\nprovider = "baseline"\n'
        f'checkpoint = "baseline-keyword"\ndisplay_name = {json.dumps(HOSTILE_NAME)}\n',
        encoding="utf-8",
    )
    real = registry.registry_dir
    monkeypatch.setattr(
        registry, "registry_dir", lambda name: adapters if name == "model_adapters" else real(name)
    )
    data = write_synthetic(tmp_path / "data", per_cell=1)
    out = tmp_path / "results"
    for args in (
        ("run", "--model", "hostile", "-d", data, "--out", out, "--limit", "20"),
        ("judge", "--judge", "string-match", "--model", "hostile", "-d", data, "--out", out),
    ):
        res = _invoke(*args)
        assert res.exit_code == 0, res.output
    return out


def test_markdown_leaderboard_escapes_model_names(hostile_results):
    res = _invoke("leaderboard", "--format", "md", "--out", hostile_results)
    assert res.exit_code == 0, res.output
    tokens = MarkdownIt("commonmark").enable("table").parse(res.output)
    cells = [t for t in tokens if t.type == "inline"]
    header_cells = 8
    assert len(cells) == 2 * header_cells  # the name's "|" did not split the row
    name_cell = cells[header_cells]
    # Rendered, the cell is the name as plain text: no emphasis, code, link or HTML.
    assert [c.type for c in name_cell.children] == ["text"] * len(name_cell.children)
    assert "".join(c.content for c in name_cell.children) == HOSTILE_NAME


_LATEX_UNESCAPE = {
    r"\textbackslash{}": "\\",
    r"\textasciitilde{}": "~",
    r"\textasciicircum{}": "^",
    **{"\\" + c: c for c in "&%$#_{}"},
}


def test_latex_leaderboard_escapes_model_names(hostile_results):
    res = _invoke("leaderboard", "--format", "latex", "--out", hostile_results)
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if line.startswith("K|W"))
    name = row.split(" & ", 1)[0]
    # Every special character is a command or escaped; undoing that gives the name back.
    tokens = re.findall(r"\\text\w+\{\}|\\.|[^\\]", name)
    assert "".join(_LATEX_UNESCAPE.get(t, t) for t in tokens) == HOSTILE_NAME
    bare = [t for t in tokens if len(t) == 1 and t in "\\&%$#_{}~^"]
    assert bare == []
