"""Sending a stage's API requests: `send_all` runs them in this process's event loop, or
spread over several worker processes (`--processes N`; by default, only once this
process's loop is found to be CPU-bound).

The official SDKs spend 1.5-5 ms of CPU on each request (request building, HTTP
machinery, typed parsing; more with large images and on a slow machine). At concurrency 64
and 200 ms latency one process needs about 320 requests per second, which can saturate one
core; at the seconds real APIs take, it seldom does. Hence the default: measure, then
spread only if needed (`send_all`). Each worker here runs its own event loop and
provider, with the shared runner (retries, adaptive concurrency, rate limits), over its
share of the concurrency and rate limits; workers pull requests from one bounded queue (so
memory stays flat and fast workers take more), and every result comes back to this
process, which alone writes records. Workers end with this process, even when
it is SIGKILLed (`_die_with_parent`)."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.offload import usable_cpus
from holisafe_bench.providers.base import ApiProvider, ProviderRecipe
from holisafe_bench.providers.ratelimit import AdaptiveWindow
from holisafe_bench.providers.types import ChatRequest, ChatResult

# Concurrent calls per worker once workers are needed: at 3-5 ms of SDK CPU per call and
# sub-second latencies, 64 in flight saturate a core.
CALLS_PER_PROCESS = 32
# Requests per item on the workers' queue: each item costs a pickle, a pipe write and a
# thread hand-off at both ends, whatever its size.
REQUESTS_PER_PUT = 8
# Workers not asked for (--processes not given) start only if this process's own event
# loop is busy: over rounds 2 to PROBE_ROUNDS of requests (the first round opens the
# connections) its thread asked for BUSY_SHARE of a core or more (`demanded_cpu`). Below
# that one loop keeps up, and workers would only add their queue hops. Measured with
# benchmarks/api_throughput.py (fake API answering in 200 ms, concurrency 64): with 96x72
# images the loop asked for 0.32-0.47 of a core, and one process was as fast as two
# workers for 1.8 instead of 2.3 ms of CPU per request; with 1024x768 images it asked for
# 0.60-0.65, and one process took 21 s where two workers took 16 s.
PROBE_ROUNDS = 4
BUSY_SHARE = 0.5


def worker_count(requested: int | None, *, concurrency: int, calls: int) -> int:
    """`requested` processes, or by default one per CALLS_PER_PROCESS concurrent calls, no
    more than the CPUs this process may use; one for a run too short to repay the workers'
    start (fewer than four rounds of calls)."""
    if requested is not None:
        return requested
    if calls < 4 * concurrency:
        return 1
    return max(1, min(usable_cpus(), -(-concurrency // CALLS_PER_PROCESS)))


@dataclass(frozen=True)
class _Share:
    concurrency: int
    rpm: float | None
    tpm: float | None


# Linux prctl option: the signal this process gets when its parent dies.
_PR_SET_PDEATHSIG = 1
# How often the portable watchdog looks for a new parent.
_PARENT_CHECK_SECONDS = 0.5


def _set_parent_death_signal() -> None:
    """On Linux, have the kernel SIGKILL this worker the moment its parent dies (the signal
    follows the parent *thread* that started the worker: `run_in_processes` starts them from
    the thread that then waits for them). Elsewhere a no-op: the watchdog covers it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # no prctl: the watchdog alone ends the worker


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_CHECK_SECONDS)
    os._exit(1)  # orphaned: nobody records our results, and we hold paid calls


def _die_with_parent(parent_pid: int) -> None:
    """A worker must not outlive the process that records its results: orphans kept calling
    the API and blocked the resumed run. Kernel signal first, then a check that the parent
    did not die before it was set, then a watchdog thread (any POSIX system) for the rest."""
    _set_parent_death_signal()
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


class _Outbox:
    """A worker's results to the parent, sent together when several finish in one turn of
    the event loop (at the end of that turn, so nothing waits): one pickle and one pipe
    write for the lot instead of each."""

    def __init__(self, loop: asyncio.AbstractEventLoop, results: Any) -> None:
        self._loop = loop
        self._results = results
        self._batch: list[ChatResult] = []

    def add(self, result: ChatResult) -> None:
        if not self._batch:
            self._loop.call_soon(self.flush)
        self._batch.append(result)

    def flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._results.put(("results", batch))


