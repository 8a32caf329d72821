"""The shared driver for API providers: concurrency, rate limits, retries, once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable

from holisafe_bench.providers.base import ApiProvider
from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.ratelimit import AdaptiveWindow, RateLimiter, estimate_tokens
from holisafe_bench.providers.retry import RetryPolicy
from holisafe_bench.providers.sdk_errors import unexpected_error
from holisafe_bench.providers.types import ChatRequest, ChatResult


def attempt_timeout(provider: ApiProvider) -> float | None:
    """The provider's `timeout_s`, if it declares one. The SDKs apply it to each read, so a
    server trickling a byte at a time never trips it: the runner enforces it per attempt."""
    return getattr(getattr(provider, "api", None), "timeout_s", None)


async def call_within(provider: ApiProvider, request: ChatRequest, seconds: float) -> ChatResult:
    """One attempt, cancelled after `seconds` in all; every failure as a ProviderCallError."""
    try:
        async with asyncio.timeout(seconds):
            return await provider.call_once(request)
    except (ProviderCallError, asyncio.CancelledError):
        raise
    except TimeoutError:
        raise ProviderCallError(
            f"timeout: no complete reply within {seconds:.1f} s", kind="timeout"
        ) from None
    except Exception as exc:  # a provider bug must not end the run: record it
        raise unexpected_error(exc, None) from exc


async def run_api_requests(
    provider: ApiProvider,
    requests: Iterable[ChatRequest] | AsyncIterator[ChatRequest],
    *,
    concurrency: int,
    rpm: float | None = None,
    tpm: float | None = None,
    retry: RetryPolicy | None = None,
    on_result: Callable[[ChatResult], None],
    window: AdaptiveWindow | None = None,
) -> AdaptiveWindow:
    """Send every request; `on_result` gets exactly one result per request, as soon as it is
    known. Requests (an iterable, or an async iterator such as a worker's queue) are pulled
    lazily, so a long iterator is never held in memory. Returns
    the concurrency window (its `throttled` count says how many 429s were seen)."""
    retry = retry or RetryPolicy()
    window = window or AdaptiveWindow(concurrency)
    request_limiter = RateLimiter(rpm) if rpm else None
    token_limiter = RateLimiter(tpm) if tpm else None
    timeout = attempt_timeout(provider)

    def on_retry(exc: ProviderCallError) -> None:
        if exc.status == 429:
            window.on_throttle()

    async def admitted(request: ChatRequest) -> None:
        if request_limiter is not None:
            await request_limiter.acquire(1)
        if token_limiter is not None:
            await token_limiter.acquire(estimate_tokens(request))

    async def one(request: ChatRequest) -> ChatResult:
        # The request's budget runs from its first send: waiting for the rate limiter
        # before it is queueing, not a slow server.
        first_sent: float | None = None

        async def attempt(request: ChatRequest) -> ChatResult:
            nonlocal first_sent
            await admitted(request)
            first_sent = first_sent or time.monotonic()
            return await call_within(provider, request, retry.attempt_seconds(first_sent, timeout))

        result = await retry.call(attempt, request, on_retry=on_retry)
        if result.outcome != "error":
            window.on_success()
        return result

    if isinstance(requests, AsyncIterator):
        source = requests

        async def pull() -> ChatRequest | None:
            return await anext(source, None)
    else:
        pending = iter(requests)

        async def pull() -> ChatRequest | None:
            return next(pending, None)

    in_flight: set[asyncio.Task[ChatResult]] = set()
    exhausted = False
    try:
        while True:
            while not exhausted and len(in_flight) < window.slots:
                request = await pull()
                if request is None:
                    exhausted = True
                    break
                in_flight.add(asyncio.create_task(one(request)))
            if not in_flight:
                break
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                on_result(task.result())
    finally:
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
    return window
