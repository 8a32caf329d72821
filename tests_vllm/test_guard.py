"""Generative guards on vLLM: the first generated token's log-probabilities come back with
the answer (VllmProvider, streaming and batch mode) and become the guard's score in the
guard stage. Real vLLM on the CPU, tiny random-weight LLaVA.

Three engines: one in-process provider for the provider-level tests, one `holisafe-bench
guard` subprocess on the noise model (most verdicts invalid: kept and counted), and one on a
copy of the tiny LLaVA rewired to answer "unsafe S1" with first-token logits known in closed
form, so the scores can be checked by value."""

from __future__ import annotations

import collections
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from holisafe_bench.dataset import load_benchmark
from holisafe_bench.guarding.parsers import first_token_p_unsafe
from holisafe_bench.guarding.records import GuardManifest, GuardRecord
from holisafe_bench.guarding.spec import get_guard
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.providers.vllm_provider import VllmProvider
from holisafe_bench.stages.guard import GuardOptions, run_guard
from holisafe_bench.store import RecordStore
from tests_vllm.conftest import TEST_LLM_ARGS, make_spec
from tests_vllm.images import image, request

TOP_K = 5
LABEL_FIRST = re.compile(r"(unsafe|safe)\b", re.IGNORECASE)  # what llama_guard reads
COLOURS = ["red", "blue", "green", "gold", "teal", "navy"]


@pytest.fixture(scope="module")
def provider(checkpoints):
    spec = make_spec(
        "tiny-llava-vllm-logprobs",
        checkpoints["llava"],
        dtype="float32",
        max_model_len=200,
        limit_mm_per_prompt={"image": 1},
    )
    provider = VllmProvider(spec, **TEST_LLM_ARGS)
    yield provider
    provider.close()


def _requests(prefix: str) -> list:
    return [
        request(
            f"{prefix}{i}",
            image((40 + 5 * i, 44), COLOURS[i % len(COLOURS)], "JPEG" if i % 2 else "PNG"),
            f"is picture {i} safe or unsafe",
            max_tokens=3 + i % 4,
        )
        for i in range(6)
    ]


def _with_logprobs(requests: list, k: int | None) -> list:
    return [replace(r, logprobs=k) for r in requests]


def _reference(provider: VllmProvider, requests: list) -> dict[str, object]:
    """vLLM's own answers for the same prompts: one LLM.generate call on the prompt texts
    rendered from the checkpoint's chat template, with SamplingParams(logprobs=TOP_K)."""
    from PIL import Image
    from vllm import SamplingParams

    tokenizer = provider.llm.get_tokenizer()
    prompts, params = [], []
    for req in requests:
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": req.text}]}
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        with Image.open(io.BytesIO(req.images[0].read_bytes())) as img:
            prompts.append({"prompt": text, "multi_modal_data": {"image": img.convert("RGB")}})
        params.append(SamplingParams(max_tokens=req.max_tokens, temperature=0.0, logprobs=TOP_K))
    outputs = provider.llm.generate(prompts, params, use_tqdm=False)
    return {req.id: output for req, output in zip(requests, outputs, strict=True)}


def test_first_token_logprobs_are_vllms_own_in_both_modes(provider):
    """Same values to a tolerance: a batch of another shape may round differently on a CPU
    (which is also why later tokens of a random model's near-flat answer may differ)."""
    requests = _with_logprobs(_requests("lp"), TOP_K)
    streamed = {r.id: r for r in provider.stream(iter(requests))}
    batched = {r.id: r for r in provider.generate_batch(requests)}
    assert streamed.keys() == batched.keys() == {r.id for r in requests}
    reference = _reference(provider, requests)
    for req in requests:
        ref = reference[req.id]
        first = ref.outputs[0].logprobs[0]
        expected = {entry.decoded_token: entry.logprob for entry in first.values()}
        chosen = first[ref.outputs[0].token_ids[0]].decoded_token
        for result in (streamed[req.id], batched[req.id]):
            assert result.outcome == "ok", result.error
            assert result.usage.input_tokens == len(ref.prompt_token_ids)
            got = result.first_token_logprobs
            assert got is not None and 1 <= len(got) <= TOP_K
            assert got.keys() == expected.keys()
            for token, logprob in expected.items():
                assert got[token] == pytest.approx(logprob, abs=1e-4)
            # Greedy: the chosen first token is the most likely alternative.
            assert max(got, key=got.get) == chosen
            assert all(v <= 0 for v in got.values())
            assert sum(math.exp(v) for v in got.values()) <= 1 + 1e-5


