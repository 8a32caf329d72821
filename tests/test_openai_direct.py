"""The OpenAI provider's direct send (openai_direct.py) against the SDK's public `post`:
the same request on the wire, the same results and errors."""

from __future__ import annotations

import asyncio
import json

import pytest

from holisafe_bench.providers import openai_provider
from holisafe_bench.providers.factory import create_chat_provider
from holisafe_bench.providers.retry import RetryPolicy
from holisafe_bench.providers.runner import run_api_requests
from holisafe_bench.providers.types import ChatRequest, ImageInput
from holisafe_bench.registry import ApiSettings
from holisafe_bench.testing.fake_server import FakeResponse
from holisafe_bench.testing.fake_vendors import openai_server

KEY = "sk-test-direct-0000"
FAST = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.05, max_total_seconds=10)
IMAGE = ImageInput(data=b"\xff\xd8\xff\xe0 not decoded here", media_type="image/jpeg")


def _send(server, requests, *, direct: bool, monkeypatch) -> dict:
    api = ApiSettings(base_url=server.base_url + "/v1", timeout_s=1.0)
    provider = create_chat_provider("openai", "gpt-4o", api=api)
    results = []

    async def go():
        try:
            await run_api_requests(
                provider, requests, concurrency=2, retry=FAST, on_result=results.append
            )
        finally:
            await provider.aclose()

    with monkeypatch.context() as patched:
        if not direct:  # the SDK's public post, as for clients with richer auth
            patched.setattr(openai_provider, "direct_post", lambda client: None)
        asyncio.run(go())
    return {r.id: r for r in results}


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    fake = openai_server().start()
    yield fake
    fake.stop()


def _req(i: int) -> ChatRequest:
    return ChatRequest(id=str(i), text=f"q{i} é \u2028", images=(IMAGE,), max_tokens=32, top_p=0.5)


def test_same_request_on_the_wire_as_the_sdk_post(server, monkeypatch):
    direct = _send(server, [_req(1)], direct=True, monkeypatch=monkeypatch)
    sdk = _send(server, [_req(1)], direct=False, monkeypatch=monkeypatch)
    assert direct["1"].text == sdk["1"].text and direct["1"].usage == sdk["1"].usage
    first, second = server.log
    assert first.path == second.path == "/v1/chat/completions"
    assert json.loads(first.body) == json.loads(second.body)
    assert (
        first.body
        == json.dumps(json.loads(second.body), ensure_ascii=False, separators=(",", ":")).encode()
    )
    assert first.headers == second.headers  # auth, platform, retry count, content length


@pytest.mark.parametrize("direct", [True, False])
def test_errors_map_to_the_same_outcomes(server, monkeypatch, direct):
    server.inject(
        FakeResponse(429, {"error": {"message": "slow"}}, headers={"retry-after": "0.05"}),
        FakeResponse(400, {"error": {"message": "policy", "code": "content_policy_violation"}}),
        FakeResponse(401, {"error": {"message": "bad key"}}),
    )
    results = _send(server, [_req(1)], direct=direct, monkeypatch=monkeypatch)
    assert results["1"].outcome == "content_filter" and results["1"].attempts == 2
    results = _send(server, [_req(2)], direct=direct, monkeypatch=monkeypatch)
    assert results["2"].outcome == "error" and "401" in (results["2"].error or "")
    assert KEY not in (results["2"].error or "")


def test_connection_refused_is_a_retryable_transport_error(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    dead = openai_server().start()
    url = dead.base_url
    dead.stop()
    api = ApiSettings(base_url=url + "/v1", timeout_s=1.0)
    provider = create_chat_provider("openai", "gpt-4o", api=api)
    results = []

    async def go():
        try:
            await run_api_requests(
                provider, [_req(3)], concurrency=1, retry=FAST, on_result=results.append
            )
        finally:
            await provider.aclose()

    asyncio.run(go())
    assert results[0].outcome == "error" and results[0].attempts == 3


def test_replies_only_the_stdlib_parses_are_still_read():
    from holisafe_bench.providers.errors import ProviderCallError
    from holisafe_bench.providers.openai_provider import decode_reply

    assert decode_reply(b'{"t": "\\ud800x"}') == {"t": "\ud800x"}  # a lone surrogate
    with pytest.raises(ProviderCallError, match="not JSON"):
        decode_reply(b"<html>bad gateway</html>")