def _worker(
    recipe: ProviderRecipe, share: _Share, requests: Any, results: Any, parent_pid: int
) -> None:
    _die_with_parent(parent_pid)
    from holisafe_bench.providers.factory import rebuild
    from holisafe_bench.providers.retry import RetryPolicy
    from holisafe_bench.providers.runner import run_api_requests

    async def main() -> None:
        loop = asyncio.get_running_loop()
        outbox = _Outbox(loop, results)

        async def pulled():
            while (batch := await loop.run_in_executor(None, requests.get)) is not None:
                for request in batch:
                    yield request

        provider = rebuild(recipe)
        try:
            window = await run_api_requests(
                provider,
                pulled(),
                concurrency=share.concurrency,
                rpm=share.rpm,
                tpm=share.tpm,
                retry=RetryPolicy(),
                on_result=outbox.add,
            )
            outbox.flush()
            # Every result is sent: the parent need not wait for the clients to close.
            results.put(("done", window.throttled))
        finally:
            outbox.flush()
            await provider.aclose()

    try:
        asyncio.run(main())
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        results.put(("failed", f"{type(exc).__name__}: {exc}"))


def _prepare_for_fork(provider: str) -> None:
    """Import the provider and its SDK (the factory's table says which) and build the shared
    TLS context once here, for every worker to inherit instead of each paying for them while
    its first calls wait."""
    from holisafe_bench.providers import runner  # noqa: F401 - imported for the workers
    from holisafe_bench.providers.client_pool import shared_ssl_context
    from holisafe_bench.providers.factory import prepare_workers

    prepare_workers(provider)
    shared_ssl_context()


def _start_method() -> str:
    """fork when this process runs one thread (workers start at once, with the SDKs already
    imported); spawn otherwise, since forking a threaded process can copy a held lock."""
    return "fork" if threading.active_count() == 1 else "spawn"


