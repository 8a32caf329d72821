"""What a new user meets in the first hour: later stages find the dataset the run used, a
model file's own labels reach the tables, and the documented command forms work."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.testing.fake_vendors import openai_server
from tests.conftest import KEY

runner = CliRunner()
TOML = (
    'name = "mine"\ndisplay_name = "My Model (v2)"\ngroup = "closed"\nprovider = "baseline"\n'
    'checkpoint = "baseline-keyword"\n'
)


def _ok(*args) -> str:
    res = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


def test_later_stages_use_the_dataset_the_run_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    data = write_synthetic(tmp_path / "data", per_cell=1)
    model = tmp_path / "mine.toml"
    model.write_text(TOML)
    out = tmp_path / "results"
    _ok("run", "--model", model, "-d", data, "--results", out)
    server = openai_server(reply=lambda text: "<label>True</label>")
    server.start()
    try:  # no --dataset: the images come from the folder run.json names
        text = _ok(
            "judge", "--judge", "gpt4o", "-m", "mine", "--results", out,
            "--base-url", server.base_url + "/v1",
        )  # fmt: skip
    finally:
        server.stop()
    assert f"images from the dataset recorded in its run.json: {data}" in text
    assert "95 valid, 0 invalid" in text
    target = tmp_path / "mine_holisafe_bench.json"
    text = _ok("export", "-m", "mine", "--results", out, "-o", target)
    assert f"using the dataset recorded in its run.json: {data}" in text
    assert len(json.loads(target.read_text())) == 95
    text = _ok("report", "--results", out, "-o", tmp_path / "report.html")
    assert f"using the dataset recorded in mine/run.json: {data}" in text
    assert "thumbnails" in text and " 0 thumbnails" not in text


def test_a_model_file_labels_its_rows_as_it_says(tmp_path):
    model = tmp_path / "mine.toml"
    model.write_text(TOML)
    out = tmp_path / "results"
    _ok("run", "--model", model, "-d", "sample", "--results", out)
    _ok("judge", "--judge", "string-match", "--all", "--results", out)
    board = _ok("leaderboard", "--format", "json", "--results", out)
    assert "My Model (v2)" in board and '"closed"' in board
    assert "unregistered" not in board
    csv = _ok("leaderboard", "--format", "csv", "--results", out)
    assert csv.splitlines()[1].startswith("My Model (v2),")


def test_agreement_takes_several_files_after_one_flag():
    files = [f"results/published/leaderboard_4031_{j}.csv" for j in ("sm", "gpt4o", "claude")]
    one_flag = _ok("agreement", "--published", *files)
    repeated = _ok("agreement", *(x for f in files for x in ("--published", f)))
    assert one_flag == repeated
    assert "claude" in one_flag and "gpt4o" in one_flag and "sm" in one_flag
