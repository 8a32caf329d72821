"""The transformers provider's per-sequence EOS cut (issue 17, item 3): rows dropped from
generation as each ends give the same greedy results as plain `generate` while decoding
fewer rows; only on allowlisted architectures or as the model file says; batches of one
unchanged. On the tiny random-weight LLaVA, offline.

The random model almost never produces its EOS, so the tests make a token that its greedy
answers produce at different steps in different rows (and never in one) the EOS, for the
model's generation_config and the provider's tokenizer alike."""

from __future__ import annotations

import io
from dataclasses import replace
from types import SimpleNamespace

import pytest

pytest.importorskip("torch", reason="the hf extra (torch) is installed by `make install`")

from PIL import Image  # noqa: E402

from holisafe_bench.errors import HolisafeError  # noqa: E402
from holisafe_bench.providers import hf_decoding  # noqa: E402
from holisafe_bench.providers.transformers_provider import TransformersProvider  # noqa: E402
from holisafe_bench.providers.types import ChatRequest, ImageInput  # noqa: E402
from holisafe_bench.registry import ModelSpec  # noqa: E402
from holisafe_bench.testing.tiny_models import (  # noqa: E402
    build_tiny_llava,
    new_token_ids,
    tiny_transformers_spec,
)

WORDS = ("what", "shape", "colour", "is", "the", "circle", "in", "this", "picture", "describe")
MAX_TOKENS = 24
ROWS = 8


def _requests(n: int = ROWS, max_tokens: int = MAX_TOKENS) -> list[ChatRequest]:
    colours = ("red", "blue", "green", "white", "black")
    out = []
    for i in range(n):
        text = " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(1 + (i * 7) % 13))
        buf = io.BytesIO()
        Image.new("RGB", (32 + 8 * (i % 3), 32), colours[i % len(colours)]).save(buf, "PNG")
        image = ImageInput(data=buf.getvalue(), media_type="image/png")
        out.append(ChatRequest(id=f"r{i}", text=text, images=(image,), max_tokens=max_tokens))
    return out


