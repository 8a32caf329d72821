"""API requests spread over worker processes: every request gets exactly one result, failures
stay failures, and `run --processes 2` writes the same file a single process would."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.providers.process_runner import (
    ProviderRecipe,
    run_in_processes,
    worker_count,
)
from holisafe_bench.providers.types import ChatRequest
from holisafe_bench.registry import ApiSettings
from holisafe_bench.testing.fake_server import FakeResponse
from holisafe_bench.testing.fake_vendors import anthropic_server, gemini_server, openai_server

KEY = "sk-proc-SECRET-0123456789"
SERVERS = {
    "openai": (openai_server, "OPENAI_API_KEY"),
    "anthropic": (anthropic_server, "ANTHROPIC_API_KEY"),
    "gemini": (gemini_server, "GEMINI_API_KEY"),
}


def test_worker_count_follows_the_concurrency_within_the_cpus(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert worker_count(3, concurrency=64, calls=10) == 3  # asked for: always honoured
    assert worker_count(None, concurrency=32, calls=4031) == 1
    assert worker_count(None, concurrency=64, calls=4031) == 2
    assert worker_count(None, concurrency=1000, calls=100_000) == 8  # no more than the CPUs
    assert worker_count(None, concurrency=64, calls=255) == 1  # under four rounds of calls
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0}, raising=False)
    assert worker_count(None, concurrency=64, calls=4031) == 1


@pytest.mark.parametrize("vendor", sorted(SERVERS))
def test_each_request_gets_exactly_one_result_across_processes(vendor, monkeypatch):
    make, env = SERVERS[vendor]
    monkeypatch.setenv(env, KEY)  # inherited by the spawned workers
    server = make(reply=lambda text: f"echo {text}").start()
    try:
        # Three requests (whichever come first) are refused with a 400: never retried.
        server.inject(*[FakeResponse(400, {"error": {"message": "bad request"}})] * 3)
        base = server.base_url + ("/v1" if vendor == "openai" else "")
        recipe = ProviderRecipe(vendor, "model-x", ApiSettings(base_url=base, api_key_env=env))
        results = []
        requests = (ChatRequest(id=str(i), text=f"q{i}", max_tokens=8) for i in range(60))
        run_in_processes(recipe, requests, processes=2, concurrency=8, on_result=results.append)
    finally:
        server.stop()
    assert sorted(int(r.id) for r in results) == list(range(60))
    errors = [r for r in results if r.outcome == "error"]
    assert len(errors) == 3 and all(r.attempts == 1 for r in errors)
    assert all(KEY not in (r.error or "") for r in errors)
    assert all(r.text == f"echo q{r.id}" for r in results if r.outcome == "ok")
    assert server.count() == 60


def test_run_with_two_processes_writes_every_response_once(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server = openai_server(reply=lambda text: f"answer to {text}").start()
    try:
        data = write_synthetic(tmp_path / "data", per_cell=1, bad_rows=True)
        model = tmp_path / "api.toml"
        model.write_text(
            'name = "api-model"\ndisplay_name = "API"\ngroup = "closed"\nprovider = "openai"\n'
            'checkpoint = "gpt-x"\ncheckpoint_note = "test"\n'
            f'[api]\nbase_url = "{server.base_url}/v1"\nconcurrency = 8\n'
        )
        out = tmp_path / "results"
        args = ["run", "--model", str(model), "-d", str(data), "--out", str(out)]
        res = CliRunner().invoke(app, [*args, "--processes", "2"])
        assert res.exit_code == 0, res.output
    finally:
        server.stop()
    text = (out / "api-model" / "responses.jsonl").read_text()
    lines = [json.loads(x) for x in text.splitlines()]
    ids = [r["sample_id"] for r in lines]
    assert len(ids) == len(set(ids)) == server.count() == 95
    assert all(r["outcome"] == "ok" and r["text"].startswith("answer to ") for r in lines)


def test_a_failure_in_the_parent_stops_the_workers_at_once(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server = openai_server(latency=0.05).start()
    seen = []

    def on_result(result) -> None:
        seen.append(result)
        if len(seen) == 5:
            raise RuntimeError("the writer broke")

    try:
        recipe = ProviderRecipe("openai", "m", ApiSettings(base_url=server.base_url + "/v1"))
        requests = (ChatRequest(id=str(i), text=f"q{i}", max_tokens=8) for i in range(2000))
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="the writer broke"):
            run_in_processes(recipe, requests, processes=2, concurrency=8, on_result=on_result)
        elapsed = time.monotonic() - started
        time.sleep(0.3)  # anything still running would keep calling
        calls = server.count()
    finally:
        server.stop()
    # Draining would take 2,000 / 8 x 0.05 s = 12.5 s; the bound leaves room for a loaded
    # machine (worker start-up) while still telling a stop from a drain.
    assert elapsed < 8
    assert calls < 200  # stopped, not drained: 2,000 requests were waiting