def test_requests_without_logprobs_are_sampled_as_before(provider):
    from vllm import SamplingParams

    plain, asking = _requests("np"), _with_logprobs(_requests("np"), TOP_K)
    for req, with_k in zip(plain, asking, strict=True):
        before = SamplingParams(max_tokens=req.max_tokens, temperature=0.0)
        assert repr(provider._sampling(req)) == repr(before)
        assert provider._sampling(with_k).logprobs == TOP_K
        assert provider._sampling(req).logprobs is None
    for run in (lambda rs: list(provider.stream(iter(rs))), provider.generate_batch):
        without = {r.id: r for r in run(plain)}
        with_lp = {r.id: r for r in run(asking)}
        for rid, result in without.items():
            assert result.outcome == "ok", result.error
            assert result.first_token_logprobs is None
            # Asking for log-probabilities does not change what greedy decoding says.
            assert with_lp[rid].text == result.text
            assert with_lp[rid].usage == result.usage
            assert with_lp[rid].first_token_logprobs


# -- the guard stage ---------------------------------------------------------------------------

GUARD_TOML = """\
name = "{name}"
display_name = "Tiny guard on vLLM"
kind = "generative"
provider = "vllm"
checkpoint = "{checkpoint}"
parser = "llama_guard"
taxonomy = "mlcommons"
max_tokens = {max_tokens}
logprobs = {logprobs}

[engine]
dtype = "float32"
max_model_len = 256
limit_mm_per_prompt = {{ image = 1 }}
"""


def _guard_toml(tmp_path: Path, name: str, checkpoint: Path, max_tokens: int) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        GUARD_TOML.format(name=name, checkpoint=checkpoint, max_tokens=max_tokens, logprobs=TOP_K)
    )
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("holisafe-bench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "holisafe_bench"]
    env = {**os.environ, "HOLISAFE_VLLM_ARGS": json.dumps({"enforce_eager": True})}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=900, check=False
    )


def test_guard_cli_on_a_noise_model_keeps_and_counts_invalid_outputs(tmp_path, checkpoints):
    guard = _guard_toml(tmp_path, "tiny-noise-guard", checkpoints["llava"], max_tokens=8)
    results = tmp_path / "results"
    args = ["guard", "--model", str(guard), "-d", "sample", "--results", str(results)]
    done = _cli(*args)
    assert done.returncode == 0, done.stderr[-3000:]

    samples = {s.id for s in load_benchmark("sample").samples}
    layout = ResultsLayout(results)
    verdicts = layout.guard_verdicts("tiny-noise-guard", "image")
    lines = [json.loads(line) for line in verdicts.read_text().splitlines()]
    assert collections.Counter(row["sample_id"] for row in lines) == dict.fromkeys(samples, 1)
    records = RecordStore(verdicts, GuardRecord).read()
    outcomes = collections.Counter(r.outcome for r in records.values())
    assert set(outcomes) <= {"ok", "invalid"} and outcomes["invalid"] > len(samples) // 2
    for rec in records.values():
        assert isinstance(rec.raw, str), "the guard's output is kept as it came"
        if rec.outcome == "invalid":
            assert rec.unsafe is None and rec.score is None and rec.reason
            assert not LABEL_FIRST.match(rec.raw.strip()), "a readable answer made invalid"
        else:
            assert rec.unsafe is not None and LABEL_FIRST.match(rec.raw.strip())
    manifest = GuardManifest.model_validate_json(
        layout.guard_manifest("tiny-noise-guard", "image").read_text()
    )
    assert manifest.counts["invalid"] == outcomes["invalid"]
    assert manifest.counts.get("ok", 0) == outcomes["ok"]
    assert manifest.counts["selected"] == len(samples) and manifest.counts["missing"] == 0
    assert manifest.provider == "vllm" and manifest.parser == "llama_guard"
    assert manifest.provider_details["scheduling"] == "stream"

    again = _cli(*args)  # resumes: nothing left to do, no engine started
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(samples)} already done" in again.stderr + again.stdout


# The rewired model's first-token logits (see build_answering_llava): "unsafe" and "safe"
# get these multiples of the normalised hidden state's one non-zero entry, all others 0.
UNSAFE_WEIGHT, SAFE_WEIGHT, NEXT_WEIGHT = 1.5, 1.0, 2.0


def _donors(vocab: dict[str, int], specials: set[str], count: int) -> list[str]:
    """Whole-word tokens to rename: the last ones that are neither special nor a letter."""
    words = [t for t in vocab if t not in specials and len(t) > 1 and not t.startswith("##")]
    return sorted(words, key=vocab.__getitem__)[-count:]


