"""OpenAI chat completions: OpenAI itself and any OpenAI-compatible server (`vllm serve`,
SGLang, LMDeploy) through `base_url`."""

from __future__ import annotations

import math
import time
from typing import Any

import orjson

from holisafe_bench import jsonio
from holisafe_bench.providers.base import ApiProvider
from holisafe_bench.providers.client_pool import ClientPool, shared_ssl_context
from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.images import data_url
from holisafe_bench.providers.keys import api_key
from holisafe_bench.providers.openai_direct import PATH, DirectPost, direct_post
from holisafe_bench.providers.sdk_errors import error_code, status_error, unexpected_error
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.records import Usage
from holisafe_bench.registry import OPENAI_FIXED_SAMPLING_PREFIXES, ApiSettings

BLOCK_CODES = ("content_policy_violation", "content_filter")


def completion_result(request_id: str, body: Any, latency: float = 0.0) -> ChatResult:
    """A chat completion body (decoded JSON, live or from a batch) as a result; a body that
    is not a usable completion raises, so it can never become response text."""
    try:
        choice = body["choices"][0]
        usage_body = body.get("usage") or {}
        usage = Usage(
            input_tokens=int(usage_body.get("prompt_tokens") or 0),
            output_tokens=int(usage_body.get("completion_tokens") or 0),
        )
        finish = choice.get("finish_reason")
        message = choice.get("message") or {}
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        raise ProviderCallError("reply is not a chat completion", retryable=False) from None
    if finish == "content_filter":
        return ChatResult(
            id=request_id,
            outcome="content_filter",
            finish_reason="content_filter",
            usage=usage,
            latency_s=latency,
        )
    # A model-side refusal message is the model's own answer: kept as text, so judges see it.
    text = message.get("content")
    if text is None:
        text = message.get("refusal")
    if not isinstance(text, str):
        raise ProviderCallError("reply without content", retryable=False)
    return ChatResult(
        id=request_id,
        outcome="ok",
        text=text,
        finish_reason=finish,
        usage=usage,
        latency_s=latency,
        first_token_logprobs=first_token_logprobs(choice),
    )


def first_token_logprobs(choice: Any) -> dict[str, float] | None:
    """The first generated token's alternatives in a choice's `logprobs` (asked for with
    `top_logprobs`): {token text: log-probability}, the chosen token included; None when
    the reply has none or they are not in OpenAI's shape (a guard then has no score, the
    answer itself still counts). Distinct tokens with the same text add up, as in vLLM."""
    try:
        first = choice["logprobs"]["content"][0]
        alternatives: dict[str, float] = {}
        for entry in first.get("top_logprobs") or []:
            token, logprob = entry["token"], float(entry["logprob"])
            if token in alternatives:
                logprob = _log_add(alternatives[token], logprob)
            alternatives[token] = logprob
        # The chosen token, when top_logprobs left it out.
        alternatives.setdefault(first["token"], float(first["logprob"]))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        return None
    return alternatives


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow; -inf stays -inf."""
    high, low = max(a, b), min(a, b)
    if high == -math.inf:
        return high
    return high + math.log1p(math.exp(low - high))


def encode_body(payload: dict[str, Any]) -> bytes:
    """JSON bytes as the SDK would send them (compact, UTF-8); a NaN is refused as it
    refuses one, where orjson alone would write null."""
    for key in ("temperature", "top_p"):
        value = payload.get(key)
        if isinstance(value, float) and value != value:
            raise ProviderCallError(f"{key} is NaN", retryable=False)
    return orjson.dumps(payload)


def decode_reply(raw: bytes) -> Any:
    """The reply's JSON: orjson, or the stdlib for what only it accepts (NaN literals, lone
    surrogate escapes), so no reply the SDK's parser took is refused."""
    try:
        return jsonio.loads(raw)
    except ValueError:
        raise ProviderCallError("reply is not JSON", retryable=False) from None


def _reasoning_model(model_id: str) -> bool:
    # These take max_completion_tokens and reject a temperature other than the default.
    # registry.py refuses a top_p for them when the model file is loaded.
    return model_id.startswith(OPENAI_FIXED_SAMPLING_PREFIXES)


class OpenAIProvider(ApiProvider):
    provider_name = "openai"
    api: ApiSettings

    def __init__(self, model_id: str, api: ApiSettings) -> None:
        super().__init__(model_id, api)
        # A self-hosted OpenAI-compatible server usually needs no key.
        self._key = api_key(
            (api.api_key_env or "", "OPENAI_API_KEY"),
            what=f"openai model {model_id!r}",
            required=api.base_url is None,
        )
        self._clients = ClientPool(self.make_client, lambda c: c.close(), api.concurrency)
        self._direct: dict[int, DirectPost | None] = {}

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.provider_name,
            "model": self.model_id,
            "base_url": self.api.base_url,
        }

    def make_client(self) -> Any:
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        return AsyncOpenAI(
            api_key=self._key or "not-needed",
            base_url=self.api.base_url,
            max_retries=0,  # the shared layer retries
            timeout=self.api.timeout_s,
            http_client=DefaultAsyncHttpxClient(verify=shared_ssl_context()),
        )

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": data_url(image)}} for image in request.images
        ]
        content.append({"type": "text", "text": request.text})
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": content})
        payload: dict[str, Any] = {"model": self.model_id, "messages": messages}
        if _reasoning_model(self.model_id):
            payload["max_completion_tokens"] = request.max_tokens
        else:
            payload["max_tokens"] = request.max_tokens
            payload["temperature"] = request.temperature
            if request.top_p is not None:
                payload["top_p"] = request.top_p
            if request.logprobs is not None:  # guards: the first token's alternatives
                payload["logprobs"] = True
                payload["top_logprobs"] = request.logprobs
        return payload

    def call_error(self, exc: Exception) -> ProviderCallError | None:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return status_error(exc, exc.status_code, exc.response.headers, self._key)
        if isinstance(exc, openai.OpenAIError):
            # Transport failures retry; a body the SDK could not parse would fail again.
            return unexpected_error(exc, self._key)
        return None

    async def call_once(self, request: ChatRequest) -> ChatResult:
        import openai

        started = time.monotonic()
        try:
            # The SDK's client, auth and errors without its typed parameter transformer and
            # reply models (both cost more CPU than the request itself); the body goes
            # pre-encoded by orjson (~100x the stdlib on a 400 KB base64 body). See _post.
            raw = await self._post(self.payload(request))
        except openai.BadRequestError as exc:
            if error_code(exc) in BLOCK_CODES:
                return ChatResult(
                    id=request.id, outcome="content_filter", finish_reason=error_code(exc)
                )
            raise self.call_error(exc) from None
        except openai.OpenAIError as exc:
            raise self.call_error(exc) from None
        return completion_result(request.id, decode_reply(raw), time.monotonic() - started)

    async def warm_up(self) -> None:
        for client in self._clients.open():
            self._direct_for(client)

    def _direct_for(self, client: Any) -> DirectPost | None:
        key = id(client)
        if key not in self._direct:  # once per client (the pool keeps its clients alive)
            self._direct[key] = direct_post(client)
        return self._direct[key]

    async def _post(self, payload: dict[str, Any]) -> bytes:
        client = self._clients.next()
        direct = self._direct_for(client)
        if direct is None:  # the SDK's generic POST, which encodes the payload itself
            return await client.post(PATH, body=payload, cast_to=bytes)
        return await direct.post(encode_body(payload))

    async def aclose(self) -> None:
        self._direct.clear()
        await self._clients.aclose()
