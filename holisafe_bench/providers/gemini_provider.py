"""Google Gemini through google-genai."""

from __future__ import annotations

import json
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

# Finish reasons that mean a safety system stopped the reply.
BLOCK_FINISH = frozenset(
    {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY", "RECITATION"}
)


def enum_name(value: Any) -> str:
    return str(getattr(value, "name", value) or "")


def generate_result(request_id: str, body: Any, latency: float = 0.0) -> ChatResult:
    """A generateContent reply in the REST JSON shape (live, or a batch answer dumped by
    alias) as a result; a body that is not a usable reply raises, never becomes text."""
    try:
        meta = body.get("usageMetadata") or {}
        usage = Usage(
            input_tokens=int(meta.get("promptTokenCount") or 0),
            output_tokens=int(meta.get("candidatesTokenCount") or 0),
        )
        blocked = (body.get("promptFeedback") or {}).get("blockReason")
        candidates = body.get("candidates") or []
        candidate = candidates[0] if candidates else None
        finish = str(candidate.get("finishReason") or "") if candidate else ""
        parts = ((candidate or {}).get("content") or {}).get("parts") or []
        text = "".join(p["text"] for p in parts if isinstance(p.get("text"), str))
    except (AttributeError, TypeError, ValueError, KeyError):
        raise ProviderCallError(
            "reply is not a generateContent response", retryable=False
        ) from None
    if blocked:
        return ChatResult(
            id=request_id,
            outcome="content_filter",
            usage=usage,
            finish_reason=f"prompt_blocked:{blocked}",
            latency_s=latency,
        )
    if candidate is None:
        raise ProviderCallError("reply without candidates", retryable=False)
    if finish in BLOCK_FINISH:
        return ChatResult(
            id=request_id,
            outcome="content_filter",
            finish_reason=finish,
            usage=usage,
            latency_s=latency,
        )
    if not parts:
        raise ProviderCallError(f"reply without content (finish {finish})", retryable=False)
    return ChatResult(
        id=request_id,
        outcome="ok",
        text=text,
        finish_reason=finish,
        usage=usage,
        latency_s=latency,
    )


def rest_dump(response: Any) -> dict[str, Any]:
    """A typed SDK reply in the REST JSON shape that `generate_result` reads."""
    return response.model_dump(mode="json", by_alias=True, exclude_none=True)


class GeminiProvider(ApiProvider):
    provider_name = "gemini"
    api: ApiSettings

    def __init__(self, model_id: str, api: ApiSettings) -> None:
        super().__init__(model_id, api)
        self._key = api_key(
            (api.api_key_env or "", "GEMINI_API_KEY", "GOOGLE_API_KEY"),
            what=f"gemini model {model_id!r}",
        )
        self._clients = ClientPool(self.make_client, lambda c: c.aio.aclose(), api.concurrency)

    def describe(self) -> dict[str, Any]:
        return {"provider": self.provider_name, "model": self.model_id}

    def make_client(self) -> Any:
        from google import genai
        from google.genai import types

        tls = shared_ssl_context()
        options: dict[str, Any] = {
            "timeout": int(self.api.timeout_s * 1000),
            "retry_options": types.HttpRetryOptions(attempts=1),  # the shared layer retries
            # httpx takes the context as `verify`; the SDK's aiohttp/websocket side, which it
            # also sets up on every client, as `ssl`.
            "client_args": {"verify": tls},
            "async_client_args": {"verify": tls, "ssl": tls},
        }
        if self.api.base_url:
            options["base_url"] = self.api.base_url
        return genai.Client(api_key=self._key, http_options=types.HttpOptions(**options))

    def contents_and_config(self, request: ChatRequest) -> tuple[list[Any], Any]:
        from google.genai import types

        parts: list[Any] = [
            types.Part.from_bytes(data=image.read_bytes(), mime_type=image.media_type)
            for image in request.images
        ]
        parts.append(types.Part.from_text(text=request.text))
        config = types.GenerateContentConfig(
            temperature=request.temperature,
            top_p=request.top_p,
            max_output_tokens=request.max_tokens,
            system_instruction=request.system,
        )
        return [types.Content(role="user", parts=parts)], config

    def rest_body(self, request: ChatRequest) -> dict[str, Any]:
        """The generateContent request in its documented REST JSON shape."""
        parts: list[dict[str, Any]] = [
            {"inlineData": {"mimeType": image.media_type, "data": b64(image)}}
            for image in request.images
        ]
        parts.append({"text": request.text})
        body: dict[str, Any] = {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {
                "temperature": request.temperature,
                "maxOutputTokens": request.max_tokens,
            },
        }
        if request.top_p is not None:
            body["generationConfig"]["topP"] = request.top_p
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": request.system}]}
        return body

    async def _post(self, client: Any, request: ChatRequest) -> dict[str, Any]:
        # The SDK's typed request building (walking every config field to map it to REST)
        # costs more CPU than the HTTP call; its API client sends our REST body instead, with
        # the same auth, base URL, timeouts and errors. If a future SDK moves that client,
        # the public typed call is used.
        api_client = getattr(client.aio, "_api_client", None)
        if api_client is None or getattr(api_client, "vertexai", False):
            contents, config = self.contents_and_config(request)
            response = await client.aio.models.generate_content(
                model=self.model_id, contents=contents, config=config
            )
            return rest_dump(response)
        model = self.model_id if "/" in self.model_id else f"models/{self.model_id}"
        response = await api_client.async_request(
            "post", f"{model}:generateContent", self.rest_body(request), None
        )
        try:
            return json.loads(response.body) if response.body else {}
        except ValueError:
            raise ProviderCallError("reply is not JSON", retryable=False) from None

    def call_error(self, exc: Exception) -> ProviderCallError | None:
        # google-genai raises APIError for HTTP statuses and lets transport errors through.
        from google.genai import errors

        if isinstance(exc, errors.APIError):
            # `response` is whichever HTTP library's reply the SDK used, or None.
            headers = getattr(exc.response, "headers", None)
            return status_error(exc, exc.code, headers, self._key)
        # A reset mid-body (httpx ReadError) is as transient here as in the other SDKs.
        return unexpected_error(exc, self._key)

    async def warm_up(self) -> None:
        import google.genai.errors  # noqa: F401 - what call_error maps

        self._clients.open()

    async def call_once(self, request: ChatRequest) -> ChatResult:
        started = time.monotonic()
        try:
            body = await self._post(self._clients.next(), request)
        except ProviderCallError:
            raise
        except Exception as exc:
            raise self.call_error(exc) from None
        return generate_result(request.id, body, time.monotonic() - started)

    async def aclose(self) -> None:
        await self._clients.aclose()