class _Feeder:
    """Puts the requests on the workers' queue from a thread (waiting for room, so memory
    stays flat), then one end-of-work mark per worker; gives up once told to stop."""

    def __init__(self, requests: Iterable[ChatRequest], request_q: Any, workers: int) -> None:
        self._requests = requests
        self._queue = request_q
        self._workers = workers
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._feed, name="holisafe-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def raise_error(self) -> None:
        """Re-raise, in the caller's thread, what reading the requests raised."""
        if self._errors:
            raise self._errors[0]

    def _put(self, item: list[ChatRequest] | None) -> bool:
        """Queue an item, waiting for room; False once the run is stopping."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _feed(self) -> None:
        # Requests go in batches of up to REQUESTS_PER_PUT (one pickle and pipe write each),
        # or at once while the workers have nothing queued, so none waits for a batch.
        batch: list[ChatRequest] = []
        try:
            for request in self._requests:
                batch.append(request)
                if len(batch) >= REQUESTS_PER_PUT or self._queue.empty():
                    if not self._put(batch):
                        batch = []  # stopping: nobody will send them
                        break
                    batch = []
        except BaseException as exc:  # noqa: BLE001 - re-raised in the parent thread
            self._errors.append(exc)
        finally:
            if batch:  # what was read before the end (or an error) is still sent
                self._put(batch)
            for _ in range(self._workers):  # unless we are stopping
                self._put(None)


def _collect(workers: list[Any], result_q: Any, on_result: Callable[[ChatResult], None]) -> int:
    """Hand every result to `on_result` until each worker is done; the 429s they saw."""
    finished, throttled = 0, 0
    while finished < len(workers):
        try:
            kind, payload = result_q.get(timeout=1.0)
        except queue.Empty:
            dead = [w for w in workers if w.exitcode not in (None, 0)]
            if dead:
                raise HolisafeError(
                    f"an API worker process died (exit code {dead[0].exitcode}); "
                    "re-run to redo the requests it held"
                ) from None
            continue
        if kind == "results":
            for result in payload:
                on_result(result)
        elif kind == "done":
            finished += 1
            throttled += payload
        else:
            raise HolisafeError(f"an API worker process failed: {payload}")
    return throttled


def run_in_processes(
    recipe: ProviderRecipe,
    requests: Iterable[ChatRequest],
    *,
    processes: int,
    concurrency: int,
    rpm: float | None = None,
    tpm: float | None = None,
    on_result: Callable[[ChatResult], None],
) -> int:
    """Like `run_api_requests`, over `processes` workers; returns the number of 429s seen.
    `requests` is consumed lazily in a feeder thread; `on_result` runs in this thread."""
    method = _start_method()
    if method == "fork":
        _prepare_for_fork(recipe.provider)
    ctx = get_context(method)
    share = _Share(
        max(1, concurrency // processes),
        rpm / processes if rpm else None,
        tpm / processes if tpm else None,
    )
    # As many requests queued ahead as before batching: about twice the concurrency.
    request_q = ctx.Queue(maxsize=max(4, 2 * concurrency // REQUESTS_PER_PUT))
    result_q = ctx.Queue()
    workers = [
        ctx.Process(
            target=_worker, args=(recipe, share, request_q, result_q, os.getpid()), daemon=True
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    feeder = _Feeder(requests, request_q, len(workers))
    feeder.start()
    try:
        throttled = _collect(workers, result_q, on_result)
    except BaseException:
        # Nobody will record what the workers still have queued or in flight: stop them
        # now rather than pay for those calls (a resumed run redoes them).
        for worker in workers:
            worker.terminate()
        raise
    finally:
        feeder.stop()
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.terminate()
    feeder.raise_error()
    return throttled


def demanded_cpu() -> float:
    """Seconds this thread ran plus seconds it waited for a core (Linux's schedstat): the
    CPU it asked for, which a loop starved by other processes gets only part of. Where the
    kernel does not say, the CPU this process got."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as fh:
            ran, waited = fh.read().split()[:2]
        return (int(ran) + int(waited)) / 1e9
    except (OSError, ValueError):
        return time.process_time()


class _LoadProbe:
    """Passes requests on and measures the share of one core the event loop's thread asked
    for (`demanded_cpu`) while it sends them, from request `start` to request `end`. If the
    share reached BUSY_SHARE and no 429 was seen (then the API, not this process, sets the
    pace), it stops before the request after `end`, so the rest can go to worker
    processes."""

    def __init__(
        self,
        start: int,
        end: int,
        window: AdaptiveWindow,
        *,
        clock: Callable[[], float] = time.perf_counter,
        cpu: Callable[[], float] = demanded_cpu,
    ) -> None:
        self.start, self.end, self.window = start, end, window
        self._clock, self._cpu = clock, cpu
        self._mark = (0.0, 0.0)
        self.share: float | None = None  # measured once `end` requests have gone

    @property
    def busy(self) -> bool:
        return self.share is not None and self.share >= BUSY_SHARE and not self.window.throttled

    def gate(self, requests: Iterator[ChatRequest]) -> Iterator[ChatRequest]:
        for n, request in enumerate(requests, 1):
            if n == self.start:
                self._mark = (self._clock(), self._cpu())
            yield request
            if n == self.end:
                wall = self._clock() - self._mark[0]
                self.share = (self._cpu() - self._mark[1]) / wall if wall > 0 else 0.0
                if self.busy:
                    return  # before pulling another: the rest stay in `requests`


def send_all(
    provider: ApiProvider,
    requests: Iterable[ChatRequest],
    *,
    processes: int | None,
    calls: int,
    concurrency: int,
    rpm: float | None = None,
    tpm: float | None = None,
    on_result: Callable[[ChatResult], None],
) -> int:
    """Every request through an API provider; blocks until each request has had its one
    result. `processes`: 1, this process's event loop; N > 1, N workers from the start;
    None, automatic: `worker_count` workers for a run of `calls` requests long enough to
    repay them, started only if this process's loop, sending the first rounds, was busy
    (`_LoadProbe`); otherwise every request stays here. Returns how many worker
    processes took requests (0: none)."""
    limits = {"concurrency": concurrency, "rpm": rpm, "tpm": tpm}
    workers = worker_count(processes, concurrency=concurrency, calls=calls)
    pending = iter(requests)
    if workers == 1:
        _send_here(provider, pending, window=None, on_result=on_result, **limits)
        return 0
    recipe = provider.recipe()  # refused now, not after the probe, if it cannot be rebuilt
    if processes is not None:  # asked for: workers from the first request
        run_in_processes(recipe, pending, processes=workers, on_result=on_result, **limits)
        return workers
    window = AdaptiveWindow(concurrency)
    probe = _LoadProbe(concurrency, PROBE_ROUNDS * concurrency, window)
    _send_here(provider, probe.gate(pending), window=window, on_result=on_result, **limits)
    if not probe.busy:
        return 0
    run_in_processes(recipe, pending, processes=workers, on_result=on_result, **limits)
    return workers


def _send_here(
    provider: ApiProvider,
    requests: Iterator[ChatRequest],
    *,
    window: AdaptiveWindow | None,
    concurrency: int,
    rpm: float | None,
    tpm: float | None,
    on_result: Callable[[ChatResult], None],
) -> None:
    """The requests from this process's event loop; the provider's clients closed after."""
    from holisafe_bench.providers.retry import RetryPolicy
    from holisafe_bench.providers.runner import run_api_requests

    async def drive() -> None:
        try:
            await run_api_requests(
                provider,
                requests,
                concurrency=concurrency,
                rpm=rpm,
                tpm=tpm,
                retry=RetryPolicy(),
                on_result=on_result,
                window=window,
            )
        finally:
            await provider.aclose()

    asyncio.run(drive())
