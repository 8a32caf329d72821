"""The leaderboard package: one format table, HTML from autoescaped Jinja2 templates shipped
in the wheel, and `score --json` with numbers as numbers."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.leaderboard import (
    FORMATS,
    LeaderboardRow,
    sortable_table,
    to_html,
    write_comparison,
    write_leaderboard,
)
from holisafe_bench.rendering import render
from holisafe_bench.scoring import VerdictRow, rounded_percent, score_json, score_rows

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "<script>alert(\"x\")</script> & 'q' <b>"


def _card(violations_ssu: int = 1, n_ssu: int = 8):
    """SSS: 1 of 2 refused (RR 50%); SSU: `violations_ssu` of `n_ssu`; no other types."""
    rows = [VerdictRow(i, "SSS", "c", "s", i != 0, None) for i in range(2)]
    rows += [VerdictRow(10 + i, "SSU", "c", "s", i >= violations_ssu, None) for i in range(n_ssu)]
    return score_rows(rows, model="m", judge="string-match")


def _row(name: str = "Model A") -> LeaderboardRow:
    return LeaderboardRow(model="m", display_name=name, group="open-weight", card=_card())


class _Cells(HTMLParser):
    """The text and data-value of every <td>, as a browser would read them."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str | None, str]] = []
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self._open = dict(attrs).get("data-value")
            self.cells.append((self._open, ""))

    def handle_data(self, data):
        if self.cells and self._open is not None:
            value, text = self.cells[-1]
            self.cells[-1] = (value, text + data)

    def handle_endtag(self, tag):
        if tag == "td":
            self._open = None


def test_score_json_writes_percentages_as_numbers_and_null_when_undefined():
    card = _card()
    payload = score_json(card, decimals=1)
    assert payload["asr"]["SSU"] == 12.5 and isinstance(payload["asr"]["SSU"], float)
    assert payload["rr"] == 50.0
    assert payload["asr"]["USU"] is None  # no samples of the type: undefined, not "n/a"
    assert payload["masr"] == 12.5  # the mean of the ASRs that are defined
    assert payload["types_without_samples"] == ["USU", "UUU", "SUU"]
    text = json.dumps(payload)
    assert '"SSU": 12.5' in text and '"USU": null' in text
    # Rounded half-up on the exact value, as the tables are: 1/16 = 6.25% -> 6.3.
    assert score_json(_card(1, 16), decimals=1)["asr"]["SSU"] == 6.3
    assert score_json(_card(1, 16), decimals=2)["asr"]["SSU"] == 6.25
    assert str(rounded_percent(Fraction(1, 16), 1)) == "6.3"


def test_score_cli_json_has_numbers(kw_run):
    out = str(kw_run[1])
    cli = CliRunner()
    assert (
        cli.invoke(app, ["judge", "--judge", "string-match", "--all", "--out", out]).exit_code == 0
    )
    res = cli.invoke(app, ["score", "--json", "--ci", "0.9", "--out", out])
    assert res.exit_code == 0, res.output
    (card,) = json.loads(res.output)
    assert isinstance(card["masr"], float) and 0 <= card["masr"] <= 100
    est, low, high = card["ci"]["overall"]["mASR (macro)"]
    assert all(isinstance(x, float) for x in (est, low, high)) and low <= est <= high


def test_one_format_table_serves_the_cli():
    assert set(FORMATS) == {"csv", "md", "latex", "html", "json"}
    for name in FORMATS:
        assert "Model A" in write_leaderboard([_row()], name)
    res = CliRunner().invoke(app, ["leaderboard", "--format", "xml"])
    assert res.exit_code != 0
    assert "choose one of csv, md, latex, html, json" in str(res.exception)


def test_comparison_formats_keep_their_layout():
    columns = ["S_IS_T→S↑", "S_IS_T→U↓", "U_IS_T↓", "U_IU_T↓", "S_IU_T↓", "mASR↓", "RR↓"]
    reference = {
        "Model A": dict(zip(columns, [50.0, 10.0, 0.0, 0.0, 0.0, 10.0, 50.0], strict=True))
    }
    md = write_comparison([_row()], reference, "md")
    assert md.splitlines()[1] == "|---|---|---:|---:|---:|"
    assert "| Model A | mASR↓ | 12.5 | 10.0 | +2.5 |" in md
    rows = json.loads(write_comparison([_row()], reference, "json"))
    assert {"Model": "Model A", "column": "RR↓", "ours": "50.0", "reference": "50.0",
            "delta": "+0.0"} in rows  # fmt: skip
    # LaTeX and HTML have no comparison form of their own: CSV, as before.
    assert write_comparison([_row()], reference, "latex") == write_comparison(
        [_row()], reference, "csv"
    )


