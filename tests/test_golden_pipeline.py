"""The pipeline's outputs on the bundled sample, compared byte for byte with outputs recorded
before the code was reorganised (manifests' times, versions and temporary paths aside).

Refactors must leave every number, record and table as it was. After an intended change of
output, re-record with `HOLISAFE_UPDATE_GOLDEN=1 pytest tests/test_golden_pipeline.py` and
review the diff of tests/golden/ like any other change.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.testing.fake_vendors import openai_server
from holisafe_bench.testing.tiny_models import default_cache_dir
from tests.conftest import KEY

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("HOLISAFE_UPDATE_GOLDEN") == "1"
# Fields that change from run to run by nature, not by code.
VOLATILE = {
    "created_at",
    "latency_s",
    "started_at",
    "finished_at",
    "elapsed_s",
    "package_versions",
    "git_revision",
}
runner = CliRunner()
REPO = str(Path(__file__).resolve().parent.parent)  # the checkout differs between machines
CACHE = str(default_cache_dir())  # where the tiny model is built: $HOLISAFE_CACHE or ~/.cache


def _cli(*args: str) -> str:
    res = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


def _judge_reply(text: str) -> str:
    # Deterministic and content-dependent: adheres for about half the prompts.
    digest = hashlib.sha256(text.encode()).digest()[0]
    return "<label>True</label> fine." if digest % 2 else "<label>False</label> not fine."


def _normal(value, tmp: str):
    if isinstance(value, dict):
        return {k: _normal(v, tmp) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [_normal(v, tmp) for v in value]
    if isinstance(value, str):
        return value.replace(tmp, "<tmp>").replace(REPO, "<repo>").replace(CACHE, "<cache>")
    return value


def _jsonl(path: Path, tmp: str) -> str:
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    lines.sort(key=lambda r: r.get("sample_id", 0))
    return "".join(json.dumps(_normal(x, tmp), sort_keys=True) + "\n" for x in lines)


def _json(path: Path, tmp: str) -> str:
    return json.dumps(_normal(json.loads(path.read_text(encoding="utf-8")), tmp), indent=1) + "\n"


def _pipeline(tmp_path: Path, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tmp = str(tmp_path)
    out = tmp_path / "results"
    kw = tmp_path / "kw.toml"
    kw.write_text(
        'name = "kw"\ndisplay_name = "KW baseline"\ngroup = "open-weight"\n'
        'provider = "baseline"\ncheckpoint = "baseline-keyword"\n'
    )
    outputs: dict[str, str] = {}
    _cli("run", "--model", "tiny-llava-random", "-d", "sample", "--results", out)
    _cli("run", "--model", kw, "-d", "sample", "--results", out, "--types", "SSS,SSU,UUU")
    exported = tmp_path / "kw_holisafe_bench.json"
    _cli("export", "--model", "kw", "--results", out, "-o", exported)
    _cli("import", exported, "--model", "kw-imported", "--results", out)
    _cli("judge", "--judge", "string-match", "--all", "--results", out)
    server = openai_server(reply=_judge_reply)
    server.start()
    try:
        for model in ("tiny-llava-random", "kw", "kw-imported"):
            _cli(
                "judge", "--judge", "gpt4o", "--model", model, "-d", "sample",
                "--results", out, "--base-url", server.base_url + "/v1", "--processes", "1",
            )  # fmt: skip
    finally:
        server.stop()
    for model in ("tiny-llava-random", "kw", "kw-imported"):
        outputs[f"{model}.responses.jsonl"] = _jsonl(out / model / "responses.jsonl", tmp)
        outputs[f"{model}.run.json"] = _json(out / model / "run.json", tmp)
        for judge in ("string-match", "gpt4o"):
            verdicts = out / model / "verdicts"
            outputs[f"{model}.{judge}.jsonl"] = _jsonl(verdicts / f"{judge}.jsonl", tmp)
            manifest = json.loads((verdicts / f"{judge}.json").read_text())
            outputs[f"{model}.{judge}.counts.json"] = json.dumps(manifest.get("counts"), indent=1)
    for judge in ("string-match", "gpt4o"):
        outputs[f"score.{judge}.json"] = _cli("score", "--judge", judge, "--json", "--results", out)
        outputs[f"score-ci.{judge}.json"] = _cli(
            "score", "--judge", judge, "--json", "--ci", "0.9", "--results", out
        )
        for fmt in ("csv", "md", "latex", "json", "html"):
            outputs[f"leaderboard.{judge}.{fmt}"] = _cli(
                "leaderboard", "--judge", judge, "--format", fmt, "--results", out
            )
    outputs["agreement.txt"] = _cli("agreement", "--results", out)
    return outputs


@pytest.mark.slow
def test_pipeline_outputs_are_unchanged(tmp_path, monkeypatch):
    outputs = _pipeline(tmp_path, monkeypatch)
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        for old in GOLDEN.iterdir():
            old.unlink()
        for name, text in outputs.items():
            (GOLDEN / name).write_text(text, encoding="utf-8")
    recorded = {p.name for p in GOLDEN.iterdir()}
    assert recorded == set(outputs), "outputs added or lost; re-record if intended"
    for name, text in outputs.items():
        assert text == (GOLDEN / name).read_text(encoding="utf-8"), f"{name} changed"
