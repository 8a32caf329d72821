"""Worker processes by default only when needed (process_runner.send_all): with --processes
not given, a long run sends its first rounds from this process's event loop, measures the
loop's CPU share of a core, and hands the rest to worker processes only if that share
reached BUSY_SHARE (and no 429 was seen); else every request stays in this process. Each
request gets exactly one result either way; --processes N is always obeyed as given."""

from __future__ import annotations

import time

import pytest

from holisafe_bench.providers import process_runner
from holisafe_bench.providers.factory import create_chat_provider
from holisafe_bench.providers.process_runner import PROBE_ROUNDS, _LoadProbe, send_all
from holisafe_bench.providers.ratelimit import AdaptiveWindow
from holisafe_bench.providers.types import ChatRequest
from holisafe_bench.registry import ApiSettings
from holisafe_bench.testing.fake_vendors import openai_server

KEY = "sk-probe-SECRET-0123456789"
CONCURRENCY = 4


class Ticks:
    """A clock that advances by `step` each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _requests(n: int) -> list[ChatRequest]:
    return [ChatRequest(id=str(i), text=f"q{i}", max_tokens=8) for i in range(n)]


@pytest.mark.parametrize(
    "cpu_step,throttled,busy", [(0.9, 0, True), (0.3, 0, False), (0.9, 1, False)]
)
def test_the_probe_measures_the_cpu_share_between_its_marks(cpu_step, throttled, busy):
    window = AdaptiveWindow(8)
    window.throttled = throttled
    probe = _LoadProbe(3, 10, window, clock=Ticks(1.0), cpu=Ticks(cpu_step))
    pending = iter(_requests(30))
    passed = [r.id for r in probe.gate(pending)]
    assert probe.share == pytest.approx(cpu_step)
    assert probe.busy is busy
    if busy:  # stopped right after `end`, before pulling the next: the rest stay pending
        assert passed == [str(i) for i in range(10)]
        assert next(pending).id == "10"
    else:
        assert passed == [str(i) for i in range(30)]


def test_a_short_run_measures_nothing_and_is_never_busy():
    probe = _LoadProbe(3, 10, AdaptiveWindow(8))
    assert [r.id for r in probe.gate(iter(_requests(5)))] == ["0", "1", "2", "3", "4"]
    assert probe.share is None and probe.busy is False


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    fake = openai_server(reply=lambda text: f"echo {text}", latency=0.01).start()
    yield fake
    fake.stop()


@pytest.fixture
def workers(monkeypatch):
    """What each run_in_processes call was given: (processes, requests it pulled)."""
    calls: list[tuple[int, list[str]]] = []
    real = process_runner.run_in_processes

    def spy(recipe, requests, *, processes, **kwargs):
        pulled: list[str] = []
        calls.append((processes, pulled))

        def counted():
            for request in requests:
                pulled.append(request.id)
                yield request

        return real(recipe, counted(), processes=processes, **kwargs)

    monkeypatch.setattr(process_runner, "run_in_processes", spy)
    # As the real one: a count asked for is obeyed; by default, two.
    monkeypatch.setattr(process_runner, "worker_count", lambda requested, **k: requested or 2)
    return calls


def _send(server, n: int, processes: int | None) -> tuple[int, list]:
    provider = create_chat_provider(
        "openai", "m", api=ApiSettings(base_url=server.base_url + "/v1")
    )
    results: list = []
    used = send_all(
        provider,
        iter(_requests(n)),
        processes=processes,
        calls=n,
        concurrency=CONCURRENCY,
        on_result=results.append,
    )
    return used, results


def _exactly_once(results: list, n: int) -> None:
    assert sorted(int(r.id) for r in results) == list(range(n))
    assert all(r.outcome == "ok" and r.text == f"echo q{r.id}" for r in results)


def test_a_loop_that_keeps_up_sends_everything_itself(server, workers, monkeypatch):
    monkeypatch.setattr(process_runner, "BUSY_SHARE", 2.0)  # no loop uses two cores
    used, results = _send(server, 60, None)
    assert used == 0 and workers == []
    _exactly_once(results, 60)
    assert server.count() == 60


def test_a_cpu_bound_loop_hands_the_rest_to_worker_processes(server, workers, monkeypatch):
    monkeypatch.setattr(process_runner, "BUSY_SHARE", 0.0)  # any share counts as busy
    used, results = _send(server, 60, None)
    probed = PROBE_ROUNDS * CONCURRENCY
    assert used == 2
    assert [(processes, len(pulled)) for processes, pulled in workers] == [(2, 60 - probed)]
    assert workers[0][1] == [str(i) for i in range(probed, 60)], "the rest, in order"
    _exactly_once(results, 60)
    assert server.count() == 60


def test_processes_given_are_obeyed_without_a_probe(server, workers, monkeypatch):
    monkeypatch.setattr(process_runner, "BUSY_SHARE", 0.0)
    used, results = _send(server, 60, 1)  # one: never workers, however busy
    assert used == 0 and workers == []
    _exactly_once(results, 60)
    used, results = _send(server, 30, 2)  # two: workers from the first request
    assert used == 2 and [(p, len(pulled)) for p, pulled in workers] == [(2, 30)]
    _exactly_once(results, 30)


def test_demanded_cpu_counts_the_cpu_this_thread_ran():
    from holisafe_bench.providers.process_runner import demanded_cpu

    before_demand, before_cpu = demanded_cpu(), time.thread_time()
    total = 0
    while time.thread_time() - before_cpu < 0.05:  # burn 50 ms of this thread's CPU
        total += sum(range(1000))
    ran = time.thread_time() - before_cpu
    assert demanded_cpu() - before_demand >= ran * 0.9  # plus any wait for a core
