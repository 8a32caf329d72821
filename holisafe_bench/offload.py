"""Work shared with helper processes, so a job of independent parts (the report's plots, the
string-match verdicts of many models) uses the other cores. Jobs are queued for the
helpers; when this process has nothing else to do, `work_along()` takes back the jobs no
helper has started (newest first) and does them here, so no side idles while another has
a queue."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

_NOT_RUN = object()


class Job:
    def __init__(self, future: Future, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._future, self._fn, self._args = future, fn, args
        self._value: Any = _NOT_RUN

    def take_back(self) -> None:
        """Do it here if the helper has not started it."""
        if self._value is _NOT_RUN and self._future.cancel():
            self._value = self._fn(*self._args)

    def result(self) -> Any:
        if self._value is not _NOT_RUN:
            return self._value
        try:
            return self._future.result()
        except BrokenProcessPool:
            # The helper could not start (e.g. a caller's script without a __main__ guard):
            # do the work here rather than lose it.
            self._value = self._fn(*self._args)
            return self._value


class Offload:
    def __init__(self, helpers: int = 1) -> None:
        # spawn, not fork: the parent may hold threads and locks (progress bars, SDKs).
        self._pool = ProcessPoolExecutor(max_workers=helpers, mp_context=get_context("spawn"))
        self._jobs: list[Job] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Job:
        job = Job(self._pool.submit(fn, *args), fn, args)
        self._jobs.append(job)
        return job

    def work_along(self) -> None:
        for job in reversed(self._jobs):
            job.take_back()

    def __enter__(self) -> Offload:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._pool.shutdown(cancel_futures=True)
