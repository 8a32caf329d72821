"""One progress line per model for runs that go on at once (`run --model A --model B
--ray`): one Rich display with a task per model, each advanced from its model's thread."""

from __future__ import annotations

import contextlib
import sys
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

from holisafe_bench.progress import StageProgress


class _Line(StageProgress):
    def __init__(self, progress: Progress, task_id: TaskID, expected: int) -> None:
        super().__init__(progress, task_id)
        self.left = expected  # advances to come: the line is drawn again at the last one

    def advance(self, n: int = 1, **counters: float) -> None:
        super().advance(n, **counters)
        self.left -= n
        if self.left <= 0:  # a model that ends while others go on shows its final count
            self.flush()

    def flush(self) -> None:
        super().flush()
        progress, task_id = self._progress, self._task_id
        if progress is None or task_id is None or not progress.live.is_started:
            return
        # StageProgress shows the speed of the display's first task: show this line's own.
        speed = next((t.speed for t in progress.tasks if t.id == task_id), None)
        progress.update(task_id, rate=f"{speed:.1f}/s" if speed else "")


@contextlib.contextmanager
def progress_lines(entries: list[tuple[str, int, int]]) -> Iterator[list[StageProgress]]:
    """A StageProgress per (description, total, advances expected), drawn as lines of one
    display on stderr when it is a terminal; otherwise counters only."""
    if not sys.stderr.isatty() or not any(total for _, total, _ in entries):
        yield [StageProgress() for _ in entries]
        return
    progress = Progress(
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
    lines: list[StageProgress] = [
        _Line(progress, progress.add_task(text, total=total, counters="", rate=""), expected)
        for text, total, expected in entries
    ]
    try:
        yield lines
    finally:
        for line in lines:
            line.flush()
        progress.stop()
