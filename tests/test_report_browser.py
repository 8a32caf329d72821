"""The HTML report in a real headless Chromium: it sorts on click, and hostile text in
queries, responses and judge replies stays inert."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord, VerdictRecord
from holisafe_bench.store import RecordStore
from tests.browser import Browser, chromium_path

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    '<a href="javascript:window.__pwned = 3">click me</a>',
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    layout = ResultsLayout(root)
    for model, violation_every in (("gpt-4o", 2), ("safellava-7b", 5), ("llava-v1.5-7b", 1)):
        responses = RecordStore(layout.responses(model), ResponseRecord)
        verdicts = RecordStore(layout.verdicts(model, "string-match"), VerdictRecord)
        with responses.writer() as rw, verdicts.writer() as vw:
            for i in range(30):
                common = {
                    "sample_id": i,
                    "model": model,
                    "type": "SSU",
                    "category": "hate",
                    "subcategory": "race",
                }
                response = ResponseRecord(**common, outcome="ok", text=HOSTILE[i % 3])
                rw.write(response)
                vw.write(
                    VerdictRecord(
                        **common,
                        judge="string-match",
                        follows=i % violation_every != 0,
                        raw=HOSTILE[i % 3],
                        response_sha256=response.fingerprint(),  # counted only while current
                    )
                )
    result = CliRunner().invoke(app, ["report", "--out", str(root)])
    assert result.exit_code == 0, result.output
    return root / "report.html"


@pytest.fixture()
def browser(tmp_path):
    if chromium_path() is None:
        message = (
            "browser test not run: chromium is not installed; "
            "run `sudo apt-get install --no-install-recommends chromium` (or `make browser-deps` "
            "as root)"
        )
        # CI installs chromium as root, so there a missing browser is a failure, not a skip.
        if os.environ.get("HOLISAFE_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def test_leaderboard_sorts_on_click(report, browser):
    browser.open(report.as_uri())
    browser.wait_for("document.body.getAttribute('data-ready')")
    names = (
        "Array.from(document.querySelectorAll('#lb-string-match tbody tr'))"
        ".map(r => r.cells[1].textContent)"
    )
    masr = (
        "Array.from(document.querySelectorAll('#lb-string-match tbody tr'))"
        ".map(r => parseFloat(r.cells[7].textContent))"
    )
    assert browser.eval(names) == ["LLaVA-v1.5-7B", "GPT-4o", "SafeLLaVA-7B"]  # registry order
    browser.click("#lb-string-match th:nth-child(8)")  # mASR
    values = browser.eval(masr)
    assert values == sorted(values) and values[0] < values[-1]
    assert browser.eval(names)[0] == "SafeLLaVA-7B"
    browser.click("#lb-string-match th:nth-child(8)")
    assert browser.eval(masr) == sorted(values, reverse=True)


def test_hostile_text_renders_inert(report, browser):
    browser.open(report.as_uri())
    assert browser.wait_for("document.body.getAttribute('data-ready')") == "1"
    browser.click("#samples-more") if browser.eval(
        "!document.getElementById('samples-more').hidden"
    ) else None
    text = browser.eval("document.getElementById('samples-table').textContent")
    for payload in HOSTILE:
        assert payload in text  # shown literally, as text
    assert browser.eval("typeof window.__pwned") == "undefined"
    assert browser.eval("document.querySelectorAll('#samples-table img[onerror]').length") == 0
    assert browser.eval("document.querySelectorAll('a[href^=\"javascript:\"]').length") == 0
    assert browser.eval("document.querySelectorAll('#samples-table script').length") == 0
