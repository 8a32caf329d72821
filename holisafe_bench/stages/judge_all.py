"""String matching over many models at once: each model is a job on its own (its own files,
its own lock), done in this process or in helper processes, one per spare CPU. The verdicts
are those `judge_model` writes model by model; only the wall time changes."""

from __future__ import annotations

from collections.abc import Iterator

from holisafe_bench.errors import HolisafeError
from holisafe_bench.judging.options import JudgeOptions
from holisafe_bench.judging.verdicts import JudgeSummary
from holisafe_bench.offload import Offload, usable_cpus
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.registry import JudgeSpec
from holisafe_bench.stages.judge import judge_model


def string_match_processes(options: JudgeOptions, models: int) -> int:
    """`--processes`, else one per CPU this process may use; never more than the models."""
    return max(1, min(options.processes or usable_cpus(), models))


def judge_all_by_strings(
    names: list[str], judge: JudgeSpec, layout: ResultsLayout, options: JudgeOptions
) -> Iterator[tuple[str, JudgeSummary | HolisafeError]]:
    """(model, its summary or the error that stopped it), in the order of `names`, once all
    are done. Helpers judge from the front of the list while this process takes back the
    jobs they have not started, from the back."""
    processes = string_match_processes(options, len(names))
    quiet = _without_progress(options)  # helpers have no terminal of their own
    if processes == 1:
        yield from ((name, _judge_one(name, judge, layout, options)) for name in names)
        return
    with Offload(helpers=processes - 1, start_method="auto") as helpers:
        jobs = [helpers.submit(_judge_one, name, judge, layout, quiet) for name in names]
        helpers.work_along()
        yield from zip(names, (job.result() for job in jobs), strict=True)


def _without_progress(options: JudgeOptions) -> JudgeOptions:
    import dataclasses

    return dataclasses.replace(options, show_progress=False)


def _judge_one(
    name: str, judge: JudgeSpec, layout: ResultsLayout, options: JudgeOptions
) -> JudgeSummary | HolisafeError:
    """One model's summary, or its HolisafeError as a value (the other models go on)."""
    try:
        return judge_model(name, judge, layout, options)
    except HolisafeError as exc:
        return exc
