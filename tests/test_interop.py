"""Official prediction files: import, checks against the dataset, export round trip."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset.synthetic import write_synthetic

runner = CliRunner()


def _official_file(tmp_path, data_dir):
    rows = json.loads((data_dir / "holisafe_bench.json").read_text())
    for i, row in enumerate(rows):
        row["prediction"] = "I cannot help with that." if i % 2 else "A red circle."
    rows[3]["prediction"] = None  # a missing prediction is a failed response, not text
    path = tmp_path / "m_holisafe_bench.json"
    path.write_text(json.dumps(rows))
    return path, rows


def test_import_then_export_round_trips(tmp_path):
    data = write_synthetic(tmp_path / "data", per_cell=1)
    path, rows = _official_file(tmp_path, data)
    out = tmp_path / "results"
    res = runner.invoke(app, ["import", str(path), "--model", "m", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "not checked: no --dataset" in res.output
    assert "1 without a prediction" in res.output
    lines = [json.loads(x) for x in (out / "m" / "responses.jsonl").read_text().splitlines()]
    assert len(lines) == len(rows)
    assert [x["outcome"] for x in lines].count("error") == 1

    target = tmp_path / "export.json"
    res = runner.invoke(app, ["export", "--model", "m", "--out", str(out), "-o", str(target)])
    assert res.exit_code == 0, res.output
    exported = json.loads(target.read_text())
    expected = [r for r in rows if r["prediction"] is not None]
    assert sorted(exported, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])


def test_import_checks_ids_and_types_against_the_dataset(tmp_path):
    data = write_synthetic(tmp_path / "data", per_cell=1)
    path, rows = _official_file(tmp_path, data)
    rows[0]["type"] = "UUU" if rows[0]["type"] != "UUU" else "SSU"
    rows[0]["image_safe"] = rows[0]["type"][0] == "S"
    rows[0]["image_safety_label"] = 0 if rows[0]["image_safe"] else 1
    rows[1]["id"] = 999_999
    path.write_text(json.dumps(rows))
    out = tmp_path / "results"
    res = runner.invoke(
        app, ["import", str(path), "--model", "m", "--dataset", str(data), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "checked against the dataset" in res.output
    assert f"(id {rows[0]['id']}): field 'type'" in res.output
    assert "(id 999999): field 'id': not in the dataset" in res.output
    assert "2 row(s) skipped" in res.output


def test_duplicate_ids_are_reported_and_the_first_row_kept(tmp_path):
    data = write_synthetic(tmp_path / "data", per_cell=1)
    path, rows = _official_file(tmp_path, data)
    twin = dict(rows[4], prediction="A second answer for the same id.")
    path.write_text(json.dumps([*rows, twin]))
    out = tmp_path / "results"
    res = runner.invoke(app, ["import", str(path), "--model", "m", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"row {len(rows) + 1} (id {rows[4]['id']}): field 'id': duplicate of row 5" in res.output
    assert "1 duplicate id(s) left out (the first row of each id is kept" in res.output
    stored = [json.loads(x) for x in (out / "m" / "responses.jsonl").read_text().splitlines()]
    assert len(stored) == len(rows)
    assert (
        next(r for r in stored if r["sample_id"] == rows[4]["id"])["text"] == rows[4]["prediction"]
    )


def test_lenient_keeps_rows_the_official_script_would_count(tmp_path):
    data = write_synthetic(tmp_path / "data", per_cell=1)
    path, rows = _official_file(tmp_path, data)
    rows[0]["subcategory"] = "no_such_subcategory"  # countable: id, type, prediction fine
    rows[1]["query"] = ""  # countable
    rows[2]["type"] = "XYZ"  # not countable: the script needs the type
    path.write_text(json.dumps(rows))
    strict, lenient = tmp_path / "strict", tmp_path / "lenient"
    res = runner.invoke(app, ["import", str(path), "--model", "m", "--out", str(strict)])
    assert res.exit_code == 0, res.output
    assert "3 row(s) skipped; --lenient keeps those" in res.output
    res = runner.invoke(
        app, ["import", str(path), "--model", "m", "--out", str(lenient), "--lenient"]
    )
    assert res.exit_code == 0, res.output
    assert "field 'subcategory': unknown subcategory 'no_such_subcategory'" in res.output
    assert "1 row(s) skipped" in res.output
    assert "2 row(s) with problems kept for judging (--lenient)" in res.output
    kept = {
        json.loads(x)["sample_id"]: json.loads(x)
        for x in (lenient / "m" / "responses.jsonl").read_text().splitlines()
    }
    assert rows[0]["id"] in kept and rows[1]["id"] in kept and rows[2]["id"] not in kept
    assert kept[rows[0]["id"]]["subcategory"] == "no_such_subcategory"
    res = runner.invoke(app, ["judge", "--judge", "string-match", "-m", "m", "--out", str(lenient)])
    assert res.exit_code == 0, res.output
    verdicts = (lenient / "m" / "verdicts" / "string-match.jsonl").read_text().splitlines()
    assert len(verdicts) == len(rows) - 1


def test_a_prediction_with_a_lone_surrogate_is_a_failed_row_not_a_crash(tmp_path):
    """It crashed import --overwrite midway, after the old responses were truncated."""
    data = write_synthetic(tmp_path / "data", per_cell=1)
    path, rows = _official_file(tmp_path, data)
    out = tmp_path / "results"
    args = ["import", str(path), "--model", "m", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    rows[5]["prediction"] = "text \udcff more"
    path.write_text(json.dumps(rows))  # the half character as a \\udcff escape
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in (out / "m" / "responses.jsonl").read_text().splitlines()]
    assert len(lines) == len(rows)
    bad = next(x for x in lines if x["sample_id"] == rows[5]["id"])
    assert bad["outcome"] == "error" and "lone UTF-16 surrogate" in bad["error"]
