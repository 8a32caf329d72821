"""VllmProvider streaming: requests go to the engine as it has room and each result comes back
as its sequence finishes (no batch barrier). Real vLLM on the CPU, tiny random-weight LLaVA.

One engine serves the in-process tests; the end-to-end tests run `holisafe-bench run` in
subprocesses (one engine each)."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from holisafe_bench.dataset import load_benchmark
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.providers.vllm_provider import VllmProvider
from holisafe_bench.records import ResponseRecord
from holisafe_bench.store import RecordStore
from holisafe_bench.testing.tiny_models import CHAT_TEMPLATE
from tests_vllm.conftest import TEST_LLM_ARGS, make_spec
from tests_vllm.images import BROKEN, image, request

OVERRIDE_TEMPLATE = "please answer the question\n" + CHAT_TEMPLATE
COLOURS = ["red", "blue", "green", "gold", "teal", "navy", "pink", "gray"]


@pytest.fixture(scope="module")
def provider(checkpoints, tmp_path_factory):
    template = tmp_path_factory.mktemp("template") / "override.jinja"
    template.write_text(OVERRIDE_TEMPLATE, encoding="utf-8")
    spec = make_spec(
        "tiny-llava-vllm-stream",
        checkpoints["llava"],
        dtype="float32",
        max_model_len=200,
        limit_mm_per_prompt={"image": 1},
        chat_template=str(template),
        batch_size=4,
    )
    provider = VllmProvider(spec, **TEST_LLM_ARGS)
    yield provider
    provider.close()


def _mixed_requests(n: int, prefix: str = "r") -> list:
    """Uneven lengths: most requests stop after a few tokens, every fourth runs long."""
    return [
        request(
            f"{prefix}{i}",
            image((40 + 3 * i, 40 + i % 5), COLOURS[i % len(COLOURS)], "JPEG" if i % 3 else "PNG"),
            f"what is drawn here, picture {i}",
            max_tokens=40 if i % 4 == 0 else 2 + i % 3,
            system="answer briefly" if i % 5 == 0 else None,
        )
        for i in range(n)
    ]


def test_streaming_is_the_default_and_is_recorded(provider):
    assert provider.streaming is True
    assert provider.describe()["scheduling"] == "stream"
    assert provider.window >= 2


def test_prompt_tokens_are_identical_to_llm_chat(provider, monkeypatch):
    """The streamed requests are rendered by the LLM's own chat preprocessing: for the same
    conversation, the engine gets exactly the prompt token ids LLM.chat gives it."""
    streamed: dict[str, list[int]] = {}
    engine = provider.llm.llm_engine
    real_step = engine.step

    def spy_step():
        outputs = real_step()
        for output in outputs:
            if output.finished:
                streamed[output.request_id] = list(output.prompt_token_ids)
        return outputs

    monkeypatch.setattr(engine, "step", spy_step)
    requests = _mixed_requests(6, "p")
    results = list(provider.stream(requests))
    assert sorted(r.id for r in results) == sorted(r.id for r in requests)
    assert len(streamed) == len(requests)
    monkeypatch.undo()

    by_chat = {}
    for req in requests:
        (output,) = provider.llm.chat(
            [provider._conversation(req)],
            sampling_params=[provider._sampling(req)],
            use_tqdm=False,
            chat_template=provider.chat_template,
            add_generation_prompt=True,
        )
        by_chat[req.id] = list(output.prompt_token_ids)
    # Streamed ids are the feed's own; match them to requests through their token ids.
    assert sorted(map(tuple, streamed.values())) == sorted(map(tuple, by_chat.values()))
    by_id = {r.id: r for r in results}
    for req in requests:
        assert by_id[req.id].usage.input_tokens == len(by_chat[req.id])


def test_streaming_gives_the_same_texts_as_batch_mode(provider):
    requests = _mixed_requests(12, "s")
    streamed = {r.id: r for r in provider.stream(iter(requests))}
    batched = {r.id: r for r in provider.generate_batch(requests)}
    assert streamed.keys() == batched.keys() == {r.id for r in requests}
    for rid, res in streamed.items():
        assert res.outcome == batched[rid].outcome == "ok", res.error
        assert res.text == batched[rid].text
        assert res.finish_reason == batched[rid].finish_reason
        assert res.usage == batched[rid].usage
        assert res.latency_s is not None and res.latency_s > 0


def test_results_come_as_they_finish_and_the_window_bounds_the_engine(provider, monkeypatch):
    """With a window of 4, at most 4 requests are in the engine; short answers submitted
    after a long one come back before it; requests are pulled lazily."""
    monkeypatch.setattr(provider, "window", 4)
    engine = provider.llm.llm_engine
    live: set[str] = set()
    peak = [0]
    real_add, real_step = engine.add_request, engine.step

    def spy_add(request_id, *args, **kwargs):
        live.add(request_id)
        peak[0] = max(peak[0], len(live))
        return real_add(request_id, *args, **kwargs)

    def spy_step():
        outputs = real_step()
        live.difference_update(o.request_id for o in outputs if o.finished)
        return outputs

    monkeypatch.setattr(engine, "add_request", spy_add)
    monkeypatch.setattr(engine, "step", spy_step)
    red = image((48, 48), "red")
    requests = [request("long", red, max_tokens=60)]
    requests += [request(f"short{i}", red, f"picture {i}", max_tokens=1) for i in range(10)]
    pulled = []

    def lazily():
        for req in requests:
            pulled.append(req.id)
            yield req

    order = []
    for result in provider.stream(lazily()):
        assert result.outcome == "ok", result.error
        order.append((result.id, len(pulled)))
    assert peak[0] <= 4
    assert sorted(rid for rid, _ in order) == sorted(r.id for r in requests)
    assert order[-1][0] == "long", "the long answer finishes last, the short ones go past it"
    assert order[0][1] <= 5, "the first result came before the stream was read to the end"


def test_a_failing_request_fails_alone(provider):
    """A broken image, two images over limit_mm_per_prompt and a prompt over max_model_len
    fail when they are submitted; every other request succeeds."""
    long_text = " ".join(["describe the red circle in this picture please"] * 40)
    two_images = (image((40, 40), "red"), image((40, 40), "blue"))
    requests = [request(str(i), image((40 + i, 40), "green"), max_tokens=6) for i in range(8)]
    requests[1] = request("1", BROKEN)
    requests[2] = request("2", None, images=two_images)
    requests[6] = request("6", image((40, 40), "red"), long_text)
    results = {r.id: r for r in provider.stream(requests)}
    assert results.keys() == {str(i) for i in range(8)}
    failed = {rid for rid, r in results.items() if r.outcome == "error"}
    assert failed == {"1", "2", "6"}
    assert results["1"].error.startswith("input: ")
    assert "image" in results["2"].error.lower()
    assert results["6"].error.startswith("generate: ")
    assert all(r.text is None for rid, r in results.items() if rid in failed)


def test_a_request_that_makes_the_engine_step_raise_fails_alone(provider, monkeypatch):
    """An engine step that raises while one poisoned request is in flight (max_tokens 13
    here): the requests in flight are aborted and re-run in halves, so only it fails."""
    engine = provider.llm.llm_engine
    poisoned: set[str] = set()
    real_add, real_step, real_abort = engine.add_request, engine.step, engine.abort_request

    def add(request_id, prompt, params, **kwargs):
        rid = real_add(request_id, prompt, params, **kwargs)
        if params.max_tokens == 13:
            poisoned.add(request_id)
        return rid

    def step():
        if poisoned:
            raise RuntimeError("the engine cannot decode this request")
        return real_step()

    def abort(request_ids, internal=False):
        poisoned.difference_update(request_ids)
        return real_abort(request_ids, internal)

    monkeypatch.setattr(engine, "add_request", add)
    monkeypatch.setattr(engine, "step", step)
    monkeypatch.setattr(engine, "abort_request", abort)
    requests = _mixed_requests(9, "x")
    requests[5] = request("x5", image((44, 44), "red"), max_tokens=13)
    results = {r.id: r for r in provider.stream(requests)}
    monkeypatch.undo()
    assert results.keys() == {r.id for r in requests}
    assert results["x5"].outcome == "error"
    assert "cannot decode this request" in results["x5"].error
    assert all(r.outcome == "ok" for rid, r in results.items() if rid != "x5")
    # The others' answers are unchanged by the aborts and re-runs (greedy).
    again = {r.id: r for r in provider.generate_batch([r for r in requests if r.id != "x5"])}
    assert all(results[rid].text == res.text for rid, res in again.items())


# -- end to end through the CLI ----------------------------------------------------------------

MODEL_TOML = """\
name = "tiny-llava-stream"
display_name = "Tiny LLaVA on vLLM"
group = "open-weight"
provider = "vllm"
checkpoint = "{checkpoint}"

