"""Google Gemini through google-genai."""

from __future__ import annotations

import time
from typing import Any

from holisafe_bench.providers.base import ApiProvider
from holisafe_bench.providers.client_pool import ClientPool
from holisafe_bench.providers.errors import ProviderCallError, parse_retry_after
from holisafe_bench.providers.keys import api_key, scrub
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.records import Usage
from holisafe_bench.registry import ApiSettings

# Finish reasons that mean a safety system stopped the reply.
BLOCK_FINISH = frozenset(
    {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY", "RECITATION"}
)


def enum_name(value: Any) -> str:
    return str(getattr(value, "name", value) or "")


def generate_result(request_id: str, response: Any, latency: float = 0.0) -> ChatResult:
    """A generateContent reply (live or from a batch) as a result; malformed replies raise."""
    meta = response.usage_metadata
    usage = Usage(
        input_tokens=(getattr(meta, "prompt_token_count", 0) or 0) if meta else 0,
        output_tokens=(getattr(meta, "candidates_token_count", 0) or 0) if meta else 0,
    )
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        return ChatResult(
            id=request_id,
            outcome="content_filter",
            usage=usage,
            finish_reason=f"prompt_blocked:{enum_name(feedback.block_reason)}",
            latency_s=latency,
        )
    if not response.candidates:
        raise ProviderCallError("reply without candidates", retryable=False)
    candidate = response.candidates[0]
    finish = enum_name(candidate.finish_reason)
    if finish in BLOCK_FINISH:
        return ChatResult(
            id=request_id,
            outcome="content_filter",
            finish_reason=finish,
            usage=usage,
            latency_s=latency,
        )
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    text = "".join(p.text for p in parts if getattr(p, "text", None))
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


class GeminiProvider(ApiProvider):
    provider_name = "gemini"

    def __init__(self, model_id: str, api: ApiSettings) -> None:
        self.model_id = model_id
        self.api = api
        self._key = api_key(
            (api.api_key_env or "", "GEMINI_API_KEY", "GOOGLE_API_KEY"),
            what=f"gemini model {model_id!r}",
        )
        self._clients = ClientPool(self._make_client, lambda c: c.aio.aclose(), api.concurrency)

    def describe(self) -> dict[str, Any]:
        return {"provider": self.provider_name, "model": self.model_id}

    def _make_client(self) -> Any:
        from google import genai
        from google.genai import types

        options: dict[str, Any] = {
            "timeout": int(self.api.timeout_s * 1000),
            "retry_options": types.HttpRetryOptions(attempts=1),  # the shared layer retries
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
            max_output_tokens=request.max_tokens,
            system_instruction=request.system,
        )
        return [types.Content(role="user", parts=parts)], config

    async def call_once(self, request: ChatRequest) -> ChatResult:
        from google.genai import errors

        contents, config = self.contents_and_config(request)
        started = time.monotonic()
        try:
            response = await self._clients.next().aio.models.generate_content(
                model=self.model_id, contents=contents, config=config
            )
        except errors.APIError as exc:
            headers = dict(getattr(getattr(exc, "response", None), "headers", {}) or {})
            raise ProviderCallError(
                scrub(f"{type(exc).__name__}: {exc}", self._key),
                status=getattr(exc, "code", None),
                retry_after=parse_retry_after(headers),
            ) from None
        except Exception as exc:
            name = type(exc).__name__
            kind = "timeout" if "Timeout" in name else "api_error"
            raise ProviderCallError(
                scrub(f"{name}: {exc}", self._key),
                kind=kind,
                retryable="Timeout" in name or "Connect" in name,
            ) from None
        return generate_result(request.id, response, time.monotonic() - started)

    async def aclose(self) -> None:
        await self._clients.aclose()
