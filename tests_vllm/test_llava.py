"""VllmProvider on a tiny random-weight LLaVA: real vLLM on the CPU, images through LLM.chat.

One engine serves the whole module (starting one costs ~45 s on a CPU)."""

from __future__ import annotations

import pytest

from holisafe_bench.errors import HolisafeError
from holisafe_bench.provenance import sha256_text
from holisafe_bench.providers.vllm_provider import VllmProvider
from holisafe_bench.testing.tiny_models import CHAT_TEMPLATE
from tests_vllm.conftest import TEST_LLM_ARGS, make_spec
from tests_vllm.images import BROKEN, image, request

# The checkpoint's template with a fixed instruction in front: 4 more prompt tokens.
OVERRIDE_TEMPLATE = "please answer the question\n" + CHAT_TEMPLATE
MAX_MODEL_LEN = 200
IMAGE_TOKENS = 16  # 32x32 CLIP input, 8-pixel patches, CLS dropped


@pytest.fixture(scope="module")
def template_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "override.jinja"
    path.write_text(OVERRIDE_TEMPLATE, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def provider(checkpoints, template_file):
    spec = make_spec(
        "tiny-llava-vllm",
        checkpoints["llava"],
        dtype="float32",
        max_model_len=MAX_MODEL_LEN,
        limit_mm_per_prompt={"image": 1},
        chat_template=str(template_file),
        batch_size=8,
    )
    provider = VllmProvider(spec, **TEST_LLM_ARGS)
    yield provider
    provider.close()


@pytest.fixture()
def chat_calls(provider, monkeypatch):
    """Every LLM.chat call the provider makes: the number of conversations in it."""
    calls: list[int] = []
    real = provider.llm.chat

    def spy(messages, *args, **kwargs):
        calls.append(len(messages))
        return real(messages, *args, **kwargs)

    monkeypatch.setattr(provider.llm, "chat", spy)
    return calls


def test_a_batch_is_one_chat_call_with_results_in_request_order(provider, chat_calls):
    requests = [
        request("a", image((64, 48), "red")),
        request("b", image((30, 90), "blue", "JPEG"), "how many shapes can you see", max_tokens=3),
        request("c", image((128, 128), "green"), "describe this image", max_tokens=20),
        request("d", image((40, 40), "gold"), "what colour is it", temperature=0.8),
        request("e", image((50, 70), "teal", "JPEG"), system="answer in one word"),
    ]
    results = provider.generate_batch(requests)
    assert chat_calls == [5], "the whole batch goes to the engine in one LLM.chat call"
    assert [r.id for r in results] == ["a", "b", "c", "d", "e"]
    for req, res in zip(requests, results, strict=True):
        assert res.outcome == "ok", res.error
        assert isinstance(res.text, str)
        assert res.usage.input_tokens > IMAGE_TOKENS
        assert 1 <= res.usage.output_tokens <= req.max_tokens
        assert res.finish_reason in ("stop", "length")
        if res.finish_reason == "length":
            assert res.usage.output_tokens == req.max_tokens
        assert res.latency_s is not None and res.latency_s > 0
    # The system message is rendered into the prompt: "e" has the longest prompt.
    assert results[4].usage.input_tokens > results[0].usage.input_tokens


def test_greedy_decoding_is_deterministic(provider):
    red = image((64, 48), "red")
    first = provider.generate_batch(
        [request("x", red, max_tokens=16), request("y", red, max_tokens=16)]
    )
    again = provider.generate_batch([request("x", red, max_tokens=16)])
    assert first[0].outcome == first[1].outcome == again[0].outcome == "ok"
    assert first[0].text == first[1].text == again[0].text
    assert first[0].usage == again[0].usage


def test_the_override_template_renders_the_prompts_and_is_hashed(provider, checkpoints):
    from PIL import Image
    from transformers import AutoProcessor

    facts = provider.describe()
    assert facts["provider"] == "vllm"
    assert facts["chat_template_overridden"] is True
    assert facts["chat_template_hash"] == sha256_text(OVERRIDE_TEMPLATE)
    assert facts["chat_template_hash"] != sha256_text(CHAT_TEMPLATE)

    # The prompt vLLM tokenized has exactly the length transformers gives for the override.
    processor = AutoProcessor.from_pretrained(str(checkpoints["llava"]))
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what shape"}]}
    ]
    pixels = Image.new("RGB", (64, 48), "red")

    def hf_length(template: str) -> int:
        prompt = processor.apply_chat_template(
            messages, chat_template=template, add_generation_prompt=True, tokenize=False
        )
        encoded = processor(text=[prompt], images=[pixels], add_special_tokens=False)
        return len(encoded["input_ids"][0])

    assert hf_length(OVERRIDE_TEMPLATE) == hf_length(CHAT_TEMPLATE) + 4
    (result,) = provider.generate_batch([request("t", image((64, 48), "red"), "what shape")])
    assert result.usage.input_tokens == hf_length(OVERRIDE_TEMPLATE)


