"""The stage progress bar on a terminal: drawn from the first result on, with its counters,
and no drawing thread before then (API workers fork before the first result)."""

from __future__ import annotations

import io
import sys
import threading

from holisafe_bench.progress import stage_progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_has_no_thread_until_the_first_result_then_shows_counts(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    before = set(threading.enumerate())
    with stage_progress("judge demo", 3) as progress:
        assert set(threading.enumerate()) == before  # forking workers here is still safe
        assert terminal.getvalue() == ""
        progress.advance(invalid=0)
        progress.advance(invalid=1, spend_usd=0.25)
        redraw = set(threading.enumerate()) - before
        assert len(redraw) == 1  # Rich's redraw thread
        progress.advance(invalid=0)
    for thread in redraw:
        thread.join(timeout=2)  # told to stop on exit; it ends at its next tick
    assert set(threading.enumerate()) == before
    drawn = terminal.getvalue()
    assert "judge demo" in drawn and "3/3" in drawn
    assert "invalid 1" in drawn and "spend $0.2500" in drawn
    assert progress.counters == {"invalid": 1, "spend_usd": 0.25}


def test_a_stage_without_results_draws_nothing_and_leaves_no_thread(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    before = set(threading.enumerate())
    with stage_progress("run empty", 5):
        pass
    assert set(threading.enumerate()) == before and terminal.getvalue() == ""
