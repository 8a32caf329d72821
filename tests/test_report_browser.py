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


def test_layout_at_1400_pixels_uses_the_page(report, browser, tmp_path):
    import base64
    import io

    from PIL import Image

    browser.open(report.as_uri())
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.wait_for("document.body.getAttribute('data-ready')")
    # Not collapsed: the content spans most of the window.
    assert browser.eval("document.querySelector('main').getBoundingClientRect().width") > 1200
    # The two plots of a leaderboard sit side by side.
    boxes = browser.eval(
        "Array.from(document.querySelectorAll('.plots img.plot')).map(i => {"
        "var r = i.getBoundingClientRect(); return [r.left, r.top, r.width];})"
    )
    assert len(boxes) == 2
    (left_a, top_a, width_a), (left_b, top_b, _) = boxes
    assert abs(top_a - top_b) < 2 and left_b >= left_a + width_a
    # Sortable headers show an arrow; the sorted one shows its direction.
    arrow = (
        "getComputedStyle(document.querySelector('#lb-string-match th:nth-child(8)'),"
        " '::after').content"
    )
    assert "↕" in browser.eval(arrow)
    browser.click("#lb-string-match th:nth-child(8)")
    assert "▲" in browser.eval(arrow)
    # Every sample-browser filter is a visible, labelled control.
    filters = browser.eval(
        "Array.from(document.querySelectorAll('#filters select, #filters input')).map(c => {"
        "var r = c.getBoundingClientRect(), label = c.closest('label');"
        "return [label.textContent.replace(c.textContent, '').trim(), r.width, r.height];})"
    )
    assert [name for name, _, _ in filters] == [
        "model", "type", "category", "verdict of judge", "verdict", "judges disagree",
    ]  # fmt: skip
    assert all(width > 10 and height > 10 for _, width, height in filters)
    shot = browser.call("Page.captureScreenshot", {"format": "png"})["data"]
    image = Image.open(io.BytesIO(base64.b64decode(shot)))
    image.save(tmp_path / "report-1400.png")  # kept with the test's files for a look
    assert image.size == (1400, 1000)
