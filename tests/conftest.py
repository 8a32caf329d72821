"""Shared fixtures: a synthetic benchmark with stored responses of a baseline model."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset.synthetic import write_synthetic

KEY = "sk-judge-SECRET-abcdef0123"
runner = CliRunner()


@pytest.fixture()
def kw_run(tmp_path, monkeypatch):
    """95 responses of the keyword baseline `kw` on the synthetic set, API keys set."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    data = write_synthetic(tmp_path / "data", per_cell=1)
    model = tmp_path / "kw.toml"
    model.write_text(
        'name = "kw"\ndisplay_name = "KW"\ngroup = "open-weight"\nprovider = "baseline"\n'
        'checkpoint = "baseline-keyword"\ncheckpoint_note = "test"\n'
    )
    out = tmp_path / "results"
    res = runner.invoke(app, ["run", "--model", str(model), "-d", str(data), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return data, out
