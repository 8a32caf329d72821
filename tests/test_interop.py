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
    assert "2 record(s) skipped" in res.output
