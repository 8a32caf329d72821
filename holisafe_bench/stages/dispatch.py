"""Driving a provider over a list of samples: the part `run` and `guard` share.

A stage says how a sample becomes a request (`Work.build`) and what to do with each result
(`Work.on_result`) or with a sample whose request could not be built (`Work.on_failure`);
`dispatch` picks the provider's shape (streaming engine, batch engine, API) and calls
`on_result` exactly once per request, always from one thread at a time, so the stage's one
writer needs no lock of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.base import ApiProvider, BatchProvider, Provider, StreamingProvider
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.records import Sample

if TYPE_CHECKING:
    from holisafe_bench.registry import ModelSpec


@dataclass
class Work:
    samples: Sequence[Sample]
    build: Callable[[Sample], ChatRequest]
    on_result: Callable[[Sample, ChatResult], None]
    on_failure: Callable[[Sample, str], None]


@dataclass(frozen=True)
class DispatchSettings:
    """How hard to drive the provider: the options given, else the spec's settings."""

    batch_size: int | None = None  # given by the user (--batch-size)
    engine_batch_size: int | None = None  # the spec's engine.batch_size
    concurrency: int = 16
    processes: int | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None

    @classmethod
    def for_spec(cls, spec: ModelSpec, options: Any) -> DispatchSettings:
        """`options` carries batch_size, concurrency and processes (RunOptions and
        GuardOptions both do); None falls back to the spec."""
        return cls(
            batch_size=options.batch_size,
            engine_batch_size=spec.engine.batch_size,
            concurrency=options.concurrency or spec.api.concurrency,
            processes=options.processes,
            requests_per_minute=spec.api.requests_per_minute,
            tokens_per_minute=spec.api.tokens_per_minute,
        )


def dispatch(provider: Provider, work: Work, settings: DispatchSettings) -> None:
    """Every sample of `work` ends in exactly one `on_result` or `on_failure` call."""
    if isinstance(provider, StreamingProvider) and provider.streaming:
        if settings.batch_size:  # --batch-size still bounds a streaming engine's batches
            provider.batch_size = settings.batch_size
        _run_stream(provider, work)
    elif isinstance(provider, BatchProvider):
        size = settings.batch_size or settings.engine_batch_size or provider.batch_size
        _run_batches(provider, work, size)
    elif isinstance(provider, ApiProvider):
        _run_api(provider, work, settings)
    else:
        raise HolisafeError(f"provider {type(provider).__name__} cannot answer chat requests")


def built_requests(work: Work) -> Iterator[tuple[Sample, ChatRequest]]:
    """Requests built lazily (memory stays flat); a sample whose request cannot be built is
    reported as failed and the rest go on."""
    for sample in work.samples:
        try:
            yield sample, work.build(sample)
        except Exception as exc:  # noqa: BLE001 - one bad sample must not end the run
            work.on_failure(sample, f"request: {type(exc).__name__}: {exc}")


def _run_batches(provider: BatchProvider, work: Work, size: int) -> None:
    batch: list[tuple[Sample, ChatRequest]] = []

    def flush() -> None:
        results = provider.generate_batch([req for _, req in batch])
        if len(results) != len(batch):
            raise HolisafeError(
                f"provider returned {len(results)} results for a batch of {len(batch)}"
            )
        for (sample, _), result in zip(batch, results, strict=True):
            work.on_result(sample, result)
        batch.clear()

    for item in built_requests(work):
        batch.append(item)
        if len(batch) >= size:
            flush()
    if batch:
        flush()


def _locked(work: Work) -> Work:
    """The same work with its two callbacks behind one lock."""
    lock = threading.Lock()

    def on_result(sample: Sample, result: ChatResult) -> None:
        with lock:
            work.on_result(sample, result)

    def on_failure(sample: Sample, reason: str) -> None:
        with lock:
            work.on_failure(sample, reason)

    return Work(work.samples, work.build, on_result, on_failure)


def _run_api(provider: ApiProvider, work: Work, settings: DispatchSettings) -> None:
    from holisafe_bench.providers.process_runner import send_all

    by_id: dict[str, Sample] = {}
    if settings.processes != 1:
        # With worker processes, requests are built in a feeder thread, which reports
        # unbuildable samples while this thread reports results: one writer, behind a lock.
        work = _locked(work)

    def requests() -> Iterator[ChatRequest]:
        for sample, request in built_requests(work):
            by_id[request.id] = sample
            yield request

    def on_result(result: ChatResult) -> None:
        work.on_result(by_id.pop(result.id), result)

    send_all(
        provider,
        requests(),
        processes=settings.processes,
        calls=len(work.samples),
        concurrency=settings.concurrency,
        rpm=settings.requests_per_minute,
        tpm=settings.tokens_per_minute,
        on_result=on_result,
    )


def _run_stream(provider: StreamingProvider, work: Work) -> None:
    """Requests handed to the engine as it has room; each result reported as it finishes
    (one thread, so the one writer needs no lock)."""
    by_id: dict[str, Sample] = {}

    def requests() -> Iterator[ChatRequest]:
        for sample, request in built_requests(work):
            by_id[request.id] = sample
            yield request

    for result in provider.stream(requests()):
        work.on_result(by_id.pop(result.id), result)
    if by_id:
        raise HolisafeError(f"provider returned no result for {len(by_id)} requests")