def _spec(folder, **engine) -> ModelSpec:
    return tiny_transformers_spec(folder, batch_size=ROWS, **engine)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield build_tiny_llava(tmp_path_factory.mktemp("tiny") / "tiny-llava")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def uneven(folder):
    """(provider, ends): a provider whose EOS is a token the plain greedy answers produce
    at different steps, never in at least one row; ends[id] = the tokens each row generates
    with it (EOS included, max_tokens for a row that never produces it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        provider = TransformersProvider(_spec(folder))
    provider.cut_finished = False
    answers = new_token_ids(provider, lambda p: p.generate_batch(_requests()))
    special = set(provider.tokenizer.all_special_ids)
    candidates = []
    for token in sorted({t for a in answers.values() for t in a} - special):
        ends = {i: a.index(token) + 1 if token in a else MAX_TOKENS for i, a in answers.items()}
        if MAX_TOKENS in ends.values():
            candidates.append((len(set(ends.values())), token, ends))
    distinct, token, ends = max(candidates)
    assert distinct >= 4, "no token ends the tiny model's answers unevenly"
    provider.model.generation_config.eos_token_id = token
    provider.tokenizer.eos_token = provider.tokenizer.convert_ids_to_tokens(token)
    return provider, ends


@pytest.fixture
def provider(uneven):
    provider, _ = uneven
    yield provider
    provider.cut_finished = True
    provider.cut_min_steps = TransformersProvider.cut_min_steps


def _outcomes(results) -> dict:
    return {
        r.id: (r.outcome, r.text, r.finish_reason, r.usage.input_tokens, r.usage.output_tokens)
        for r in results
    }


def _row_steps(provider, run) -> int:
    """Rows x forward calls of the language model (prefill and decoding steps) in `run`."""
    rows: list[int] = []
    hook = provider.model.model.language_model.register_forward_pre_hook(
        lambda _m, _a, kw: rows.append(kw["inputs_embeds"].shape[0]), with_kwargs=True
    )
    try:
        run()
    finally:
        hook.remove()
    return sum(rows)


def test_llava_is_cut_by_default(provider):
    assert hf_decoding.cut_enabled(provider.model, None)
    assert "llava" in hf_decoding.CUT_MODEL_TYPES


@pytest.mark.parametrize("min_steps", [1, 5])
def test_cut_gives_plain_generates_texts_finish_reasons_and_counts(provider, uneven, min_steps):
    _, ends = uneven
    requests = _requests()
    provider.cut_finished = False
    plain = _outcomes(provider.generate_batch(requests))
    provider.cut_finished, provider.cut_min_steps = True, min_steps
    cut = _outcomes(provider.generate_batch(requests))
    assert cut == plain
    # the rows do end at different steps, some at EOS and one at the limit
    stopped = {i: out[4] for i, out in plain.items() if out[2] == "stop"}
    assert stopped == {i: end for i, end in ends.items() if i in stopped}
    assert len(set(stopped.values())) >= 3 and len(stopped) < len(plain)


def test_sampling_is_cut_too(provider):
    """Sampled answers are other draws than plain generate's (fewer rows share the random
    stream), so what is checked is that each row is decoded until its own end only."""
    import torch

    requests = [replace(r, temperature=1.0) for r in _requests()]
    torch.manual_seed(0)
    results: list = []
    steps = _row_steps(provider, lambda: results.extend(provider.generate_batch(requests)))
    assert all(r.outcome == "ok" for r in results)
    ends = [r.usage.output_tokens if r.finish_reason == "stop" else MAX_TOKENS for r in results]
    assert steps == sum(ends)


def test_finished_rows_stop_costing_decoding_steps(provider, uneven):
    _, ends = uneven
    requests = _requests()
    provider.cut_finished = False
    plain = _row_steps(provider, lambda: provider.generate_batch(requests))
    provider.cut_finished = True
    cut = _row_steps(provider, lambda: provider.generate_batch(requests))
    # plain: every row is computed until the longest ends; cut: each row until its own end
    assert plain == len(requests) * max(ends.values())
    assert cut == sum(ends.values())
    assert plain - cut == sum(max(ends.values()) - end for end in ends.values()) > 0


def test_a_batch_of_one_is_plain_generate(provider, monkeypatch):
    request = _requests(1)
    provider.cut_finished = False
    plain = _outcomes(provider.generate_batch(request))
    provider.cut_finished = True
    monkeypatch.setattr(hf_decoding, "generate_cut", _never)
    assert _outcomes(provider.generate_batch(request)) == plain


def _never(*args, **kwargs):
    raise AssertionError("generate_cut called")


def test_a_failing_cut_batch_falls_back_to_one_at_a_time(provider, monkeypatch):
    requests = _requests(3)
    provider.cut_finished = False
    plain = _outcomes(provider.generate_batch(requests))
    provider.cut_finished = True
    monkeypatch.setattr(hf_decoding, "generate_cut", _never)
    assert _outcomes(provider.generate_batch(requests)) == plain


def test_a_model_type_off_the_allowlist_uses_plain_generate(folder, offline, monkeypatch):
    monkeypatch.setattr(hf_decoding, "CUT_MODEL_TYPES", frozenset({"some-other-model"}))
    provider = TransformersProvider(_spec(folder))
    assert provider.cut_finished is False
    calls = []
    generate = provider.model.generate
    monkeypatch.setattr(hf_decoding, "generate_cut", _never)
    monkeypatch.setattr(provider.model, "generate", lambda **kw: calls.append(1) or generate(**kw))
    results = provider.generate_batch(_requests(4, max_tokens=3))
    assert len(calls) == 1 and all(r.outcome == "ok" for r in results)


def test_the_engine_setting_forces_the_cut_on_and_off(folder, offline, monkeypatch):
    assert TransformersProvider(_spec(folder, cut_finished=False)).cut_finished is False
    monkeypatch.setattr(hf_decoding, "CUT_MODEL_TYPES", frozenset())
    assert TransformersProvider(_spec(folder)).cut_finished is False
    assert TransformersProvider(_spec(folder, cut_finished=True)).cut_finished is True


def _fake_model(model_type: str, **generation) -> SimpleNamespace:
    config = {
        "eos_token_id": 2,
        "num_beams": 1,
        "num_return_sequences": 1,
        "guidance_scale": None,
        **generation,
    }
    return SimpleNamespace(
        config=SimpleNamespace(model_type=model_type),
        generation_config=SimpleNamespace(**config),
    )


def test_the_allowlist_and_the_setting_decide():
    assert hf_decoding.cut_enabled(_fake_model("llava"), None)
    assert not hf_decoding.cut_enabled(_fake_model("qwen2_5_vl"), None)  # rope_deltas
    assert hf_decoding.cut_enabled(_fake_model("qwen2_5_vl"), True)
    assert not hf_decoding.cut_enabled(_fake_model("llava"), False)


@pytest.mark.parametrize(
    "generation",
    [
        {"min_new_tokens": 5},
        {"cache_implementation": "static"},
        {"num_beams": 4},
        {"eos_token_id": None},
    ],
)
def test_a_generation_config_that_cannot_be_cut_is_never_cut(generation):
    assert not hf_decoding.cut_enabled(_fake_model("llava", **generation), None)
    with pytest.raises(ValueError, match="cut_finished = true"):
        hf_decoding.cut_enabled(_fake_model("llava", **generation), True)


def test_forcing_the_cut_on_a_config_that_cannot_be_cut_fails_at_load(folder, offline, monkeypatch):
    monkeypatch.setattr(hf_decoding, "cut_blocker", lambda model: "it is a test")
    with pytest.raises(HolisafeError, match="cut_finished = true, but it is a test"):
        TransformersProvider(_spec(folder, cut_finished=True))
