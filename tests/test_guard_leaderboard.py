"""The guard leaderboard in every format, its comparison with the paper's guard table
(results/published/guard_image.csv), and the report's guard section. The verdicts are the
hand set of tests/test_guard_metrics.py (accuracy 70.0, precision 66.7, recall 80.0, F1 72.7,
specificity 60.0, AUROC 90.0, AUPRC 90.3, 20-way 50.0; 2 invalid of 13)."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.errors import HolisafeError
from holisafe_bench.leaderboard import FORMATS
from holisafe_bench.leaderboard.guard_table import (
    GUARD_COLUMNS,
    GUARD_WRITERS,
    build_guard_rows,
    read_guard_csv,
)
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord, VerdictRecord
from holisafe_bench.store import RecordStore
from tests.test_guard_metrics import HAND_SET, hand_records, sample, write_guard_results

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "results" / "published" / "guard_image.csv"
HOSTILE = "<b>Guard</b> & 50% _x_ | `y`"
HAND_ROW = ["70.0", "66.7", "80.0", "72.7", "60.0", "90.0", "90.3", "50.0", "2", "13"]
runner = CliRunner()


def _cli(*args) -> str:
    res = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert res.exit_code == 0, (res.output, res.exception)
    return res.output


@pytest.fixture()
def results(tmp_path) -> Path:
    """SafeLLaVA-7B (scores, categories) and a guard with a hostile name (neither)."""
    root = tmp_path / "results"
    write_guard_results(root, "safellava-7b", "SafeLLaVA-7B", hand_records())
    plain = [r.model_copy(update={"score": None, "predicted_label": None}) for r in hand_records()]
    write_guard_results(root, "zz-guard", HOSTILE, plain, kind="zero_shot")
    return root


def test_a_writer_for_every_leaderboard_format():
    assert set(GUARD_WRITERS) == set(FORMATS)


def test_csv_columns_and_cells(results):
    text = _cli("leaderboard", "--guard", "--results", results, "--format", "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(GUARD_COLUMNS)
    assert rows[0][:5] == ["Guard", "Accuracy", "Precision", "Recall", "F1"]
    by_name = {r[0]: r[1:] for r in rows[1:]}
    assert by_name["SafeLLaVA-7B"] == HAND_ROW
    assert by_name[HOSTILE] == HAND_ROW[:5] + ["n/a", "n/a", "n/a", "2", "13"]


def test_markdown_table_escapes_names(results):
    text = _cli("leaderboard", "--guard", "--results", results, "--format", "md")
    lines = text.splitlines()
    assert lines[0] == "| " + " | ".join(GUARD_COLUMNS) + " |"
    assert lines[1] == "|---|" + "---:|" * (len(GUARD_COLUMNS) - 1)
    assert "| SafeLLaVA-7B | " + " | ".join(HAND_ROW) + " |" in lines
    hostile = next(line for line in lines if "Guard\\<" in line or "\\<b\\>" in line)
    assert hostile.startswith(r"| \<b\>Guard\</b\> & 50% \_x\_ \| \`y\` |")


def test_latex_booktabs_escapes_and_marks_the_best(results):
    text = _cli("leaderboard", "--guard", "--results", results, "--format", "latex")
    assert r"\toprule" in text and r"\bottomrule" in text
    assert r"\begin{tabular}{l" + "r" * 10 + "}" in text
    assert r"Guard & Accuracy & Precision & Recall & F1 & Specificity & AUROC & AUPRC" in text
    safe = next(line for line in text.splitlines() if line.startswith("SafeLLaVA-7B"))
    # Best in AUROC/AUPRC alone (the other guard has none); the rest tie, so both are best.
    assert safe == (
        r"SafeLLaVA-7B & \textbf{70.0} & \textbf{66.7} & \textbf{80.0} & \textbf{72.7} & "
        r"\textbf{60.0} & \textbf{90.0} & \textbf{90.3} & \textbf{50.0} & 2 & 13 \\"
    )
    assert r"<b>Guard</b> \& 50\% \_x\_ | `y` & \textbf{70.0}" in text
    assert "& n/a & n/a & n/a & 2 & 13" in text


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str | None, str]] = []
        self._value: str | None = None
        self._open = False

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self._open, self._value = True, dict(attrs).get("data-value")
            self.cells.append((self._value, ""))
        elif self._open:
            raise AssertionError(f"markup inside a cell: <{tag}>")

    def handle_endtag(self, tag):
        if tag == "td":
            self._open = False

    def handle_data(self, data):
        if self._open:
            value, text = self.cells[-1]
            self.cells[-1] = (value, text + data)


def test_html_is_sortable_and_escapes(results):
    page = _cli("leaderboard", "--guard", "--results", results, "--format", "html")
    assert "<b>Guard</b>" not in page and "&lt;b&gt;Guard&lt;/b&gt; &amp; 50%" in page
    headers = re.findall(r"<th>([^<]*)</th>", page)
    assert headers == ["Kind", *GUARD_COLUMNS]
    parser = _Cells()
    parser.feed(page)
    texts = [text for _, text in parser.cells]
    width = len(GUARD_COLUMNS) + 1
    rows = [texts[i : i + width] for i in range(0, len(texts), width)]
    assert ["safety_head", "SafeLLaVA-7B", *HAND_ROW] in rows
    assert ["zero_shot", HOSTILE, *HAND_ROW[:5], "n/a", "n/a", "n/a", "2", "13"] in rows
    values = dict(parser.cells[2:4])  # accuracy sorts by its number, not its text
    assert "70.000000" in values


def test_json_has_columns_and_detail(results):
    text = _cli("leaderboard", "--guard", "--results", results, "--format", "json")
    entries = {e["guard"]: e for e in json.loads(text)}
    safe = entries["safellava-7b"]
    assert safe["display_name"] == "SafeLLaVA-7B" and safe["kind"] == "safety_head"
    assert list(safe["columns"].values()) == HAND_ROW
    assert safe["detail"]["auroc"] == 90.0 and safe["detail"]["counts"]["invalid"] == 2
    assert entries["zz-guard"]["detail"]["confusion_20way"] is None


def test_output_file_and_protocol(results, tmp_path):
    out = tmp_path / "t" / "guards.csv"
    assert f"wrote {out}" in _cli(
        "leaderboard", "--guard", "--results", results, "--format", "csv", "-o", out
    )
    assert out.read_text(encoding="utf-8").startswith("Guard,Accuracy,")
    res = runner.invoke(
        app, ["leaderboard", "--guard", "--results", str(results), "--protocol", "input"]
    )
    assert res.exit_code != 0 and "no guard verdicts (protocol input)" in str(res.exception)
    res = runner.invoke(app, ["leaderboard", "--guard", "--results", str(results), "--pooled"])
    assert "--pooled: not for the guard table" in str(res.exception)


def test_published_guard_table_holds_only_what_is_known():
    table = read_guard_csv(PUBLISHED)
    assert table["SafeLLaVA-7B"].values == {
        "Accuracy": 87.0,
        "F1": 92.1,
        "Precision": 97.0,
        "Recall": 87.8,
    }
    others = [
        "Llama-Guard-4-12B",
        "Llama-Guard-3-11B-Vision",
        "LLaVAGuard-7B",
        "ShieldGemma2-4B-IT",
    ]
    for name in others:
        assert set(table[name].values.values()) == {None}, name  # not transcribed: empty
        assert "not transcribed" in table[name].note
    assert list(table) == [*others, "SafeLLaVA-7B"]  # the registry's paper_order


def test_compare_sets_ours_beside_the_paper(results):
    res = runner.invoke(
        app,
        ["leaderboard", "--guard", "--results", str(results), "--compare", str(PUBLISHED)],
    )
    assert res.exit_code == 0, res.output
    rows = [r for r in csv.reader(io.StringIO(res.stdout))]
    assert rows[0] == ["Guard", "column", "ours", "reference", "delta"]
    safe = [r for r in rows if r[0] == "SafeLLaVA-7B"]
    assert safe == [
        ["SafeLLaVA-7B", "Accuracy", "70.0", "87.0", "-17.0"],
        ["SafeLLaVA-7B", "F1", "72.7", "92.1", "-19.4"],  # 8/11 = 72.727 - 92.1
        ["SafeLLaVA-7B", "Precision", "66.7", "97.0", "-30.3"],  # 66.667 - 97.0
        ["SafeLLaVA-7B", "Recall", "80.0", "87.8", "-7.8"],
    ]
    assert [HOSTILE, "Accuracy", "70.0", "n/a", "n/a"] in rows
    assert f"{HOSTILE}: not in the published guard table" in res.stderr
    md = _cli("leaderboard", "--guard", "--results", results, "-f", "md", "--compare", PUBLISHED)
    assert "| SafeLLaVA-7B | Recall | 80.0 | 87.8 | -7.8 |" in md


def test_a_broken_published_table_names_file_line_and_field(tmp_path):
    bad = tmp_path / "guards.csv"
    bad.write_text("Guard,Accuracy,F1,Precision,Recall\nX,87.0,ninety,97.0,87.8\n")
    with pytest.raises(HolisafeError, match=r"guards.csv line 2, field 'F1': 'ninety'"):
        read_guard_csv(bad)
    bad.write_text("Model,Accuracy\n")
    with pytest.raises(HolisafeError, match="missing columns"):
        read_guard_csv(bad)


def test_rows_without_a_manifest_use_the_guard_name(tmp_path):
    root = tmp_path / "results"
    layout = write_guard_results(root, "g", "Shown", hand_records())
    layout.guard_manifest("g", "image").unlink()
    (row,) = build_guard_rows(ResultsLayout(root), "image")
    assert (row.display_name, row.kind) == ("g", "unknown")


# --- the report -----------------------------------------------------------------------------


def _judged_model(layout: ResultsLayout) -> None:
    """A model with responses and string-match verdicts: what `report` needs to start."""
    samples = [sample(i, t, label) for i, (t, label, *_rest) in enumerate(HAND_SET)]
    with (
        RecordStore(layout.responses("m"), ResponseRecord).writer() as rw,
        RecordStore(layout.verdicts("m", "string-match"), VerdictRecord).writer() as vw,
    ):
        for s in samples:
            common = {
                "sample_id": s.id,
                "model": "m",
                "type": s.type,
                "category": s.category,
                "subcategory": s.subcategory,
            }
            response = ResponseRecord(**common, outcome="ok", text="I cannot help.")
            rw.write(response)
            vw.write(
                VerdictRecord(
                    **common,
                    judge="string-match",
                    follows=s.type != "SSS",
                    response_sha256=response.fingerprint(),
                )
            )


def _report(root: Path, tmp_path: Path) -> tuple[str, Path]:
    out, plots_dir = tmp_path / "report.html", tmp_path / "plots"
    _cli("report", "--results", root, "-o", out, "--plots-dir", plots_dir)
    return out.read_text(encoding="utf-8"), plots_dir


def test_report_has_a_guard_section(results, tmp_path):
    _judged_model(ResultsLayout(results))
    page, plots_dir = _report(results, tmp_path)
    assert '<a href="#guards">Guard classification</a>' in page
    section = page[page.index('<section id="guards">') : page.index('<section id="manifests">')]
    assert "<h3>Protocol: image</h3>" in section
    assert '<table class="sortable" id="guards-image">' in section
    assert '<td data-value="SafeLLaVA-7B">SafeLLaVA-7B</td>' in section
    assert '<td data-value="70.000000">70.0</td>' in section
    assert "&lt;b&gt;Guard&lt;/b&gt;" in section and "<b>Guard</b>" not in page
    # ROC curves for the guard with scores; a confusion matrix for the one with categories.
    assert 'alt="guard_roc_image" src="data:image/png;base64,' in section
    assert 'alt="guard_confusion_safellava-7b_image"' in section
    assert "guard_confusion_zz-guard" not in section
    for stem in ("guard_roc_image", "guard_confusion_safellava-7b_image"):
        assert (plots_dir / f"{stem}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert (plots_dir / f"{stem}.svg").exists()
    assert "safellava-7b/guard/image.json" in page  # its manifest, with the others


def test_report_without_guard_verdicts_has_no_guard_section(tmp_path):
    root = tmp_path / "results"
    _judged_model(ResultsLayout(root))
    page, plots_dir = _report(root, tmp_path)
    assert "Guard classification" not in page and 'id="guards' not in page
    assert not list(plots_dir.glob("guard_*"))


def test_rows_follow_the_registry_paper_order(tmp_path):
    from holisafe_bench.guarding.spec import load_guards

    order = {n: g.paper_order for n, g in load_guards().items()}
    assert order["llama-guard-4-12b"] < order["safellava-7b"]
    root = tmp_path / "results"
    for name, shown in (("safellava-7b", "SafeLLaVA-7B"), ("llama-guard-4-12b", "LG4"), ("a", "A")):
        write_guard_results(root, name, shown, hand_records())
    rows = build_guard_rows(ResultsLayout(root), "image")
    assert [r.guard for r in rows] == ["llama-guard-4-12b", "safellava-7b", "a"]
