"""The transformers provider on a tiny random-weight LLaVA built inside the test, offline."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("torch", reason="the hf extra (torch) is installed by `make install`")

from PIL import Image  # noqa: E402

from holisafe_bench.errors import HolisafeError  # noqa: E402
from holisafe_bench.providers.transformers_provider import TransformersProvider  # noqa: E402
from holisafe_bench.providers.types import ChatRequest, ImageInput  # noqa: E402
from holisafe_bench.registry import ModelSpec  # noqa: E402
from holisafe_bench.testing.tiny_models import (  # noqa: E402
    build_tiny_llava,
    tiny_transformers_spec,
)


def _png(size, color) -> ImageInput:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return ImageInput(data=buf.getvalue(), media_type="image/png")


@pytest.fixture(scope="module")
def provider(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")
    folder = build_tiny_llava(tmp_path_factory.mktemp("tiny") / "tiny-llava")
    return TransformersProvider(tiny_transformers_spec(folder, batch_size=4))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _req(i, image, text="what shape is this", max_tokens=12):
    return ChatRequest(id=str(i), text=text, images=(image,), max_tokens=max_tokens)


def test_batched_generation_equals_one_at_a_time(provider):
    requests = [
        _req(0, _png((64, 48), "red")),
        _req(1, _png((30, 90), "blue"), text="how many shapes can you see in this picture"),
        _req(2, _png((128, 128), "green"), text="describe"),
    ]
    batched = provider.generate_batch(requests)
    alone = [provider.generate_batch([r])[0] for r in requests]
    assert [r.id for r in batched] == ["0", "1", "2"]
    assert all(r.outcome == "ok" for r in batched)
    # Left padding: a request's greedy answer does not depend on its batch mates.
    assert [r.text for r in batched] == [r.text for r in alone]
    for result in batched:
        assert result.usage.input_tokens > 16  # 16 image tokens + the prompt
        assert 1 <= result.usage.output_tokens <= 12
        assert result.finish_reason in ("stop", "length")


def test_a_corrupt_image_fails_only_its_own_request(provider):
    bad = ImageInput(data=b"\x89PNG not really", media_type="image/png")
    results = provider.generate_batch([_req(0, _png((40, 40), "red")), _req(1, bad)])
    assert results[0].outcome == "ok"
    assert results[1].outcome == "error" and results[1].text is None
    assert "input" in results[1].error


def test_manifest_facts_include_the_chat_template_hash(provider):
    facts = provider.describe()
    assert facts["provider"] == "transformers"
    assert len(facts["chat_template_hash"]) == 64


def test_a_missing_checkpoint_fails_before_any_sample_with_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = ModelSpec(
        name="missing",
        display_name="Missing",
        group="open-weight",
        provider="transformers",
        checkpoint=str(tmp_path / "no-such-model"),
    )
    with pytest.raises(HolisafeError, match="cannot load 'missing'"):
        TransformersProvider(spec)
