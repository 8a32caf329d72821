"""One progress line per model for runs that go on at once (`run --model A --model B
--ray`): one Rich display with a task per model, each advanced from its model's thread."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.progress import Progress, TaskID

from holisafe_bench.progress import StageProgress, progress_display


class _Line(StageProgress):
    def __init__(self, progress: Progress, task_id: TaskID, expected: int) -> None:
        super().__init__(progress, task_id)
        self.left = expected  # advances to come: the line is drawn again at the last one

    def advance(self, n: int = 1, **counters: float) -> None:
        super().advance(n, **counters)
        self.left -= n
        if self.left <= 0:  # a model that ends while others go on shows its final count
            self.flush()


@contextlib.contextmanager
def progress_lines(entries: list[tuple[str, int, int]]) -> Iterator[list[StageProgress]]:
    """A StageProgress per (description, total, advances expected), drawn as lines of one
    display on stderr when it is a terminal; otherwise counters only."""
    if not sys.stderr.isatty() or not any(total for _, total, _ in entries):
        yield [StageProgress() for _ in entries]
        return
    progress = progress_display()
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
