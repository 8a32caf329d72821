"""The real OpenAI, Anthropic and Gemini SDKs against fake servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import ssl
import time

import pytest
from PIL import Image

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.client_pool import shared_ssl_context
from holisafe_bench.providers.factory import create_chat_provider
from holisafe_bench.providers.retry import RetryPolicy
from holisafe_bench.providers.runner import run_api_requests
from holisafe_bench.providers.types import ChatRequest, ImageInput
from holisafe_bench.registry import ApiSettings
from holisafe_bench.testing.fake_server import FakeResponse
from holisafe_bench.testing.fake_vendors import (
    anthropic_message,
    anthropic_server,
    gemini_server,
    openai_completion,
    openai_server,
    received_image_then_text,
)

KEY = "sk-test-SECRET-0123456789"
VENDORS = {
    "openai": (openai_server, "OPENAI_API_KEY", "gpt-4o"),
    "anthropic": (anthropic_server, "ANTHROPIC_API_KEY", "claude-x"),
    "gemini": (gemini_server, "GEMINI_API_KEY", "gemini-x"),
}
FAST = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.05, max_total_seconds=10)


def _image() -> ImageInput:
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), "red").save(buf, format="JPEG")
    return ImageInput(data=buf.getvalue(), media_type="image/jpeg")


IMAGE = _image()


@pytest.fixture(params=sorted(VENDORS))
def vendor(request, monkeypatch):
    make_server, env, model = VENDORS[request.param]
    monkeypatch.setenv(env, KEY)
    server = make_server().start()
    base = server.base_url + ("/v1" if request.param == "openai" else "")
    api = ApiSettings(base_url=base, api_key_env=env, timeout_s=1.0)
    yield request.param, server, create_chat_provider(request.param, model, api=api)
    server.stop()


def _run(provider, requests, retry=FAST, concurrency=4):
    results = []

    async def go():
        try:
            await run_api_requests(
                provider, requests, concurrency=concurrency, retry=retry, on_result=results.append
            )
        finally:
            await provider.aclose()

    asyncio.run(go())
    return {r.id: r for r in results}


def _req(i=0, text="what shape is this?"):
    return ChatRequest(id=str(i), text=text, images=(IMAGE,), max_tokens=32)


def _block(name):
    if name == "openai":
        return FakeResponse(body=openai_completion("gpt-4o", "", finish="content_filter"))
    if name == "anthropic":
        return FakeResponse(body=anthropic_message("claude-x", "", stop="refusal"))
    return FakeResponse(
        body={"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    )


def test_happy_path_sends_image_then_text_and_records_usage(vendor):
    name, server, provider = vendor
    result = _run(provider, [_req(7)])["7"]
    assert result.outcome == "ok" and result.text.startswith("fake answer to: what shape")
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    image, text = received_image_then_text(name, server.log[-1].json())
    assert image == IMAGE.read_bytes() and text == "what shape is this?"
    headers = server.log[-1].headers
    assert KEY in " ".join(headers.values())  # the key travels in a header...


def test_429_with_retry_after_is_honoured(vendor):
    name, server, provider = vendor
    server.inject(
        FakeResponse(429, {"error": {"message": "slow down"}}, headers={"retry-after": "0.3"})
    )
    started = time.monotonic()
    result = _run(provider, [_req()])["0"]
    assert result.outcome == "ok" and result.attempts == 2
    assert time.monotonic() - started >= 0.3
    assert server.count() == 2


def test_500_is_retried_then_succeeds_and_500_forever_gives_up(vendor):
    name, server, provider = vendor
    server.inject(FakeResponse(500, {"error": {"message": "oops"}}))
    assert _run(provider, [_req()])["0"].outcome == "ok"
    assert server.count() == 2


def test_persistent_500_ends_as_an_error_after_bounded_attempts(vendor):
    name, server, provider = vendor
    server.inject(*[FakeResponse(500, {"error": {"message": "down"}})] * 3)
    result = _run(provider, [_req()])["0"]
    assert result.outcome == "error" and result.text is None
    assert result.attempts == 3 and "after 3 attempts" in result.error
    assert server.count() == 3


def test_400_is_not_retried(vendor):
    name, server, provider = vendor
    server.inject(FakeResponse(400, {"error": {"message": "bad request", "code": "invalid"}}))
    result = _run(provider, [_req()])["0"]
    assert result.outcome == "error" and result.attempts == 1
    assert server.count() == 1


def test_timeout_and_malformed_body_are_errors_never_text(vendor):
    name, server, provider = vendor
    server.inject(*[FakeResponse(delay=1.3)] * 2)
    slow = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.02, max_total_seconds=10)
    result = _run(provider, [_req()], retry=slow)["0"]
    assert result.outcome == "error" and result.text is None
    server.inject(FakeResponse(200, b"{not json at all"))
    result = _run(provider, [_req(1)])["1"]
    assert result.outcome == "error" and result.text is None


def test_safety_blocks_become_content_filter(vendor):
    name, server, provider = vendor
    server.inject(_block(name))
    result = _run(provider, [_req()])["0"]
    assert result.outcome == "content_filter" and result.text is None


def test_openai_policy_rejection_is_a_content_filter(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server = openai_server().start()
    try:
        server.inject(
            FakeResponse(400, {"error": {"message": "policy", "code": "content_policy_violation"}})
        )
        api = ApiSettings(base_url=server.base_url + "/v1", timeout_s=1.0)
        result = _run(create_chat_provider("openai", "gpt-4o", api=api), [_req()])["0"]
        assert result.outcome == "content_filter"
    finally:
        server.stop()


def test_no_key_is_a_clear_error_before_any_request(monkeypatch):
    for env in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(env, raising=False)
    with pytest.raises(HolisafeError, match="ANTHROPIC_API_KEY"):
        create_chat_provider("anthropic", "claude-x", api=ApiSettings())
    with pytest.raises(HolisafeError, match="GEMINI_API_KEY"):
        create_chat_provider("gemini", "gemini-x", api=ApiSettings())


def test_error_text_never_contains_the_key(vendor):
    name, server, provider = vendor
    server.inject(FakeResponse(401, {"error": {"message": f"bad key {KEY}"}}))
    result = _run(provider, [_req()])["0"]
    assert result.outcome == "error"
    assert KEY not in result.error


def test_many_requests_each_get_exactly_one_result(vendor):
    name, server, provider = vendor
    server.inject(FakeResponse(500, {}), FakeResponse(429, {}, headers={"retry-after": "0"}))
    results = _run(provider, [_req(i) for i in range(40)], concurrency=8)
    assert sorted(results, key=int) == [str(i) for i in range(40)]
    assert all(r.outcome == "ok" for r in results.values())


def test_pooled_clients_share_one_verifying_tls_context(vendor, monkeypatch):
    name, server, provider = vendor
    shared = shared_ssl_context()
    built = []
    real = ssl.create_default_context
    monkeypatch.setattr(
        ssl, "create_default_context", lambda *a, **k: built.append(a or k) or real(*a, **k)
    )
    wide = create_chat_provider(
        name, provider.model_id, api=provider.api.model_copy(update={"concurrency": 32})
    )
    results = _run(wide, [_req(i) for i in range(12)], concurrency=32)
    assert len(results) == 12 and all(r.outcome == "ok" for r in results.values())
    assert built == []  # four pooled clients, no CA bundle loaded again
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname


def test_a_slow_first_client_setup_is_not_charged_to_the_first_attempt(vendor, monkeypatch):
    # A cold SDK import can take longer than a short timeout_s: the clients are built before
    # the first request, so one attempt each still suffices.
    name, server, provider = vendor
    quick = create_chat_provider(
        name, provider.model_id, api=provider.api.model_copy(update={"timeout_s": 0.3})
    )
    real_make = quick.make_client

    def slow_make():
        time.sleep(0.5)
        return real_make()

    monkeypatch.setattr(quick, "make_client", slow_make)
    monkeypatch.setattr(quick._clients, "_make", slow_make)
    once = RetryPolicy(max_attempts=1, initial_wait=0.01, max_wait=0.01, max_total_seconds=10)
    results = _run(quick, [_req(i) for i in range(3)], retry=once, concurrency=1)
    assert [results[str(i)].outcome for i in range(3)] == ["ok", "ok", "ok"]
    assert server.count() == 3
