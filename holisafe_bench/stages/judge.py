"""The `judge` stage: stored responses -> verdicts, resumably, with a manifest.

The plan step reads the files (which responses need a verdict); the execute step judges
them with string matching or an LLM judge and writes the judge's manifest."""

from __future__ import annotations

import functools
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from holisafe_bench.errors import HolisafeError
from holisafe_bench.fingerprints import WatchedRead, read_sidecar, write_sidecar
from holisafe_bench.judging.options import JudgeOptions
from holisafe_bench.judging.parser import conflict_counts
from holisafe_bench.judging.string_match import StringMatchJudge, phrase_list_hash
from holisafe_bench.judging.verdicts import JudgeSummary
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.progress import stage_progress
from holisafe_bench.provenance import git_revision, package_versions
from holisafe_bench.record_columns import plain_responses, plain_verdicts
from holisafe_bench.records import (
    JudgeManifest,
    ResponseRecord,
    Usage,
    VerdictRecord,
    plain_response,
    plain_verdict,
    response_fingerprint,
    utc_now,
)
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
    # `ResponseRecord`s for an LLM judge; for string matching, which reads every model's
    # responses at file speed, each record's decoded JSON object (validated as a record).
    responses: dict[int, Any]
    todo: list[Any]
    fingerprints: dict[int, str] = field(default_factory=dict)  # of each response, by id
    # String matching: the verdict file's objects as the plan read them (kept or redone).
    verdicts: dict[int, Any] = field(default_factory=dict)
    # Digest of the responses file's bytes `fingerprints` come from, when the read can
    # vouch for them: they are then written as its sidecar, for scoring.
    source_digest: str | None = None

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
    """The plan step: refuses a model with no responses to judge, and verdicts made under
    the other handling of blocked responses."""
    _check_same_filter_handling(model, judge, layout, options)
    if judge.kind == "string_match":
        return _plan_strings(model, judge, layout, options)
    responses = RecordStore(layout.responses(model), ResponseRecord).read()
    _refuse_empty(model, layout, responses)
    store = RecordStore(layout.verdicts(model, judge.name), VerdictRecord)
    existing = {} if options.overwrite else store.read()
    todo = responses_needing_verdicts(responses, existing)
    fingerprints = {i: r.fingerprint() for i, r in responses.items()}
    return JudgePlan(model, judge, layout, options, responses, todo, fingerprints)


def _check_same_filter_handling(
    model: str, judge: JudgeSpec, layout: ResultsLayout, options: JudgeOptions
) -> None:
    """Verdicts of blocked responses made under the other rule (refusal vs invalid) would
    be kept by a resume while the manifest names this run's rule: refuse, say what to do."""
    manifest = layout.judge_manifest(model, judge.name)
    verdicts = layout.verdicts(model, judge.name)
    if options.overwrite or not manifest.is_file() or not verdicts.is_file():
        return
    try:
        params = orjson.loads(manifest.read_bytes()).get("params") or {}
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return  # an unreadable manifest is rewritten at the end of this run
    before = params.get("content_filter_as_refusal")
    if before is None or before == options.content_filter_as_refusal:
        return
    rule = "as refusals" if before else "as invalid (--content-filter-invalid)"
    raise HolisafeError(
        f"{verdicts}: its verdicts count blocked responses {rule}; add --overwrite to judge "
        "them all again under this run's rule, or use another --results folder"
    )


def _plan_strings(
    model: str, judge: JudgeSpec, layout: ResultsLayout, options: JudgeOptions
) -> JudgePlan:
    """`plan_judge` on decoded records: the same choices, without building a model per
    line (each response is hashed once, here)."""
    watch = WatchedRead(layout.responses(model))
    stored = RecordStore(layout.responses(model), ResponseRecord)
    responses = stored.read_dicts(watch.checked(plain_response), plain_responses)
    source_digest = watch.source_digest()
    _refuse_empty(model, layout, responses)
    fingerprints = _known_fingerprints(layout, model, source_digest, responses) or {
        i: response_fingerprint(r["outcome"], r.get("text")) for i, r in responses.items()
    }
    store = RecordStore(layout.verdicts(model, judge.name), VerdictRecord)
    existing = {} if options.overwrite else store.read_dicts(plain_verdict, plain_verdicts)
    todo = [
        responses[i] for i in sorted(responses) if not _is_current(existing.get(i), fingerprints[i])
    ]
    plan = JudgePlan(model, judge, layout, options, responses, todo, fingerprints, existing)
    plan.source_digest = source_digest
    return plan


def _known_fingerprints(
    layout: ResultsLayout, model: str, source_digest: str | None, responses: dict
) -> dict[int, str] | None:
    """The fingerprints an earlier judge wrote for these very bytes (the sidecar), when it
    covers exactly these responses; None: compute them."""
    if source_digest is None:
        return None
    known = read_sidecar(layout.response_fingerprints(model), source_digest)
    return known if known is not None and known.keys() == responses.keys() else None


