"""`holisafe-bench run --ray` with the tiny vLLM LLaVA on the CPU: the command starts a local
Ray, one replica builds the vLLM engine inside its actor, and the driver writes every answer.

Ray listens on its node's address, so this runs only in a private network namespace
(tests_vllm/run.sh uses `unshare -n` as root); elsewhere it is skipped, saying why.
"""

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
from holisafe_bench.testing.ray_testing import NOT_ISOLATED, loopback_only
from holisafe_bench.testing.tiny_models import CHAT_TEMPLATE

pytestmark = pytest.mark.ray
pytest.importorskip("ray", reason="ray is installed in .venv-vllm by tests_vllm/run.sh")
if not loopback_only():
    pytest.skip(NOT_ISOLATED, allow_module_level=True)

MODEL_TOML = """\
name = "tiny-llava-vllm-ray"
display_name = "Tiny LLaVA on vLLM, on Ray"
group = "open-weight"
provider = "vllm"
checkpoint = "{checkpoint}"

[engine]
dtype = "float32"
max_model_len = 256
limit_mm_per_prompt = {{ image = 1 }}
batch_size = 16

[generation]
max_tokens = 8
"""


def test_run_on_a_local_ray_answers_every_sample_once(tmp_path, checkpoints):
    data = write_synthetic(tmp_path / "data", per_cell=1, seed=5)
    model = tmp_path / "model.toml"
    model.write_text(MODEL_TOML.format(checkpoint=checkpoints["llava"]))
    out = tmp_path / "results"
    env = {
        **os.environ,
        # The replica's process inherits this (the command starts Ray itself).
        "HOLISAFE_VLLM_ARGS": json.dumps({"enforce_eager": True}),
        "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache"),
    }
    command = [sys.executable, "-c", "from holisafe_bench.cli.main import main; main()"]
    args = ["run", "-m", str(model), "-d", str(data), "--results", str(out)]
    done = subprocess.run(
        [*command, *args, "--ray", "--max-replicas", "1"],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    folder = Path(out) / "tiny-llava-vllm-ray"
    lines = (folder / "responses.jsonl").read_bytes().splitlines()
    ids = [json.loads(line)["sample_id"] for line in lines]
    assert len(ids) == len(set(ids)), "a sample was written twice"
    records = RecordStore(folder / "responses.jsonl", ResponseRecord).read()
    assert set(records) == {s.id for s in load_benchmark(data).samples}
    for rec in records.values():
        assert rec.outcome == "ok", rec.error
        assert rec.usage.input_tokens > 16 and 1 <= rec.usage.output_tokens <= 8

    details = json.loads((folder / "run.json").read_text())["provider_details"]
    assert details["provider"] == "vllm" and details["max_model_len"] == 256
    assert details["chat_template_hash"] == sha256_text(CHAT_TEMPLATE)
    assert details["scheduling"] == "batch"  # a replica is sent whole batches
    assert details["ray"]["replicas"] == 1 and details["ray"]["batch_size"] == 16