[engine]
dtype = "float32"
max_model_len = 256
limit_mm_per_prompt = {{ image = 1 }}

[generation]
max_tokens = {max_tokens}
"""


def _command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("holisafe-bench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "holisafe_bench"]
    return [*command, *args]


def _env(mode: str, **engine: object) -> dict[str, str]:
    return {
        **os.environ,
        "HOLISAFE_VLLM_ARGS": json.dumps({"enforce_eager": True, **engine}),
        "HOLISAFE_VLLM_MODE": mode,
    }


def _run_args(tmp_path: Path, checkpoint: Path, dataset: Path, out: Path, max_tokens: int):
    model = tmp_path / f"model-{max_tokens}.toml"
    model.write_text(MODEL_TOML.format(checkpoint=checkpoint, max_tokens=max_tokens))
    return ["run", "--model", str(model), "--dataset", str(dataset), "--out", str(out)]


def _lines(path: Path) -> list[dict]:
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a torn last line from a kill is dropped on read, as the store does
    return rows


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("data"), per_cell=1, seed=5)


def test_run_streams_one_record_per_sample_same_as_batch_mode(tmp_path, checkpoints, dataset):
    samples = {s.id for s in load_benchmark(dataset).samples}
    texts = {}
    for mode in ("stream", "batch"):
        out = tmp_path / mode
        args = _run_args(tmp_path, checkpoints["llava"], dataset, out, 12)
        done = subprocess.run(
            _command(*args), env=_env(mode), capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stderr[-3000:]
        path = out / "tiny-llava-stream" / "responses.jsonl"
        rows = _lines(path)
        assert collections.Counter(r["sample_id"] for r in rows) == dict.fromkeys(samples, 1)
        assert all(r["outcome"] == "ok" for r in rows)
        manifest = json.loads((out / "tiny-llava-stream" / "run.json").read_text())
        assert manifest["provider_details"]["scheduling"] == mode
        assert manifest["counts"]["ok"] == len(samples)
        texts[mode] = {r["sample_id"]: (r["text"], r["usage"]) for r in rows}
    # Results are keyed by sample, whatever order they finished in: the same as batch mode.
    assert texts["stream"] == texts["batch"]


def test_sigkill_mid_run_then_resume_leaves_one_record_per_sample(tmp_path, checkpoints):
    dataset = write_synthetic(tmp_path / "data", per_cell=2, seed=9)
    samples = {s.id for s in load_benchmark(dataset).samples}
    out = tmp_path / "results"
    args = _run_args(tmp_path, checkpoints["llava"], dataset, out, 48)
    responses = out / "tiny-llava-stream" / "responses.jsonl"
    proc = subprocess.Popen(
        _command(*args),
        # A small engine (8 requests in flight), so the run lasts long enough to be killed.
        env=_env("stream", max_num_seqs=4),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the engine-core process dies too
    )
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if responses.exists() and len(_lines(responses)) >= 8:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    before = {r["sample_id"] for r in _lines(responses)}
    assert 8 <= len(before) < len(samples), "killed mid-run"

    done = subprocess.run(
        _command(*args), env=_env("stream"), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(before)} already done" in done.stderr + done.stdout
    rows = _lines(responses)
    assert collections.Counter(r["sample_id"] for r in rows) == dict.fromkeys(samples, 1)
    records = RecordStore(responses, ResponseRecord).read()
    assert set(records) == samples
    assert all(rec.outcome == "ok" for rec in records.values())
