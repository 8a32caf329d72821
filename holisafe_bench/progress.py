"""One Rich progress bar for long stages: done/total, rate, ETA and stage-specific counters."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# The bar's own redraw period: updating it more often shows nothing more.
_UPDATE_SECONDS = 0.1


class StageProgress:
    """Advance with `advance(**counters)`; counters (e.g. errors=1) are summed and shown.

    The bar is drawn from the first `advance` on, not from the stage's start: Rich redraws it
    from a thread, and a stage forks its API worker processes before its first result, which
    is only safe (and fast) while this process has a single thread; otherwise the workers
    are spawned and import everything again (process_runner)."""

    def __init__(self, progress: Progress | None = None, task_id: TaskID | None = None) -> None:
        self._progress = progress
        self._task_id = task_id
        self.counters: dict[str, float] = {}
        self._unshown = 0  # advances not yet given to the bar
        self._shown_at = 0.0
        self._first_at: float | None = None  # the first result: rates count from here

    def advance(self, n: int = 1, **counters: float) -> None:
        if self._first_at is None:
            self._first_at = time.monotonic()
        for key, value in counters.items():
            self.counters[key] = self.counters.get(key, 0) + value
        if self._progress is None or self._task_id is None:
            return
        self._unshown += n
        if not self._progress.live.is_started:
            self._progress.start()
        elif time.monotonic() - self._shown_at < _UPDATE_SECONDS:
            return  # the bar redraws 10 times a second: an update per result is wasted CPU
        self.flush()

    def flush(self) -> None:
        """Give the bar every advance and counter so far."""
        if self._progress is None or self._task_id is None or not self._progress.live.is_started:
            return
        shown = self.counters_text()
        self._progress.update(self._task_id, advance=self._unshown, counters=shown)
        self._unshown = 0
        self._shown_at = time.monotonic()
        # This task's own speed: a display can hold several (one line per model).
        speed = next((t.speed for t in self._progress.tasks if t.id == self._task_id), None)
        self._progress.update(self._task_id, rate=f"{speed:.1f}/s" if speed else "")

    def counters_text(self) -> str:
        elapsed = 0.0 if self._first_at is None else time.monotonic() - self._first_at
        return "  ".join(
            _show(k, v, elapsed)
            for k, v in self.counters.items()
            if not (k.endswith("_tokens") and not v)  # a provider that reports no tokens
        )


def _show(key: str, value: float, elapsed: float = 0.0) -> str:
    """`invalid 0`, `error 3`; a `*_usd` counter as money: `spend $0.0312`; a `*_tokens`
    counter with its rate since the first result (model loading left out):
    `out tokens 12,345 (410/s)`."""
    if key.endswith("_tokens"):
        rate = f" ({value / elapsed:,.0f}/s)" if elapsed > 0.5 else ""
        return f"{key.removesuffix('_tokens')} tokens {value:,.0f}{rate}"
    if key.endswith("_usd"):
        return f"{key.removesuffix('_usd')} ${value:.4f}"
    return f"{key} {value:g}" if float(value).is_integer() else f"{key} {value:.4g}"


def progress_display() -> Progress:
    """The display on stderr: description, bar, done/total, rate, elapsed, ETA, counters;
    add a task per line with `rate` and `counters` fields."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[counters]}"),
        console=Console(stderr=True),
    )


@contextlib.contextmanager
def stage_progress(
    description: str, total: int, *, enabled: bool = True
) -> Iterator[StageProgress]:
    """A progress bar on stderr when it is a terminal; otherwise counters only."""
    if not enabled or total == 0 or not sys.stderr.isatty():
        yield StageProgress()
        return
    progress = progress_display()
    task_id = progress.add_task(description, total=total, counters="", rate="")
    stage = StageProgress(progress, task_id)
    try:
        yield stage
    finally:
        stage.flush()
        progress.stop()  # a no-op if nothing was ever drawn
