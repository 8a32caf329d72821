"""Work shared with helper processes, so a job of independent parts (the report's plots, the
string-match verdicts of many models) uses the other cores. Jobs are queued for the
helpers; when this process has nothing else to do, `work_along()` takes back the jobs no
helper has started (newest first) and does them here, so no side idles while another has
a queue."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

_NOT_RUN = object()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells), at least 1."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return len(usable) if usable else os.cpu_count() or 1


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
    def __init__(self, helpers: int = 1, start_method: str = "spawn") -> None:
        # spawn by default, not fork: the parent may hold threads and locks (progress bars,
        # SDKs). "auto" forks (helpers start at once, nothing to import again) only on Linux
        # and while this process runs a single thread, where no lock can be held across the
        # fork (macOS system libraries are not fork-safe even then).
        if start_method == "auto":
            single = threading.active_count() == 1
            start_method = "fork" if single and sys.platform.startswith("linux") else "spawn"
        self._pool = ProcessPoolExecutor(max_workers=helpers, mp_context=get_context(start_method))
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
