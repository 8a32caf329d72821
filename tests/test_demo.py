"""`holisafe-bench demo` end to end: the real transformers path on the bundled sample."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app

pytest.importorskip("torch", reason="the demo needs the hf extra, installed by `make install`")


def test_demo_runs_every_stage_and_says_its_numbers_mean_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HOLISAFE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--limit", "30"])
    assert result.exit_code == 0, result.output
    assert "RANDOM weights" in result.output and "mean nothing" in result.output
    assert "| Tiny-LLaVA (random weights) |" in result.output
    responses = (out / "tiny-llava-random" / "responses.jsonl").read_text().splitlines()
    verdicts = (out / "tiny-llava-random" / "verdicts" / "string-match.jsonl").read_text()
    assert len(responses) == 30 and len(verdicts.splitlines()) == 30
    manifest = json.loads((out / "tiny-llava-random" / "run.json").read_text())
    assert manifest["provider_details"]["provider"] == "transformers"
    assert manifest["counts"]["ok"] == 30
