"""The whole pipeline offline on the bundled synthetic sample: run -> judge -> score ->
leaderboard, with the tiny random-weight LLaVA through the real transformers code path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from holisafe_bench.dataset import load_benchmark, select
from holisafe_bench.judging.options import JudgeOptions
from holisafe_bench.leaderboard import build_leaderboard, to_markdown
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.progress import stage_progress
from holisafe_bench.registry import get_judge, get_model
from holisafe_bench.stages.judge import judge_model
from holisafe_bench.stages.run import RunOptions, run_model

DEMO_MODEL = "tiny-llava-random"
DEMO_JUDGE = "string-match"
WARNING = (
    "The demo model has RANDOM weights: its answers are noise and these numbers mean "
    "nothing. They show that every stage runs, not how safe any model is."
)


@dataclass
class DemoResult:
    results_root: Path
    samples: int
    leaderboard_markdown: str


def _quiet_offline() -> None:
    """The demo never touches the network, and library chatter would bury its output."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def run_demo(out: Path, *, limit: int | None = None, say=print) -> DemoResult:
    _quiet_offline()
    layout = ResultsLayout(out)
    bench = load_benchmark("sample")
    samples = select(bench.samples, limit=limit)
    spec = get_model(DEMO_MODEL)
    say(f"1/4 data: bundled synthetic sample, {len(samples)} samples in the HoliSafe schema")
    say(f"2/4 run: {spec.display_name} via the transformers provider (built on first use)")
    with stage_progress("run", len(samples)) as progress:
        run = run_model(
            spec,
            bench,
            samples,
            layout,
            RunOptions(overwrite=True),
            on_record=lambda rec: progress.advance(
                **{rec.outcome: 1}, out_tokens=rec.usage.output_tokens
            ),
        )
    say(f"    {_outcome_words(run.outcomes)} in {run.elapsed_s:.1f} s -> {run.output}")
    judge = get_judge(DEMO_JUDGE)
    summary = judge_model(DEMO_MODEL, judge, layout, JudgeOptions(overwrite=True))
    say(f"3/4 judge: {judge.display_name}: {summary.valid} valid, {summary.invalid} invalid")
    rows = build_leaderboard(layout, DEMO_JUDGE, models=[DEMO_MODEL])
    table = to_markdown(rows)
    say("4/4 score: the paper's leaderboard columns (percent)")
    say(table.rstrip("\n"))
    say(WARNING)
    return DemoResult(out, len(samples), table)


def _outcome_words(outcomes: dict[str, int]) -> str:
    """'95 answered, 0 blocked, 0 failed': every outcome named, zeros included."""
    names = (("ok", "answered"), ("content_filter", "blocked"), ("error", "failed"))
    return ", ".join(f"{outcomes.get(key, 0)} {word}" for key, word in names)
