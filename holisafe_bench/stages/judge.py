"""The `judge` stage: stored responses -> verdicts, resumably, with a manifest."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from holisafe_bench.errors import HolisafeError, NotBuiltError
from holisafe_bench.judging.options import JudgeOptions
from holisafe_bench.judging.parser import conflict_counts
from holisafe_bench.judging.string_match import StringMatchJudge, phrase_list_hash
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.progress import stage_progress
from holisafe_bench.provenance import git_revision, package_versions
from holisafe_bench.records import JudgeManifest, ResponseRecord, VerdictRecord, utc_now
from holisafe_bench.registry import JudgeSpec
from holisafe_bench.store import RecordStore, write_json_atomic


@dataclass
class JudgeSummary:
    model: str
    judge: str
    output: Path
    responses: int = 0
    judged_now: int = 0
    reused: int = 0
    valid: int = 0
    invalid: int = 0
    invalid_reasons: Counter = field(default_factory=Counter)
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    manifest_extra: dict = field(default_factory=dict)


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


def judge_model(
    model: str, judge: JudgeSpec, layout: ResultsLayout, options: JudgeOptions
) -> JudgeSummary:
    started = time.monotonic()
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
    summary = JudgeSummary(
        model=model,
        judge=judge.name,
        output=store.path,
        responses=len(responses),
        judged_now=len(todo),
        reused=len(responses) - len(todo),
    )
    manifest = JudgeManifest(
        model=model,
        judge=judge.name,
        judge_model_id=judge.model,
        parser=judge.parser if judge.kind == "llm" else "string_match",
        params={"content_filter_as_refusal": options.content_filter_as_refusal},
        package_versions=package_versions(),
        git_revision=git_revision(),
    )

    if judge.kind == "string_match":
        manifest.prompt_template_hash = phrase_list_hash(judge)
        _judge_by_strings(judge, todo, store, options)
    else:
        try:
            from holisafe_bench.judging.llm import run_llm_judge
        except ImportError as exc:
            raise NotBuiltError(f"LLM judges are not built yet ({exc})") from exc
        llm_summary = run_llm_judge(model, judge, layout, options, todo)
        if options.dry_run:
            return llm_summary
        summary.cost_usd = llm_summary.cost_usd
        summary.manifest_extra = llm_summary.manifest_extra

    final = store.read()
    # Only verdicts of the current responses count (a stopped run can leave stale ones).
    verdicts = [
        final[i]
        for i, response in responses.items()
        if i in final and final[i].response_sha256 == response.fingerprint()
    ]
    summary.valid = sum(v.is_valid for v in verdicts)
    summary.invalid = len(verdicts) - summary.valid
    summary.invalid_reasons = Counter(v.invalid for v in verdicts if not v.is_valid)
    missing = len(responses) - len(verdicts)
    for v in verdicts:
        manifest.usage = manifest.usage + v.usage
    manifest.cost_usd = round(sum(v.cost_usd for v in verdicts if not v.cached), 6)
    manifest.counts = {
        "responses": len(responses),
        "valid": summary.valid,
        "invalid": summary.invalid,
        "missing": missing,
        **{f"invalid_{k}": n for k, n in summary.invalid_reasons.items()},
    }
    if judge.kind == "llm":  # replies with two different labels, and how each ended
        summary.manifest_extra["label_conflicts"] = conflict_counts(
            (v.raw, v.is_valid) for v in verdicts
        )
    manifest.finished_at = utc_now()
    write_json_atomic(
        layout.judge_manifest(model, judge.name),
        {**manifest.model_dump(mode="json"), **summary.manifest_extra},
    )
    summary.elapsed_s = time.monotonic() - started

    limit = options.invalid_limit(len(responses))
    if limit is not None and summary.invalid > limit:
        raise HolisafeError(
            f"{model} / {judge.name}: {summary.invalid} invalid verdicts exceed --max-invalid "
            f"({limit}); reasons: {dict(summary.invalid_reasons)}. Re-run to retry them."
        )
    return summary


def _judge_by_strings(
    judge: JudgeSpec,
    todo: list[ResponseRecord],
    store: RecordStore[VerdictRecord],
    options: JudgeOptions,
) -> None:
    matcher = StringMatchJudge(judge, content_filter_as_refusal=options.content_filter_as_refusal)
    with (
        store.writer(overwrite=options.overwrite) as writer,
        stage_progress(f"judge {judge.name}", len(todo), enabled=options.show_progress) as progress,
    ):
        for response in todo:
            verdict = matcher.judge(response)
            writer.write(verdict)
            progress.advance(invalid=0 if verdict.is_valid else 1)
