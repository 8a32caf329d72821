"""The shared driver for API providers: concurrency, rate limits, retries, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable

from holisafe_bench.providers.base import ApiProvider
from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.ratelimit import AdaptiveWindow, RateLimiter, estimate_tokens
from holisafe_bench.providers.retry import RetryPolicy
from holisafe_bench.providers.types import ChatRequest, ChatResult


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

    def on_retry(exc: ProviderCallError) -> None:
        if exc.status == 429:
            window.on_throttle()

    async def attempt(request: ChatRequest) -> ChatResult:
        if request_limiter is not None:
            await request_limiter.acquire(1)
        if token_limiter is not None:
            await token_limiter.acquire(estimate_tokens(request))
        try:
            return await provider.call_once(request)
        except (ProviderCallError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a provider bug must not end the run: record it
            raise ProviderCallError(f"{type(exc).__name__}: {exc}", retryable=False) from exc

    async def one(request: ChatRequest) -> ChatResult:
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
