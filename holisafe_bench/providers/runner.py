"""The shared driver for API providers: concurrency, rate limits, retries, once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from holisafe_bench.providers.base import ApiProvider
from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.keys import scrub_known
from holisafe_bench.providers.ratelimit import AdaptiveWindow, RateLimiter, estimate_tokens
from holisafe_bench.providers.retry import RetryPolicy
from holisafe_bench.providers.sdk_errors import unexpected_error
from holisafe_bench.providers.types import ChatRequest, ChatResult


def attempt_timeout(provider: ApiProvider) -> float | None:
    """The provider's `timeout_s` (none for a test double without settings). The SDKs apply
    it to each read, so a server trickling a byte at a time never trips it: the runner
    enforces it per attempt."""
    return provider.api.timeout_s if provider.api is not None else None


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


class _Sender:
    """One request through the rate limits and the retry policy to its one result, with
    the concurrency window told of every 429 and every success."""

    def __init__(
        self,
        provider: ApiProvider,
        retry: RetryPolicy,
        window: AdaptiveWindow,
        rpm: float | None,
        tpm: float | None,
    ) -> None:
        self.provider = provider
        self.retry = retry
        self.window = window
        self.request_limiter = RateLimiter(rpm) if rpm else None
        self.token_limiter = RateLimiter(tpm) if tpm else None
        self.timeout = attempt_timeout(provider)

    def _on_retry(self, exc: ProviderCallError) -> None:
        if exc.status == 429:
            self.window.on_throttle()

    async def _admitted(self, request: ChatRequest) -> None:
        if self.request_limiter is not None:
            await self.request_limiter.acquire(1)
        if self.token_limiter is not None:
            await self.token_limiter.acquire(estimate_tokens(request))

    async def send(self, request: ChatRequest) -> ChatResult:
        # The request's budget runs from its first send: waiting for the rate limiter
        # before it is queueing, not a slow server.
        first_sent: float | None = None

        async def attempt(request: ChatRequest) -> ChatResult:
            nonlocal first_sent
            await self._admitted(request)
            first_sent = first_sent or time.monotonic()
            seconds = self.retry.attempt_seconds(first_sent, self.timeout)
            return await call_within(self.provider, request, seconds)

        result = await self.retry.call(attempt, request, on_retry=self._on_retry)
        if result.outcome != "error":
            self.window.on_success()
        if result.text:  # a reply that echoes a request header must not store the key
            result.text = scrub_known(result.text)
        return result


def _puller(
    requests: Iterable[ChatRequest] | AsyncIterator[ChatRequest],
) -> Callable[[], Awaitable[ChatRequest | None]]:
    """The next request (None at the end), from a plain or an async iterator, pulled only
    when there is room for it."""
    if isinstance(requests, AsyncIterator):
        source = requests

        async def pull_async() -> ChatRequest | None:
            return await anext(source, None)

        return pull_async
    pending = iter(requests)

    async def pull() -> ChatRequest | None:
        return next(pending, None)

    return pull


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
    window = window or AdaptiveWindow(concurrency)
    # A failure here is met again by the first call, which records it per request.
    with contextlib.suppress(Exception):
        await provider.warm_up()
    sender = _Sender(provider, retry or RetryPolicy(), window, rpm, tpm)
    pull = _puller(requests)
    in_flight: set[asyncio.Task[ChatResult]] = set()
    exhausted = False
    try:
        while True:
            while not exhausted and len(in_flight) < window.slots:
                request = await pull()
                if request is None:
                    exhausted = True
                    break
                in_flight.add(asyncio.create_task(sender.send(request)))
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
