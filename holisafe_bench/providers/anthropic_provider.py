"""Anthropic Messages API."""

from __future__ import annotations

import time
from typing import Any

from holisafe_bench.providers.base import ApiProvider
from holisafe_bench.providers.client_pool import ClientPool, shared_ssl_context
from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.images import b64
from holisafe_bench.providers.keys import api_key
from holisafe_bench.providers.sdk_errors import status_error, unexpected_error
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.records import Usage
from holisafe_bench.registry import ApiSettings


def message_result(request_id: str, response: Any, latency: float = 0.0) -> ChatResult:
    """A Messages API reply (live or from a batch) as a result; malformed replies raise."""
    usage = Usage(
        input_tokens=response.usage.input_tokens or 0,
        output_tokens=response.usage.output_tokens or 0,
    )
    if response.stop_reason == "refusal":
        # The API's safety classifiers stopped the reply: a provider block, not text.
        return ChatResult(
            id=request_id,
            outcome="content_filter",
            finish_reason="refusal",
            usage=usage,
            latency_s=latency,
        )
    texts = [block.text for block in response.content if getattr(block, "type", "") == "text"]
    if not texts:
        raise ProviderCallError("reply without a text block", retryable=False)
    return ChatResult(
        id=request_id,
        outcome="ok",
        text="".join(texts),
        finish_reason=response.stop_reason,
        usage=usage,
        latency_s=latency,
    )


class AnthropicProvider(ApiProvider):
    provider_name = "anthropic"
    api: ApiSettings

    def __init__(self, model_id: str, api: ApiSettings) -> None:
        super().__init__(model_id, api)
        self._key = api_key(
            (api.api_key_env or "", "ANTHROPIC_API_KEY"), what=f"anthropic model {model_id!r}"
        )
        self._clients = ClientPool(self.make_client, lambda c: c.close(), api.concurrency)

    def describe(self) -> dict[str, Any]:
        return {"provider": self.provider_name, "model": self.model_id}

    def make_client(self) -> Any:
        from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient

        return AsyncAnthropic(
            api_key=self._key,
            base_url=self.api.base_url,
            max_retries=0,  # the shared layer retries
            timeout=self.api.timeout_s,
            http_client=DefaultAsyncHttpxClient(verify=shared_ssl_context()),
        )

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        content: list[dict[str, Any]] = [
            {
                "type": "image",
                "source": {"type": "base64", "media_type": image.media_type, "data": b64(image)},
            }
            for image in request.images
        ]
        content.append({"type": "text", "text": request.text})
        payload: dict[str, Any] = {
            "model": self.model_id,
            "max_tokens": request.max_tokens,
            "messages": [{"role": "user", "content": content}],
            # Newer SDKs dropped the `temperature` argument; the API still takes the field.
            "extra_body": {"temperature": request.temperature},
        }
        if request.top_p is not None:
            payload["extra_body"]["top_p"] = request.top_p
        if request.system:
            payload["system"] = request.system
        return payload

    def call_error(self, exc: Exception) -> ProviderCallError | None:
        import anthropic

        if isinstance(exc, anthropic.APIStatusError):
            return status_error(exc, exc.status_code, exc.response.headers, self._key)
        if isinstance(exc, anthropic.AnthropicError):
            # Transport failures retry; a body the SDK could not parse would fail again.
            return unexpected_error(exc, self._key)
        return None

    async def warm_up(self) -> None:
        import anthropic.types  # noqa: F401 - the reply model call_once parses into

        self._clients.open()

    async def call_once(self, request: ChatRequest) -> ChatResult:
        import anthropic

        started = time.monotonic()
        try:
            from anthropic.types import Message

            # The SDK's generic POST: same client, auth, errors and typed parsing, without
            # re-walking the (large, base64) payload through its parameter transformer.
            body = self.payload(request)
            body.update(body.pop("extra_body"))
            response = await self._clients.next().post("/v1/messages", body=body, cast_to=Message)
        except anthropic.AnthropicError as exc:
            raise self.call_error(exc) from None
        return message_result(request.id, response, time.monotonic() - started)

    async def aclose(self) -> None:
        await self._clients.aclose()
