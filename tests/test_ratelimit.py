"""Rate limits and the adaptive concurrency window, by value: a fake clock where the limiter
or window is driven directly, the shared runner with a fake provider for the wiring."""

from __future__ import annotations

import asyncio
import time

import pytest

from holisafe_bench.providers.base import ApiProvider
from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.ratelimit import AdaptiveWindow, RateLimiter, estimate_tokens
from holisafe_bench.providers.retry import RetryPolicy
from holisafe_bench.providers.runner import run_api_requests
from holisafe_bench.providers.types import ChatRequest, ChatResult, ImageInput

START = 1000.0


class FakeClock:
    """A monotonic clock that moves only when slept on (or set by the test)."""

    def __init__(self, now: float = START, *, advance: bool = True) -> None:
        self.now = now
        self.advance = advance
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.advance:
            self.now += seconds


def _limiter(per_minute: float, clock: FakeClock) -> RateLimiter:
    return RateLimiter(per_minute, clock=clock, sleep=clock.sleep)


def _admission_times(limiter: RateLimiter, clock: FakeClock, amounts: list[float]) -> list[float]:
    """When each acquisition, made one after the other, was let through."""

    async def go() -> list[float]:
        times = []
        for amount in amounts:
            await limiter.acquire(amount)
            times.append(clock.now)
        return times

    return asyncio.run(go())


def test_a_limiter_lets_n_requests_per_minute_through_and_delays_the_next():
    clock = FakeClock()
    limiter = _limiter(120, clock)  # 2 a second, paced evenly
    times = _admission_times(limiter, clock, [1] * 121)
    assert times[:4] == [START, START + 0.5, START + 1.0, START + 1.5]
    in_first_minute = [t for t in times if t < START + 60]
    assert len(in_first_minute) == 120
    assert times[120] == START + 60.0  # the 121st waits for the next minute
    assert clock.sleeps == [0.5] * 120  # the first went at once, each other waited 0.5 s


def test_concurrent_acquisitions_are_spaced_by_one_interval_each():
    clock = FakeClock(advance=False)  # every task asks at the same instant
    limiter = _limiter(60, clock)  # 1 a second

    async def go() -> None:
        await asyncio.gather(*(limiter.acquire() for _ in range(4)))

    asyncio.run(go())
    assert sorted(clock.sleeps) == [1.0, 2.0, 3.0]


def test_idle_time_is_not_saved_up_for_a_burst():
    clock = FakeClock()
    limiter = _limiter(60, clock)
    _admission_times(limiter, clock, [1, 1])
    clock.now += 30  # a long pause
    times = _admission_times(limiter, clock, [1, 1, 1])
    assert times == [START + 31, START + 32, START + 33]


def test_a_token_limit_delays_the_next_request_by_its_tokens():
    clock = FakeClock()
    limiter = _limiter(6000, clock)  # tokens per minute: 100 a second
    request = ChatRequest(id="a", text="x" * 400, max_tokens=99)
    tokens = estimate_tokens(request)
    assert tokens == 400 // 4 + 1 + 99 == 200
    times = _admission_times(limiter, clock, [tokens, tokens, tokens])
    assert times == [START, START + 2.0, START + 4.0]


def test_an_amount_larger_than_the_budget_passes_then_holds_the_next_back():
    clock = FakeClock()
    limiter = _limiter(60, clock)  # 1 unit a second
    times = _admission_times(limiter, clock, [300, 1])
    assert times == [START, START + 300.0]


def test_estimate_tokens_counts_text_system_images_and_the_output_budget():
    image = ImageInput(data=b"\xff\xd8 not decoded")
    request = ChatRequest(
        id="a", text="x" * 400, system="y" * 40, images=(image, image), max_tokens=512
    )
    assert estimate_tokens(request) == 440 // 4 + 1 + 2 * 800 + 512 == 2223


def test_a_rate_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0)


