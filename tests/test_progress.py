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


def test_tokens_show_with_their_rate_since_the_first_result(monkeypatch):
    from holisafe_bench import progress as progress_module
    from holisafe_bench.progress import StageProgress

    clock = iter([100.0, 104.0])  # first result at 100 s, the text asked for at 104 s
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    stage = StageProgress()
    stage.advance(ok=1, out_tokens=1200)
    stage.counters["out_tokens"] += 400  # later results, same first-result time
    assert stage.counters_text() == "ok 1  out tokens 1,600 (400/s)"


def test_a_provider_without_token_counts_shows_none():
    from holisafe_bench.progress import StageProgress

    stage = StageProgress()
    stage.advance(ok=1, out_tokens=0)
    assert stage.counters_text() == "ok 1"
