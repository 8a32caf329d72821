"""VllmProvider on a tiny random-weight Qwen2-VL: dynamic resolution, M-RoPE, ChatML, and the
min_pixels/max_pixels engine args that bound its image tokens."""

from __future__ import annotations

import pytest

from holisafe_bench.provenance import sha256_text
from holisafe_bench.providers.vllm_provider import VllmProvider
from holisafe_bench.testing.vllm_checkpoints import QWEN_CHAT_TEMPLATE, QWEN_PIXELS_PER_TOKEN
from tests_vllm.conftest import TEST_LLM_ARGS, make_spec
from tests_vllm.images import BROKEN, image, request

MIN_TOKENS, MAX_TOKENS = 4, 16  # image tokens allowed by the spec's min_pixels/max_pixels


@pytest.fixture(scope="module")
def provider(checkpoints):
    spec = make_spec(
        "tiny-qwen2-vl-vllm",
        checkpoints["qwen2_vl"],
        dtype="float32",
        max_model_len=512,
        limit_mm_per_prompt={"image": 1, "video": 0},
        min_pixels=MIN_TOKENS * QWEN_PIXELS_PER_TOKEN,
        max_pixels=MAX_TOKENS * QWEN_PIXELS_PER_TOKEN,
    )
    provider = VllmProvider(spec, **TEST_LLM_ARGS)
    yield provider
    provider.close()


def test_a_batch_with_images_of_many_sizes(provider):
    sizes = [(56, 56), (96, 72), (300, 200), (640, 480), (20, 200), (112, 112)]
    requests = [
        request(f"q{i}", image(size, "red" if i % 2 else "blue", "JPEG" if i % 3 else "PNG"))
        for i, size in enumerate(sizes)
    ]
    results = provider.generate_batch(requests)
    assert [r.id for r in results] == [r.id for r in requests]
    for res in results:
        assert res.outcome == "ok", res.error
        assert res.usage.input_tokens > MIN_TOKENS
        assert 1 <= res.usage.output_tokens <= 12
        assert res.finish_reason in ("stop", "length")


def test_min_and_max_pixels_reach_the_image_processor(provider):
    """The checkpoint allows up to 64 image tokens; the spec caps them at 16 and floors
    them at 4. Same text, so prompt lengths differ only by image tokens."""
    text = "what shape is in this picture"
    small, medium, large = provider.generate_batch(
        [
            request("s", image((56, 56), "red"), text),  # 2x2 merged patches: 4 tokens
            request("m", image((112, 112), "red"), text),  # 4x4: 16 tokens
            request("l", image((224, 224), "red"), text),  # 8x8 = 64 uncapped, capped at 16
        ]
    )
    assert small.outcome == medium.outcome == large.outcome == "ok"
    assert medium.usage.input_tokens - small.usage.input_tokens == MAX_TOKENS - MIN_TOKENS
    assert large.usage.input_tokens == medium.usage.input_tokens
    assert provider.describe()["mm_processor_kwargs"] == {
        "min_pixels": MIN_TOKENS * QWEN_PIXELS_PER_TOKEN,
        "max_pixels": MAX_TOKENS * QWEN_PIXELS_PER_TOKEN,
    }


def test_greedy_decoding_is_deterministic_and_independent_of_batch_order(provider):
    a, b = image((96, 72), "green"), image((72, 96), "gold", "JPEG")
    first = provider.generate_batch([request("a", a), request("b", b)])
    swapped = provider.generate_batch([request("b", b), request("a", a)])
    assert [r.id for r in swapped] == ["b", "a"]
    assert first[0].text == swapped[1].text and first[1].text == swapped[0].text
    assert all(r.outcome == "ok" for r in first + swapped)


def test_the_checkpoint_template_is_used_and_hashed(provider):
    facts = provider.describe()
    assert facts["chat_template_overridden"] is False
    assert facts["chat_template_hash"] == sha256_text(QWEN_CHAT_TEMPLATE)
    assert facts["max_model_len"] == 512


def test_a_system_prompt_and_a_broken_image(provider):
    red = image((56, 56), "red")
    plain, with_system, broken = provider.generate_batch(
        [
            request("p", red),
            request("s", red, system="answer the question please"),
            request("x", BROKEN),
        ]
    )
    assert plain.outcome == with_system.outcome == "ok"
    # ChatML: "<|im_start|>system\n" + 4 words + "<|im_end|>\n" in front of the same turn.
    assert with_system.usage.input_tokens > plain.usage.input_tokens + 4
    assert broken.outcome == "error" and broken.error.startswith("input: ")