def test_the_window_halves_once_per_burst_of_429s_and_never_drops_below_one():
    clock = FakeClock(0.0)
    window = AdaptiveWindow(16, clock=clock)
    assert (window.limit, window.slots) == (16.0, 16)
    window.on_throttle()
    assert window.limit == 8.0
    clock.now = 0.5  # the same burst: the requests in flight report theirs together
    window.on_throttle()
    assert (window.limit, window.throttled) == (8.0, 2)
    limits = []
    for moment in (1.6, 3.0, 4.5, 6.0, 7.5):
        clock.now = moment
        window.on_throttle()
        limits.append(window.limit)
    assert limits == [4.0, 2.0, 1.0, 1.0, 1.0]
    assert window.slots == 1 and window.throttled == 7


def test_the_window_grows_back_by_one_per_window_of_successes_up_to_the_maximum():
    clock = FakeClock(0.0)
    window = AdaptiveWindow(8, clock=clock)
    window.on_throttle()
    assert window.limit == 4.0
    window.on_success()
    assert window.limit == 4.25
    for _ in range(3):
        window.on_success()
    # Four successes at a window of about 4: grown by about one, not yet a fifth slot.
    assert window.limit == pytest.approx(4.9206, abs=1e-4)
    assert window.slots == 4
    window.on_success()
    assert window.slots == 5
    for _ in range(100):
        window.on_success()
    assert (window.limit, window.slots) == (8.0, 8)


def test_a_window_of_zero_still_lets_one_request_through():
    window = AdaptiveWindow(0)
    assert (window.maximum, window.slots) == (1, 1)


class Scripted(ApiProvider):
    """Fails each request's first attempt with the given status (None: never), then
    answers; counts the calls in flight."""

    provider_name = "scripted"

    def __init__(self, first_status: int | None = None, delay: float = 0.0) -> None:
        self.first_status = first_status
        self.delay = delay
        self.failed: set[str] = set()
        self.in_flight = 0
        self.most_in_flight = 0
        self.sent_at: list[float] = []

    async def call_once(self, request: ChatRequest) -> ChatResult:
        self.sent_at.append(time.monotonic())
        if self.first_status is not None and request.id not in self.failed:
            self.failed.add(request.id)
            raise ProviderCallError(f"HTTP {self.first_status}", status=self.first_status)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        return ChatResult(id=request.id, outcome="ok", text="fine")


def _run(provider: Scripted, count: int, **kwargs) -> list[ChatResult]:
    results: list[ChatResult] = []
    requests = [ChatRequest(id=str(i), text="", max_tokens=99) for i in range(count)]
    no_wait = RetryPolicy(max_wait=0.0)  # retries at once: the window is what is tested
    asyncio.run(
        run_api_requests(provider, requests, retry=no_wait, on_result=results.append, **kwargs)
    )
    return results


def test_the_runner_cuts_the_window_on_429s_only():
    clock = FakeClock(0.0)  # every 429 of the run falls in one burst
    window = AdaptiveWindow(8, clock=clock)
    results = _run(Scripted(first_status=429), 3, concurrency=8, window=window)
    assert [r.outcome for r in results] == ["ok"] * 3
    assert all(r.attempts == 2 for r in results)
    assert window.throttled == 3
    # One cut to 4, then three successes: 4 -> 4.25 -> 4.4853 -> 4.7082.
    assert window.limit == pytest.approx(4.7082, abs=1e-4)

    server_errors = AdaptiveWindow(8, clock=clock)
    _run(Scripted(first_status=500), 3, concurrency=8, window=server_errors)
    assert (server_errors.throttled, server_errors.limit) == (0, 8.0)


def test_the_runner_keeps_no_more_requests_in_flight_than_the_window_allows():
    for concurrency in (1, 4):
        provider = Scripted(delay=0.02)
        results = _run(provider, 12, concurrency=concurrency)
        assert len(results) == 12
        assert provider.most_in_flight == concurrency


@pytest.mark.parametrize(
    ("limits", "interval"),
    [({"rpm": 1200}, 0.05), ({"tpm": 60_000}, 0.1)],  # 20 requests/s; 1,000 tokens/s of 100
    ids=["requests", "tokens"],
)
def test_the_runner_paces_sends_by_the_request_and_token_limits(limits, interval):
    provider = Scripted()
    _run(provider, 4, concurrency=4, **limits)
    offsets = [t - provider.sent_at[0] for t in provider.sent_at]
    for k, offset in enumerate(offsets):
        assert offset >= k * interval - 0.005  # never early (a loaded machine may be late)
