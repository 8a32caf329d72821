"""The one retry policy (DESIGN.md): exponential backoff with jitter, Retry-After honoured,
bounded attempts and total time per request, no retry on 4xx other than 408/409/429. The
runner cuts each attempt at `attempt_seconds`, so the total time is a deadline, not a check
made between attempts."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.types import ChatRequest, ChatResult

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_total_seconds: float = 300.0
    initial_wait: float = 1.0
    max_wait: float = 60.0

    def _wait(self) -> Callable[[RetryCallState], float]:
        backoff = wait_exponential_jitter(initial=self.initial_wait, max=self.max_wait)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = getattr(exc, "retry_after", None)
            delay = max(backoff(state), hinted or 0.0)
            # Never sleep past the request's time budget.
            remaining = self.max_total_seconds - (time.monotonic() - state.start_time)
            return max(0.0, min(delay, remaining))

        return wait

    def attempt_seconds(self, since: float, attempt_timeout: float | None) -> float:
        """How long the next attempt may run: its own timeout, capped by what is left of the
        request's budget counted from `since`, so the last attempt cannot overrun it."""
        left = self.max_total_seconds - (time.monotonic() - since)
        return max(0.0, left if attempt_timeout is None else min(attempt_timeout, left))

    def _retrying(
        self, before_sleep: Callable[[RetryCallState], None] | None = None
    ) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_total_seconds),
            wait=self._wait(),
            retry=retry_if_exception(lambda e: isinstance(e, ProviderCallError) and e.retryable),
            before_sleep=before_sleep,
            reraise=True,
        )

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """A control call (a batch submission or poll) under the same policy; the last
        ProviderCallError is raised when the policy gives up."""
        async for state in self._retrying():
            with state:
                return await operation()
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def call(
        self,
        attempt: Callable[[ChatRequest], Awaitable[ChatResult]],
        request: ChatRequest,
        on_retry: Callable[[ProviderCallError], None] | None = None,
    ) -> ChatResult:
        """Run `attempt` until it succeeds or the policy gives up; always returns a result."""
        attempts = 0
        started = time.monotonic()

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if on_retry is not None and isinstance(exc, ProviderCallError):
                on_retry(exc)

        retrying = self._retrying(before_sleep)
        try:
            async for state in retrying:
                with state:
                    attempts += 1
                    result = await attempt(request)
            result.attempts = attempts
            if result.latency_s is None:
                result.latency_s = time.monotonic() - started
            return result
        except ProviderCallError as exc:
            return ChatResult(
                id=request.id,
                outcome="error",
                error=f"{exc} (after {attempts} attempt{'s' if attempts != 1 else ''})",
                attempts=attempts,
                error_kind=exc.kind,
                latency_s=time.monotonic() - started,
            )