def test_engine_args_reach_the_engine(provider):
    config = provider.llm.llm_engine.vllm_config
    assert config.model_config.max_model_len == MAX_MODEL_LEN
    assert str(config.model_config.dtype) == "torch.float32"
    assert config.parallel_config.tensor_parallel_size == 1
    assert config.model_config.enforce_eager is True
    facts = provider.describe()
    assert facts["max_model_len"] == MAX_MODEL_LEN
    assert facts["dtype"] == "torch.float32"
    assert facts["limit_mm_per_prompt"] == {"image": 1}
    assert provider.batch_size == 8


def test_a_broken_image_fails_only_its_own_request(provider, chat_calls):
    requests = [
        request("0", image((40, 40), "red")),
        request("1", BROKEN),
        request("2", image((60, 40), "blue")),
    ]
    results = provider.generate_batch(requests)
    assert [r.id for r in results] == ["0", "1", "2"]
    assert [r.outcome for r in results] == ["ok", "error", "ok"]
    assert results[1].text is None and results[1].error.startswith("input: ")
    assert chat_calls == [2], "the broken image never reaches the engine"


def test_requests_the_engine_rejects_are_found_and_the_rest_succeed(provider, chat_calls):
    """Two images over limit_mm_per_prompt=1 and a prompt over max_model_len make LLM.chat
    raise for the whole batch; the provider splits the batch to find them."""
    long_text = " ".join(["describe the red circle in this picture please"] * 40)
    two_images = (image((40, 40), "red"), image((40, 40), "blue"))
    requests = [request(str(i), image((40 + i, 40), "green")) for i in range(8)]
    requests[2] = request("2", None, images=two_images)
    requests[6] = request("6", image((40, 40), "red"), long_text)
    results = provider.generate_batch(requests)
    assert [r.id for r in results] == [str(i) for i in range(8)]
    outcomes = [r.outcome for r in results]
    assert outcomes == ["ok", "ok", "error", "ok", "ok", "ok", "error", "ok"]
    assert "image" in results[2].error.lower()
    assert results[6].error.startswith("generate: ")
    assert chat_calls[0] == 8
    # Bisection: 8 -> 4+4 -> 2+2+2+2 -> singles for the two failing pairs.
    assert len(chat_calls) <= 1 + 2 + 4 + 4
    assert all(n >= 1 for n in chat_calls)


def test_an_empty_batch_makes_no_engine_call(provider, chat_calls):
    assert provider.generate_batch([]) == []
    assert chat_calls == []


def test_a_missing_checkpoint_fails_before_any_sample_with_one_clear_error(tmp_path):
    spec = make_spec("missing", tmp_path / "no-such-model")
    with pytest.raises(HolisafeError, match="cannot load 'missing'") as info:
        VllmProvider(spec, **TEST_LLM_ARGS)
    assert "\n" not in str(info.value)
