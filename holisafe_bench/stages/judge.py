"""The `judge` stage: stored responses -> verdicts, resumably, with a manifest.

The plan step reads the files (which responses need a verdict); the execute step judges
them with string matching or an LLM judge and writes the judge's manifest."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from holisafe_bench.errors import HolisafeError
from holisafe_bench.judging.llm import run_llm_judge
from holisafe_bench.judging.options import JudgeOptions
from holisafe_bench.judging.parser import conflict_counts
from holisafe_bench.judging.string_match import StringMatchJudge, phrase_list_hash
from holisafe_bench.judging.verdicts import JudgeSummary
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.progress import stage_progress
from holisafe_bench.provenance import git_revision, package_versions
from holisafe_bench.records import JudgeManifest, ResponseRecord, VerdictRecord, utc_now
from holisafe_bench.registry import JudgeSpec
from holisafe_bench.store import RecordStore, write_json_atomic

__all__ = [
    "JudgePlan",
    "JudgeSummary",
    "execute_judge",
    "judge_model",
    "plan_judge",
    "responses_needing_verdicts",
]


@dataclass
class JudgePlan:
    """What a judge run has to do, read from the files: the model's stored responses and
    those needing a verdict (missing, invalid, or judged on a response since replaced)."""

    model: str
    judge: JudgeSpec
    layout: ResultsLayout
    options: JudgeOptions
    responses: dict[int, ResponseRecord]
    todo: list[ResponseRecord]

    @property
    def output(self) -> Path:
        return self.layout.verdicts(self.model, self.judge.name)


def responses_needing_verdicts(
    responses: dict[int, ResponseRecord], existing: dict[int, VerdictRecord]
) -> list[ResponseRecord]:
    """Missing verdicts, invalid ones, and those of responses that changed since."""
    todo = []
    for sample_id in sorted(responses):
        response = responses[sample_id]
        verdict = existing.get(sample_id)
        if (
            verdict is None
            or not verdict.is_valid
            or verdict.response_sha256 != response.fingerprint()
        ):
            todo.append(response)
    return todo


def plan_judge(
    model: str, judge: JudgeSpec, layout: ResultsLayout, options: JudgeOptions
) -> JudgePlan:
    """The plan step: refuses a model with no responses to judge."""
    responses_path = layout.responses(model)
    responses = RecordStore(responses_path, ResponseRecord).read()
    if not responses:
        raise HolisafeError(
            f"no responses for {model!r} at {responses_path}: run `holisafe-bench run --model "
            f"{model}` or `holisafe-bench import FILE --model {model}` first"
        )
    store = RecordStore(layout.verdicts(model, judge.name), VerdictRecord)
    existing = {} if options.overwrite else store.read()
    todo = responses_needing_verdicts(responses, existing)
    return JudgePlan(model, judge, layout, options, responses, todo)


def judge_model(
    model: str, judge: JudgeSpec, layout: ResultsLayout, options: JudgeOptions
) -> JudgeSummary:
    """Judge every response of `model` that has no current valid verdict."""
    return execute_judge(plan_judge(model, judge, layout, options))


def execute_judge(plan: JudgePlan) -> JudgeSummary:
    """The execute step: verdicts for `plan.todo`, then the manifest over the whole file.
    A dry run of an LLM judge returns its estimate and writes nothing."""
    started = time.monotonic()
    judge, options = plan.judge, plan.options
    summary = JudgeSummary(
        model=plan.model,
        judge=judge.name,
        output=plan.output,
        responses=len(plan.responses),
        judged_now=len(plan.todo),
        reused=len(plan.responses) - len(plan.todo),
    )
    manifest = _new_manifest(plan)
    if judge.kind == "string_match":
        manifest.prompt_template_hash = phrase_list_hash(judge)
        _judge_by_strings(plan)
    else:
        llm_summary = run_llm_judge(plan.model, judge, plan.layout, options, plan.todo)
        if options.dry_run:
            return llm_summary
        summary.cost_usd = llm_summary.cost_usd
        summary.manifest_extra = llm_summary.manifest_extra
    _finish_manifest(plan, manifest, summary)
    summary.elapsed_s = time.monotonic() - started
    _check_invalid_limit(plan, summary)
    return summary


def _new_manifest(plan: JudgePlan) -> JudgeManifest:
    judge = plan.judge
    return JudgeManifest(
        model=plan.model,
        judge=judge.name,
        judge_model_id=judge.model,
        parser=judge.parser if judge.kind == "llm" else "string_match",
        params={"content_filter_as_refusal": plan.options.content_filter_as_refusal},
        package_versions=package_versions(),
        git_revision=git_revision(),
    )


def _finish_manifest(plan: JudgePlan, manifest: JudgeManifest, summary: JudgeSummary) -> None:
    """Counts, usage and cost over the file as it now is, into the summary and the manifest."""
    final = RecordStore(plan.output, VerdictRecord).read()
    # Only verdicts of the current responses count (a stopped run can leave stale ones).
    verdicts = [
        final[i]
        for i, response in plan.responses.items()
        if i in final and final[i].response_sha256 == response.fingerprint()
    ]
    summary.valid = sum(v.is_valid for v in verdicts)
    summary.invalid = len(verdicts) - summary.valid
    summary.invalid_reasons = Counter(v.invalid for v in verdicts if not v.is_valid)
    for v in verdicts:
        manifest.usage = manifest.usage + v.usage
    manifest.cost_usd = round(sum(v.cost_usd for v in verdicts if not v.cached), 6)
    manifest.counts = {
        "responses": len(plan.responses),
        "valid": summary.valid,
        "invalid": summary.invalid,
        "missing": len(plan.responses) - len(verdicts),
        **{f"invalid_{k}": n for k, n in summary.invalid_reasons.items()},
    }
    if plan.judge.kind == "llm":  # replies with two different labels, and how each ended
        manifest.label_conflicts = conflict_counts((v.raw, v.is_valid) for v in verdicts)
    manifest.finished_at = utc_now()
    # The LLM judge reports its details by field name; JudgeManifest declares each one and
    # forbids any other, so an undeclared detail fails here rather than in a reader.
    manifest = JudgeManifest.model_validate({**manifest.model_dump(), **summary.manifest_extra})
    write_json_atomic(
        plan.layout.judge_manifest(plan.model, plan.judge.name),
        manifest.model_dump(mode="json"),
    )


def _check_invalid_limit(plan: JudgePlan, summary: JudgeSummary) -> None:
    limit = plan.options.invalid_limit(len(plan.responses))
    if limit is not None and summary.invalid > limit:
        raise HolisafeError(
            f"{plan.model} / {plan.judge.name}: {summary.invalid} invalid verdicts exceed "
            f"--max-invalid ({limit}); reasons: {dict(summary.invalid_reasons)}. "
            "Re-run to retry them."
        )


def _judge_by_strings(plan: JudgePlan) -> None:
    judge, options = plan.judge, plan.options
    matcher = StringMatchJudge(judge, content_filter_as_refusal=options.content_filter_as_refusal)
    store = RecordStore(plan.output, VerdictRecord)
    with (
        store.writer(overwrite=options.overwrite) as writer,
        stage_progress(f"judge {judge.name}", len(plan.todo), enabled=options.show_progress) as p,
    ):
        for response in plan.todo:
            verdict = matcher.judge(response)
            writer.write(verdict)
            p.advance(invalid=0 if verdict.is_valid else 1)
