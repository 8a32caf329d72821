"""`holisafe-bench data ...` through the real CLI."""

from __future__ import annotations

from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset.synthetic import write_synthetic

runner = CliRunner()


def test_verify_lists_every_bad_row_and_fails(tmp_path):
    path = write_synthetic(tmp_path, per_cell=1, bad_rows=True)
    result = runner.invoke(app, ["data", "verify", "--dataset", str(path)])
    assert result.exit_code == 1
    for field in ("'type'", "'image_safe'", "'id'", "'query'", "'image'"):
        assert f"field {field}" in result.output
    assert "95 valid, 6 bad" in result.output


def test_verify_passes_a_clean_set_and_info_counts(tmp_path):
    path = write_synthetic(tmp_path, per_cell=1)
    assert runner.invoke(app, ["data", "verify", "-d", str(path)]).exit_code == 0
    info = runner.invoke(app, ["data", "info", "-d", str(path)])
    assert info.exit_code == 0
    assert "95 valid rows" in info.output and "38 distinct images" in info.output