def _is_current(verdict: dict | None, fingerprint: str) -> bool:
    """A valid verdict of the response now stored (what `responses_needing_verdicts` keeps)."""
    return (
        verdict is not None
        and verdict.get("follows") is not None
        and verdict.get("response_sha256") == fingerprint
    )


def _refuse_empty(model: str, layout: ResultsLayout, responses: dict) -> None:
    if not responses:
        raise HolisafeError(
            f"no responses for {model!r} at {layout.responses(model)}: run `holisafe-bench "
            f"run --model {model}` or `holisafe-bench import FILE --model {model}` first"
        )


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
        if plan.source_digest:
            path = plan.layout.response_fingerprints(plan.model)
            write_sidecar(path, plan.source_digest, plan.fingerprints)
    else:
        from holisafe_bench.judging.llm import run_llm_judge  # its SDK stack: only for LLMs

        llm_summary = run_llm_judge(plan.model, judge, plan.layout, options, plan.todo)
        if options.dry_run:
            return llm_summary
        summary.cost_usd = llm_summary.cost_usd
        summary.manifest_extra = llm_summary.manifest_extra
        summary.judged_now -= llm_summary.left_undone  # --max-cost stopped before these
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
        package_versions=_package_versions(),
        git_revision=git_revision(),
    )


@functools.cache
def _package_versions() -> dict[str, str]:
    """Looked up once per process: `judge --all` writes a manifest per model."""
    return package_versions()


def _finish_manifest(plan: JudgePlan, manifest: JudgeManifest, summary: JudgeSummary) -> None:
    """Counts, usage and cost over the file as it now is, into the summary and the manifest."""
    # String matching knows the file: what the plan read, then what it wrote (last wins).
    final = (
        plan.verdicts
        if plan.judge.kind == "string_match"
        else RecordStore(plan.output, VerdictRecord).read_dicts(plain_verdict, plain_verdicts)
    )
    # Only verdicts of the current responses count (a stopped run can leave stale ones).
    verdicts = [
        final[i]
        for i in plan.responses
        if i in final and final[i].get("response_sha256") == plan.fingerprints[i]
    ]
    valid = [v.get("follows") is not None for v in verdicts]
    summary.valid = sum(valid)
    summary.invalid = len(verdicts) - summary.valid
    summary.invalid_reasons = Counter(
        v["invalid"] for v, ok in zip(verdicts, valid, strict=True) if not ok
    )
    usages = [v.get("usage", {}) for v in verdicts]
    manifest.usage = manifest.usage + Usage(
        input_tokens=sum(u.get("input_tokens", 0) for u in usages),
        output_tokens=sum(u.get("output_tokens", 0) for u in usages),
    )
    manifest.cost_usd = round(
        sum(v.get("cost_usd", 0.0) for v in verdicts if not v.get("cached", False)), 6
    )
    manifest.counts = {
        "responses": len(plan.responses),
        "valid": summary.valid,
        "invalid": summary.invalid,
        "missing": len(plan.responses) - len(verdicts),
        **{f"invalid_{k}": n for k, n in summary.invalid_reasons.items()},
    }
    if plan.judge.kind == "llm":  # replies with two different labels, and how each ended
        manifest.label_conflicts = conflict_counts(
            (v.get("raw"), ok) for v, ok in zip(verdicts, valid, strict=True)
        )
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


# Verdict lines handed to the file per write call: one call for a whole model's file, and
# memory bounded when a file is very long.
_LINES_PER_WRITE = 8192


def _judge_by_strings(plan: JudgePlan) -> None:
    """Verdicts as JSON lines straight from the decoded responses, written in bulk. A
    verdict costs microseconds to redo, so the file is fsync'd at its end (and every few
    seconds), not every 32 lines: a crash loses only cheap work, and still leaves at most
    one torn line, which the store drops and cuts."""
    judge, options = plan.judge, plan.options
    matcher = StringMatchJudge(judge, content_filter_as_refusal=options.content_filter_as_refusal)
    store = RecordStore(plan.output, VerdictRecord)
    created_at = utc_now()  # the whole batch is written now
    with (
        store.writer(overwrite=options.overwrite, fsync_every=1 << 62, fsync_seconds=5.0) as w,
        stage_progress(f"judge {judge.name}", len(plan.todo), enabled=options.show_progress) as p,
    ):
        for start in range(0, len(plan.todo), _LINES_PER_WRITE):
            lines, invalid = [], 0
            for response in plan.todo[start : start + _LINES_PER_WRITE]:
                fields = matcher.verdict_fields(response, plan.fingerprints[response["sample_id"]])
                fields["created_at"] = created_at
                invalid += fields["follows"] is None
                lines.append(orjson.dumps(fields))
                plan.verdicts[fields["sample_id"]] = fields
            w.write_lines(lines)
            p.advance(len(lines), invalid=invalid)
