"""End to end: `holisafe-bench run` with a provider = "vllm" TOML over the synthetic set, in a
subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from holisafe_bench.dataset import load_benchmark
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.provenance import sha256_text
from holisafe_bench.records import ResponseRecord
from holisafe_bench.store import RecordStore
from holisafe_bench.testing.tiny_models import CHAT_TEMPLATE

MODEL_TOML = """\
name = "{name}"
display_name = "Tiny LLaVA on vLLM"
group = "open-weight"
provider = "vllm"
checkpoint = "{checkpoint}"

[engine]
dtype = "float32"
max_model_len = 256
limit_mm_per_prompt = {{ image = 1 }}
batch_size = 32

[generation]
max_tokens = 8
"""


def _cli(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("holisafe-bench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "holisafe_bench"]
    env = {**os.environ, **(extra_env or {})}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=900, check=False
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("data"), per_cell=1, seed=5)


def test_run_writes_a_response_for_every_sample(tmp_path, checkpoints, dataset):
    model = tmp_path / "tiny-llava-vllm.toml"
    model.write_text(MODEL_TOML.format(name="tiny-llava-vllm", checkpoint=checkpoints["llava"]))
    out = tmp_path / "results"
    args = ["run", "--model", str(model), "--dataset", str(dataset), "--out", str(out)]
    # enforce_eager comes in through the documented environment hook.
    env = {"HOLISAFE_VLLM_ARGS": json.dumps({"enforce_eager": True})}
    done = _cli(*args, "--tensor-parallel-size", "1", extra_env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    samples = load_benchmark(dataset).samples
    records = RecordStore(out / "tiny-llava-vllm" / "responses.jsonl", ResponseRecord).read()
    assert set(records) == {s.id for s in samples}
    assert len(records) > 50
    for rec in records.values():
        assert rec.outcome == "ok", rec.error
        assert isinstance(rec.text, str)
        assert rec.usage.input_tokens > 16 and 1 <= rec.usage.output_tokens <= 8
        assert rec.finish_reason in ("stop", "length")

    manifest = json.loads((out / "tiny-llava-vllm" / "run.json").read_text())
    assert manifest["provider"] == "vllm"
    assert manifest["model_id"] == str(checkpoints["llava"])
    assert manifest["chat_template_hash"] == sha256_text(CHAT_TEMPLATE)
    details = manifest["provider_details"]
    assert details["max_model_len"] == 256
    assert details["tensor_parallel_size"] == 1
    assert details["chat_template_overridden"] is False
    assert manifest["counts"]["ok"] == len(samples)
    assert manifest["usage"]["output_tokens"] == sum(
        r.usage.output_tokens for r in records.values()
    )

    again = _cli(*args, extra_env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(samples)} already done" in again.stderr + again.stdout


def test_a_model_that_cannot_load_fails_with_one_error_line_before_any_sample(tmp_path, dataset):
    model = tmp_path / "broken.toml"
    model.write_text(MODEL_TOML.format(name="broken", checkpoint=tmp_path / "no-such-model"))
    out = tmp_path / "results"
    done = _cli("run", "--model", str(model), "--dataset", str(dataset), "--out", str(out))
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "cannot load 'broken'" in errors[0], done.stderr[-3000:]
    responses = out / "broken" / "responses.jsonl"
    assert not responses.exists() or responses.read_text() == ""
