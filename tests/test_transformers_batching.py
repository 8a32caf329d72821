"""The transformers provider's streaming path (issue 17, item 3): requests ordered by prompt
length within a window of a few batches, results identical to today's order, one result
per request, a failing request failing alone. On the tiny random-weight LLaVA, offline."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest

pytest.importorskip("torch", reason="the hf extra (torch) is installed by `make install`")

from PIL import Image  # noqa: E402

from holisafe_bench.providers.base import StreamingProvider  # noqa: E402
from holisafe_bench.providers.transformers_provider import TransformersProvider  # noqa: E402
from holisafe_bench.providers.types import ChatRequest, ImageInput  # noqa: E402
from holisafe_bench.testing.tiny_models import (  # noqa: E402
    build_tiny_llava,
    tiny_transformers_spec,
)

WORDS = ("what", "shape", "colour", "is", "the", "circle", "in", "this", "picture", "describe")
BATCH = 3


def _png(size, color) -> ImageInput:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return ImageInput(data=buf.getvalue(), media_type="image/png")


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        folder = build_tiny_llava(tmp_path_factory.mktemp("tiny") / "tiny-llava")
        yield TransformersProvider(tiny_transformers_spec(folder, batch_size=BATCH))


@pytest.fixture(autouse=True)
def _defaults(provider):
    yield
    provider.sort_by_length = True
    provider.window_batches = TransformersProvider.window_batches


def _uneven(n: int, max_tokens: int = 10) -> list[ChatRequest]:
    """Prompts from 1 to ~60 words, long and short interleaved."""
    colours = ("red", "blue", "green", "white")
    out = []
    for i in range(n):
        words = 1 + (i * 37) % 60
        text = " ".join(WORDS[j % len(WORDS)] for j in range(i, i + words))
        image = _png((32 + 8 * (i % 3), 32), colours[i % len(colours)])
        out.append(ChatRequest(id=f"r{i}", text=text, images=(image,), max_tokens=max_tokens))
    return out


def _texts(results) -> dict[str, str | None]:
    return {r.id: r.text for r in results}


def test_the_provider_streams_so_run_takes_its_windowed_path(provider):
    assert isinstance(provider, StreamingProvider) and provider.streaming


def test_sorted_windows_give_the_same_greedy_texts_as_the_old_order(provider):
    requests = _uneven(14)
    old_order = provider.generate_batch(requests[:BATCH])
    for i in range(BATCH, len(requests), BATCH):  # today's run: batches in request order
        old_order += provider.generate_batch(requests[i : i + BATCH])
    sorted_ = list(provider.stream(iter(requests)))
    assert sorted(r.id for r in sorted_) == sorted(r.id for r in requests)
    assert all(r.outcome == "ok" for r in sorted_)
    assert _texts(sorted_) == _texts(old_order)
    usage = {r.id: (r.usage.input_tokens, r.usage.output_tokens) for r in old_order}
    assert {r.id: (r.usage.input_tokens, r.usage.output_tokens) for r in sorted_} == usage


def test_a_window_is_cut_into_batches_of_similar_prompt_length(provider, monkeypatch):
    requests = _uneven(12, max_tokens=2)
    calls: list[list[int]] = []
    generate = provider._generate

    def spy(items):
        calls.append([provider.inputs.length(item) for item in items])
        return generate(items)

    monkeypatch.setattr(provider, "_generate", spy)
    list(provider.stream(iter(requests)))
    sorted_calls, calls[:] = list(calls), []
    provider.sort_by_length = False
    list(provider.stream(iter(requests)))

    def padding(batches):
        return sum(max(b) * len(b) - sum(b) for b in batches)

    assert all(len(b) <= BATCH for b in sorted_calls)
    assert [n for b in sorted_calls for n in b] == sorted(n for b in calls for n in b)
    assert padding(sorted_calls) < padding(calls) / 2


def test_requests_are_pulled_a_window_at_a_time(provider):
    provider.window_batches = 2
    pulled = []

    def feed():
        for request in _uneven(9, max_tokens=2):
            pulled.append(request.id)
            yield request

    stream = provider.stream(feed())
    next(stream)
    assert len(pulled) == 2 * BATCH  # memory stays flat: one window in hand
    assert len(list(stream)) == 8


def test_a_bad_image_and_a_failing_generate_fail_alone(provider, monkeypatch):
    requests = _uneven(7, max_tokens=4)
    bad = ImageInput(data=b"\x89PNG not really", media_type="image/png")
    requests[2] = ChatRequest(id="bad-image", text="describe", images=(bad,), max_tokens=4)
    generate = provider._generate

    def flaky(items):
        if any(item[0].id == "r4" for item in items):
            raise RuntimeError("boom")
        return generate(items)

    monkeypatch.setattr(provider, "_generate", flaky)
    results = {r.id: r for r in provider.stream(iter(requests))}
    assert len(results) == len(requests)
    assert results["bad-image"].outcome == "error" and "input" in results["bad-image"].error
    assert results["r4"].outcome == "error" and "boom" in results["r4"].error
    ok = [r for r in results.values() if r.id not in ("bad-image", "r4")]
    assert len(ok) == 5 and all(r.outcome == "ok" for r in ok)


def test_different_sampling_never_shares_a_generate_call(provider, monkeypatch):
    requests = _uneven(6, max_tokens=3)
    requests[1] = replace(requests[1], max_tokens=5)
    requests[4] = replace(requests[4], max_tokens=5)
    calls: list[set[int]] = []
    generate = provider._generate

    def spy(items):
        calls.append({item[0].max_tokens for item in items})
        return generate(items)

    monkeypatch.setattr(provider, "_generate", spy)
    results = list(provider.stream(iter(requests)))
    assert len(results) == 6 and all(len(c) == 1 for c in calls)
