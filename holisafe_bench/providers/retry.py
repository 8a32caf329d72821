"""The one retry policy (DESIGN.md): exponential backoff with jitter, Retry-After honoured,
bounded attempts and total time per request, no retry on 4xx other than 408/409/429. The
runner cuts each attempt at `attempt_seconds`, so the total time is a deadline, not a check
made between attempts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, wait_exponential_jitter

from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.types import ChatRequest, ChatResult

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_total_seconds: float = 300.0
    initial_wait: float = 1.0
    max_wait: float = 60.0

    def retry_delay(self, exc: ProviderCallError, attempts: int, started: float) -> float | None:
        """Seconds to wait before the next attempt after `exc` ended attempt number
        `attempts` of a request begun at `started` (monotonic), or None to give up:
        not retryable, out of attempts, or out of time. The wait is the exponential
        backoff with jitter or the server's Retry-After, whichever is longer, and never
        runs past the request's time budget."""
        if not exc.retryable or attempts >= self.max_attempts:
            return None
        elapsed = time.monotonic() - started
        if elapsed >= self.max_total_seconds:
            return None
        delay = max(self._backoff(attempts), exc.retry_after or 0.0)
        return max(0.0, min(delay, self.max_total_seconds - elapsed))

    def _backoff(self, attempts: int) -> float:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
        state.attempt_number = attempts
        return wait_exponential_jitter(initial=self.initial_wait, max=self.max_wait)(state)

    def attempt_seconds(self, since: float, attempt_timeout: float | None) -> float:
        """How long the next attempt may run: its own timeout, capped by what is left of the
        request's budget counted from `since`, so the last attempt cannot overrun it."""
        left = self.max_total_seconds - (time.monotonic() - since)
        return max(0.0, left if attempt_timeout is None else min(attempt_timeout, left))

    async def run(
        self,
        operation: Callable[[], Awaitable[T]],
        on_retry: Callable[[ProviderCallError], None] | None = None,
    ) -> T:
        """`operation` until it succeeds or the policy gives up, when its last
        ProviderCallError is raised; `on_retry` hears of each error that is retried. A loop
        of its own rather than tenacity's AsyncRetrying, whose bookkeeping cost about a
        tenth of an API request's CPU; tenacity still draws the backoff."""
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                return await operation()
            except ProviderCallError as exc:
                delay = self.retry_delay(exc, attempts, started)
                if delay is None:
                    raise
                if on_retry is not None:
                    on_retry(exc)
            await asyncio.sleep(delay)

    async def call(
        self,
        attempt: Callable[[ChatRequest], Awaitable[ChatResult]],
        request: ChatRequest,
        on_retry: Callable[[ProviderCallError], None] | None = None,
    ) -> ChatResult:
        """Run `attempt` until it succeeds or the policy gives up; always returns a result."""
        attempts = 0
        started = time.monotonic()

        async def counted() -> ChatResult:
            nonlocal attempts
            attempts += 1
            return await attempt(request)

        try:
            result = await self.run(counted, on_retry)
        except ProviderCallError as exc:
            return ChatResult(
                id=request.id,
                outcome="error",
                error=f"{exc} (after {attempts} attempt{'s' if attempts != 1 else ''})",
                attempts=attempts,
                error_kind=exc.kind,
                latency_s=time.monotonic() - started,
            )
        result.attempts = attempts
        if result.latency_s is None:
            result.latency_s = time.monotonic() - started
        return result
