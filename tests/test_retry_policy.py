"""The retry policy's rules, on its own: which errors are retried, how many times, how long it
waits (backoff, Retry-After, the request's time budget), and what it reports."""

from __future__ import annotations

import asyncio
import time

import pytest

from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.retry import RetryPolicy
from holisafe_bench.providers.types import ChatRequest, ChatResult

QUICK = RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=0.002, max_total_seconds=10)


def _failing(errors: list[Exception], calls: list[float]):
    """An attempt that raises the given errors in turn, then answers."""

    async def attempt(request: ChatRequest) -> ChatResult:
        calls.append(time.monotonic())
        if errors:
            raise errors.pop(0)
        return ChatResult(id=request.id, outcome="ok", text="fine")

    return attempt


def _call(policy: RetryPolicy, errors: list[Exception]) -> tuple[ChatResult, list, list]:
    calls: list[float] = []
    retried: list[ProviderCallError] = []
    result = asyncio.run(
        policy.call(_failing(errors, calls), ChatRequest(id="1", text="q"), retried.append)
    )
    return result, calls, retried


def test_retryable_errors_are_retried_until_an_answer():
    errors = [ProviderCallError("busy", status=503), ProviderCallError("slow", status=429)]
    result, calls, retried = _call(QUICK, errors)
    assert (result.outcome, result.text, result.attempts) == ("ok", "fine", 3)
    assert [e.status for e in retried] == [503, 429]
    assert result.latency_s is not None and result.latency_s >= 0


def test_attempts_are_bounded_and_the_last_reason_is_kept():
    errors = [ProviderCallError(f"busy {n}", status=503) for n in range(10)]
    result, calls, retried = _call(QUICK, errors)
    assert result.outcome == "error"
    assert result.error == "busy 3 (after 4 attempts)"
    assert (result.attempts, len(calls), len(retried)) == (4, 4, 3)
    assert result.error_kind == "api_error"


def test_an_error_that_is_not_retryable_ends_at_once():
    result, calls, retried = _call(QUICK, [ProviderCallError("bad request", status=400)])
    assert (result.outcome, result.error, len(calls), retried) == (
        "error",
        "bad request (after 1 attempt)",
        1,
        [],
    )


def test_an_exception_that_is_not_a_provider_error_propagates():
    with pytest.raises(KeyError):
        _call(QUICK, [KeyError("a bug, not a provider failure")])


def test_retry_after_is_honoured_and_the_budget_caps_the_wait():
    policy = RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=0.002, max_total_seconds=10)
    started = time.monotonic()
    hinted = ProviderCallError("slow down", status=429, retry_after=2.5)
    assert policy.retry_delay(hinted, 1, started) == pytest.approx(2.5, abs=0.01)
    # 9.5 s of a 10 s budget spent: the wait stops at the deadline, not at Retry-After.
    assert policy.retry_delay(hinted, 1, started - 9.5) == pytest.approx(0.5, abs=0.01)
    assert policy.retry_delay(hinted, 1, started - 10.0) is None  # out of time
    assert policy.retry_delay(hinted, 3, started) is None  # out of attempts


def test_backoff_grows_exponentially_with_jitter_up_to_its_cap():
    policy = RetryPolicy(max_attempts=10, initial_wait=1.0, max_wait=5.0, max_total_seconds=100)
    busy = ProviderCallError("busy", status=503)
    now = time.monotonic()
    for attempts, low in ((1, 1.0), (2, 2.0), (3, 4.0)):
        waits = [policy.retry_delay(busy, attempts, now) for _ in range(50)]
        assert all(low <= w <= min(low + 1.0, 5.0) for w in waits), (attempts, waits)
        assert len(set(waits)) > 1  # jitter
    assert policy.retry_delay(busy, 6, now) == pytest.approx(5.0)  # capped


def test_run_raises_the_last_error_when_it_gives_up():
    policy = RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=0.001)
    calls = []

    async def operation() -> None:
        calls.append(1)
        raise ProviderCallError(f"down {len(calls)}", status=500)

    with pytest.raises(ProviderCallError, match="down 2"):
        asyncio.run(policy.run(operation))
    assert len(calls) == 2