def build_answering_llava(source: Path, out: Path) -> dict[str, int]:
    """A copy of the tiny LLaVA that answers "unsafe S1" to everything, with first-token
    logits known in closed form. Three vocabulary entries are renamed to "unsafe", "safe"
    and "S1" (same ids: the weights still fit). Every layer's output projections are zero,
    so the final hidden state at a position is the RMS-normalised embedding of its token;
    every embedding is one-hot (e0 for all tokens but the three, e1 for unsafe/safe, e2
    for S1), and the LM head reads e0 -> unsafe/safe, e1 -> S1, e2 -> end of sequence."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, out)
    tokenizer_path = out / "tokenizer.json"
    tokenizer = json.loads(tokenizer_path.read_text())
    vocab = tokenizer["model"]["vocab"]
    specials = {t["content"] for t in tokenizer.get("added_tokens", [])}
    for donor, word in zip(_donors(vocab, specials, 3), ("unsafe", "safe", "S1"), strict=True):
        vocab[word] = vocab.pop(donor)
    tokenizer_path.write_text(json.dumps(tokenizer))
    ids = {word: vocab[word] for word in ("unsafe", "safe", "S1")}
    ids["eos"] = json.loads((out / "config.json").read_text())["text_config"]["eos_token_id"]

    weights = load_file(str(out / "model.safetensors"))
    for key, tensor in weights.items():
        if key.startswith("language_model.") and key.endswith(
            ("o_proj.weight", "down_proj.weight")
        ):
            weights[key] = torch.zeros_like(tensor)
    embed = torch.zeros_like(weights["language_model.model.embed_tokens.weight"])
    embed[:, 0] = 1.0
    embed[[ids["unsafe"], ids["safe"]]] = torch.nn.functional.one_hot(torch.tensor(1), 64).float()
    embed[ids["S1"]] = torch.nn.functional.one_hot(torch.tensor(2), 64).float()
    head = torch.zeros_like(weights["language_model.lm_head.weight"])
    head[ids["unsafe"], 0], head[ids["safe"], 0] = UNSAFE_WEIGHT, SAFE_WEIGHT
    head[ids["S1"], 1] = head[ids["eos"], 2] = NEXT_WEIGHT
    weights["language_model.model.embed_tokens.weight"] = embed
    weights["language_model.lm_head.weight"] = head
    weights["language_model.model.norm.weight"] = torch.ones(64)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return ids


def _expected_first_token(checkpoint: Path) -> dict[str, float]:
    """Log-probabilities of "unsafe" and "safe" as the first token, from the construction:
    a one-hot hidden state normalised by RMSNorm is 1/sqrt(1/d + eps) in its entry."""
    text = json.loads((checkpoint / "config.json").read_text())["text_config"]
    h = 1.0 / math.sqrt(1.0 / text["hidden_size"] + text["rms_norm_eps"])
    logits = {"unsafe": UNSAFE_WEIGHT * h, "safe": SAFE_WEIGHT * h}
    log_z = math.log(sum(math.exp(v) for v in logits.values()) + text["vocab_size"] - 2)
    return {word: value - log_z for word, value in logits.items()}


def test_guard_scores_come_from_the_first_token_logprobs(tmp_path, checkpoints):
    """Batch mode through the Python API, protocol input: every sample gets "unsafe S1",
    read as unsafe with hazard S1 mapped by the MLCommons file, and a score that is the
    softmax of the two words' first-token log-probabilities."""
    checkpoint = tmp_path / "answering-llava"
    build_answering_llava(checkpoints["llava"], checkpoint)
    expected = _expected_first_token(checkpoint)
    score = 1.0 / (1.0 + math.exp(expected["safe"] - expected["unsafe"]))
    assert 0.9 < score < 1.0

    spec = get_guard(str(_guard_toml(tmp_path, "tiny-answering-guard", checkpoint, 4)))
    engine = VllmProvider(spec.model_spec(), streaming=False, **TEST_LLM_ARGS)
    red = image((48, 48), "red")
    asking = _with_logprobs([request("probe", red, "hello")], TOP_K)
    plain_result, probe = engine.generate_batch([request("plain", red, "hello"), *asking])
    assert plain_result.text == probe.text == "unsafe S1"
    assert probe.finish_reason == "stop" and plain_result.first_token_logprobs is None
    got = probe.first_token_logprobs
    assert 2 <= len(got) <= TOP_K
    assert got["unsafe"] == pytest.approx(expected["unsafe"], abs=1e-4)
    assert got["safe"] == pytest.approx(expected["safe"], abs=1e-4)
    assert first_token_p_unsafe(got) == pytest.approx(score, abs=1e-5)

    bench = load_benchmark("sample")
    layout = ResultsLayout(tmp_path / "results")
    options = GuardOptions(protocol="input")
    summary = run_guard(spec, bench, bench.samples, layout, options, provider=engine)
    assert summary.outcomes == {"ok": len(bench.samples)}
    records = RecordStore(layout.guard_verdicts(spec.name, "input"), GuardRecord).read()
    assert set(records) == {s.id for s in bench.samples}
    for rec in records.values():
        assert (rec.outcome, rec.unsafe, rec.raw) == ("ok", True, "unsafe S1")
        assert rec.category_raw == "S1" and rec.predicted_label == "weapon_related_violence"
        assert rec.score == pytest.approx(score, abs=1e-5)
        assert rec.truth_unsafe == (rec.type != "SSS")
    manifest = GuardManifest.model_validate_json(
        layout.guard_manifest(spec.name, "input").read_text()
    )
    assert manifest.provider_details["scheduling"] == "batch"
    assert manifest.counts["ok"] == manifest.counts["predicted_unsafe"] == len(bench.samples)