def test_comparison_deltas_are_between_the_printed_cells():
    """15 of 19 is 78.947...%: 78.9 at one decimal, 79.0 rounded twice (the June 2025 rule).
    Against a table printing 79.0 the delta follows --double-round, and the reference's
    95.85 is 95.9 at one decimal (half-up on what was written), never a signed zero."""
    row = LeaderboardRow(model="m", display_name="Model A", group="open-weight",
                         card=_card(violations_ssu=15, n_ssu=19))  # fmt: skip
    columns = ["S_IS_T→S↑", "S_IS_T→U↓", "U_IS_T↓", "U_IU_T↓", "S_IU_T↓", "mASR↓", "RR↓"]
    reference = {"Model A": dict(zip(columns, [95.85, 79.0, 0, 0, 0, 79.0, 50.0], strict=True))}

    def cells(double_round: bool) -> dict[str, list[str]]:
        text = write_comparison([row], reference, "csv", 1, double_round)
        return {line.split(",")[1]: line.split(",")[2:] for line in text.splitlines()[1:]}

    assert cells(False)["S_IS_T→U↓"] == ["78.9", "79.0", "-0.1"]
    assert cells(True)["S_IS_T→U↓"] == ["79.0", "79.0", "+0.0"]
    assert cells(True)["S_IS_T→S↑"] == ["50.0", "95.9", "-45.9"]
    assert cells(True)["U_IS_T↓"] == ["n/a", "0.0", "n/a"]  # no USU samples here
    deltas = [c[2] for c in cells(False).values()]
    assert not any(d.startswith("-") and float(d) == 0 for d in deltas if d != "n/a")


def test_html_leaderboard_escapes_names_and_keeps_sort_values():
    page = to_html([_row(HOSTILE)])
    assert "<script>alert" not in page and "<b>" not in page.split("<tbody>")[1]
    parser = _Cells()
    parser.feed(page)
    group, name, *rates = parser.cells
    assert name == (HOSTILE, HOSTILE)  # shown and sorted as the literal text
    assert group == ("open-weight", "open-weight")
    assert rates[1] == ("12.500000", "12.5")  # S_IS_T->U: sorts by value, shows rounded
    assert rates[2] == ("", "n/a")
    assert page.startswith("<!doctype html>") and page.endswith("</html>\n")
    assert page.count("\n") == page.count("\n", page.index("<script>"))  # one line + script


def test_report_template_escapes_every_field():
    table = sortable_table([_row(HOSTILE)], table_id="lb-" + HOSTILE)
    page = render(
        "report.html.j2",
        generated=HOSTILE,
        judges=[HOSTILE],
        versions=HOSTILE,
        nav=[(HOSTILE, HOSTILE)],
        leaderboards=[],
        agreement=type("A", (), {"rows": [[HOSTILE]], "plots": []})(),
        manifests=[(HOSTILE, HOSTILE)],
        data="",
    )
    assert HOSTILE not in page and "<script>alert" not in page
    assert page.count("&lt;script&gt;alert(&#34;x&#34;)") >= 6
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert table.id == "lb-" + HOSTILE  # escaped where written, not before


@pytest.mark.slow
def test_wheel_ships_the_templates_and_scripts(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
    )  # fmt: skip
    wheel = next(tmp_path.glob("holisafe_bench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("_table.html.j2", "leaderboard.html.j2", "report.html.j2", "report.js",
                 "sortable.js"):  # fmt: skip
        assert f"holisafe_bench/templates/{name}" in names


def test_pooled_mASR_is_labelled_where_a_reader_sees_the_table():
    """md, LaTeX and HTML name the pooled column; CSV keeps the paper's header (the June
    2025 tables are pooled under it) and JSON says the definition."""
    rows = [VerdictRow(i, "SSS", "c", "s", True, None) for i in range(2)]
    rows += [VerdictRow(10 + i, "SSU", "c", "s", i > 0, None) for i in range(4)]
    card = score_rows(rows, model="m", judge="string-match", pooled=True)
    pooled = LeaderboardRow(model="m", display_name="Model A", group="open-weight", card=card)
    assert "| mASR (pooled)↓ |" in write_leaderboard([pooled], "md")
    assert r"mASR (pooled)$\downarrow$" in write_leaderboard([pooled], "latex")
    assert "mASR (pooled)↓" in write_leaderboard([pooled], "html")
    assert write_leaderboard([pooled], "csv").splitlines()[0].endswith(",mASR↓,RR↓")
    assert json.loads(write_leaderboard([pooled], "json"))[0]["masr_definition"] == "pooled"
    assert "pooled" not in write_leaderboard([_row()], "md")
