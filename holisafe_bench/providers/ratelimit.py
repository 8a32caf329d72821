"""Request/token rate limits and a concurrency window that adapts to 429s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from holisafe_bench.providers.types import ChatRequest

_TOKENS_PER_IMAGE = 800  # a typical 1024x768 image after vendor resizing; an estimate


def estimate_tokens(request: ChatRequest) -> int:
    """A cheap upper-ish estimate for rate limiting and dry-run costs: ~4 characters per
    token, a fixed cost per image, plus the output budget."""
    text = len(request.text) + len(request.system or "")
    return text // 4 + 1 + _TOKENS_PER_IMAGE * len(request.images) + request.max_tokens


class RateLimiter:
    """Paces acquisitions evenly at `per_minute` units; a unit larger than the whole
    per-second budget still goes through, just later. `clock` and `sleep` are there for
    tests to drive it with a fake clock."""

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("rate must be positive")
        self._per_second = per_minute / 60.0
        self._clock = clock
        self._sleep = sleep
        self._next = clock()
        self._lock = asyncio.Lock()

    async def acquire(self, amount: float = 1.0) -> None:
        async with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + amount / self._per_second
        delay = start - self._clock()
        if delay > 0:
            await self._sleep(delay)


class AdaptiveWindow:
    """How many requests may be in flight: halves on a 429, grows back by one after a
    window's worth of successes (AIMD), never below 1 or above the configured maximum."""

    def __init__(self, maximum: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.maximum = max(1, maximum)
        self.limit = float(self.maximum)
        self.throttled = 0
        self._clock = clock
        self._last_cut = float("-inf")  # the first 429 always cuts, whatever the clock

    def on_throttle(self) -> None:
        self.throttled += 1
        now = self._clock()
        # One cut per burst of 429s: the requests already in flight report theirs together.
        if now - self._last_cut > 1.0:
            self.limit = max(1.0, self.limit / 2)
            self._last_cut = now

    def on_success(self) -> None:
        self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)

    @property
    def slots(self) -> int:
        return max(1, int(self.limit))
