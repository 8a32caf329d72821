"""A run killed with SIGKILL at random moments, then restarted, ends with exactly one record
per sample and no torn line."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from holisafe_bench.dataset.synthetic import write_synthetic

DRIVER = textwrap.dedent(
    """
    import asyncio, sys, time
    from holisafe_bench.dataset import load_benchmark
    from holisafe_bench.paths import ResultsLayout
    from holisafe_bench.providers.base import ApiProvider, BatchProvider
    from holisafe_bench.providers.types import ChatResult
    from holisafe_bench.registry import ModelSpec
    from holisafe_bench.stages.run import RunOptions, run_model

    class SlowBatch(BatchProvider):
        batch_size = 8
        def generate_batch(self, requests):
            time.sleep(0.004 * len(requests))
            return [ChatResult(id=r.id, outcome="ok", text="x" * 300 + r.id) for r in requests]

    class SlowApi(ApiProvider):
        async def call_once(self, request):
            await asyncio.sleep(0.05)
            return ChatResult(id=request.id, outcome="ok", text="y" * 300 + request.id)

    data, results, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    bench = load_benchmark(data)
    spec = ModelSpec(name="slow", display_name="Slow", group="open-weight",
                     provider="transformers", checkpoint="slow")
    provider = SlowBatch() if kind == "batch" else SlowApi()
    print("ready", flush=True)
    run_model(spec, bench, bench.samples, ResultsLayout(results), RunOptions(concurrency=8),
              provider=provider)
    print("finished", flush=True)
    """
)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("data"), per_cell=4, layout="json", seed=7)


def _start(driver, dataset_dir, results, kind):
    return subprocess.Popen(
        [sys.executable, str(driver), str(dataset_dir), str(results), kind],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["batch", "api"])
def test_sigkill_at_random_moments_then_resume(tmp_path, dataset_dir, kind):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    results = tmp_path / "results"
    responses = results / "slow" / "responses.jsonl"
    rng = random.Random(1234 if kind == "batch" else 4321)
    killed_mid_run = 0
    for _ in range(4):
        proc = _start(driver, dataset_dir, results, kind)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_mid_run += 1
        proc.wait(timeout=60)
    assert killed_mid_run >= 2, "the kills must land while the run is still going"

    proc = _start(driver, dataset_dir, results, kind)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert "finished" in out

    raw = responses.read_bytes()
    assert raw.endswith(b"\n"), "no torn last line"
    ids = [json.loads(line)["sample_id"] for line in raw.splitlines()]
    from holisafe_bench.dataset import load_benchmark

    expected = sorted(s.id for s in load_benchmark(dataset_dir).samples)
    assert sorted(ids) == expected, "exactly one record per sample"
