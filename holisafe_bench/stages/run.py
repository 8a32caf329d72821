"""The `run` stage: a registered model over the benchmark, responses written resumably.

Samples already answered (outcome ok or content_filter) are skipped; errors and missing
samples are redone. Each response is appended as soon as it is known, so a crash loses at
most the requests in flight (API, vLLM streaming) or the batch in flight (batch engines).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.provenance import git_revision, package_versions
from holisafe_bench.providers.base import Provider
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.record_columns import plain_responses
from holisafe_bench.records import (
    Invocation,
    ResponseRecord,
    RunManifest,
    Sample,
    Sampling,
    Usage,
    outcome_is_complete,
    plain_response,
    utc_now,
)
from holisafe_bench.registry import ModelSpec
from holisafe_bench.stages.dispatch import DispatchSettings, Work, dispatch
from holisafe_bench.stages.writing import previous_manifest, write_all
from holisafe_bench.store import RecordStore, write_json_atomic

if TYPE_CHECKING:
    from holisafe_bench.dataset import Benchmark


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'i/n' with 0 <= i < n."""
        try:
            index_text, count_text = text.split("/")
            shard = cls(int(index_text), int(count_text))
        except ValueError as exc:
            raise HolisafeError(f"--shard {text!r}: expected i/n, e.g. 0/4") from exc
        if shard.count < 1 or not 0 <= shard.index < shard.count:
            raise HolisafeError(f"--shard {text!r}: need 0 <= i < n")
        return shard

    def select(self, samples: Iterable[Sample]) -> list[Sample]:
        # Stable by id, so every shard of every machine agrees on the split.
        ordered = sorted(samples, key=lambda s: s.id)
        return ordered[self.index :: self.count]


@dataclass
class RunOptions:
    overwrite: bool = False
    shard: Shard | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    system_prompt: str | None = None
    concurrency: int | None = None
    batch_size: int | None = None
    # API models: worker processes sharing the concurrency; None = automatic
    # (process_runner.send_all: workers only once this process is found CPU-bound).
    processes: int | None = None


@dataclass
class RunSummary:
    model: str
    output: Path
    selected: int = 0
    already_done: int = 0
    attempted: int = 0
    outcomes: Counter = field(default_factory=Counter)
    skipped_bad_rows: int = 0
    elapsed_s: float = 0.0


def resolve_sampling(spec: ModelSpec, options: RunOptions) -> Sampling:
    """The run's sampling parameters: the spec's, overridden by the options. The one place
    they are decided, for the requests and the manifest alike. An option given is an
    override even when empty (`--system-prompt ""` sends and records no system prompt);
    only a max_tokens of 0, which no request can carry, means the spec's."""
    gen = spec.generation

    def chosen(option: Any, default: Any) -> Any:
        return default if option is None else option

    return Sampling(
        max_tokens=options.max_tokens or gen.max_tokens,
        temperature=chosen(options.temperature, gen.temperature),
        top_p=gen.top_p,
        system_prompt=chosen(options.system_prompt, gen.system_prompt),
    )


def build_request(
    sample: Sample, bench: Benchmark, spec: ModelSpec, options: RunOptions
) -> ChatRequest:
    sampling = resolve_sampling(spec, options)
    return ChatRequest(
        id=str(sample.id),
        text=sample.query,  # verbatim, no extra instruction (HOLISAFE.md)
        images=(bench.image(sample),),
        system=sampling.system_prompt,
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
    )


def result_to_record(sample: Sample, model: str, result: ChatResult) -> ResponseRecord:
    return ResponseRecord(
        sample_id=sample.id,
        model=model,
        type=sample.type,
        category=sample.category,
        subcategory=sample.subcategory,
        outcome=result.outcome,
        text=result.text,
        finish_reason=result.finish_reason,
        error=result.error if result.outcome == "error" else None,
        usage=result.usage,
        latency_s=result.latency_s,
    )


def failed_record(sample: Sample, model: str, reason: str) -> ResponseRecord:
    failed = ChatResult(id=str(sample.id), outcome="error", error=reason)
    return result_to_record(sample, model, failed)


def output_paths(layout: ResultsLayout, model: str, shard: Shard | None) -> tuple[Path, Path]:
    """(responses.jsonl, run.json) for a whole run or one shard."""
    if shard is None:
        return layout.responses(model), layout.run_manifest(model)
    folder = layout.shard_dir(model, shard.index, shard.count)
    return folder / "responses.jsonl", folder / "run.json"


def _check_manifest_compatible(
    previous: RunManifest | None, path: Path, spec: ModelSpec, sampling: Sampling
) -> None:
    """Resuming with other settings would mix two runs in one file: refuse, say why."""
    if previous is None:
        return
    mismatches = []
    if previous.model_id != spec.checkpoint:
        mismatches.append(f"model id {previous.model_id!r} -> {spec.checkpoint!r}")
    if previous.model_revision != spec.revision:
        mismatches.append(f"revision {previous.model_revision!r} -> {spec.revision!r}")
    recorded = previous.sampling.model_dump() if previous.sampling is not None else {}
    for key, value in sampling.model_dump().items():
        if recorded.get(key) != value:
            mismatches.append(f"{key} {recorded.get(key)!r} -> {value!r}")
    if mismatches:
        raise HolisafeError(
            f"{path}: existing responses were made with other settings ("
            + "; ".join(mismatches)
            + "); use --overwrite to start over or --results for a separate results folder"
        )


@dataclass
class RunPlan:
    """What a run has to do, read from the files: the selected samples (after the shard
    split), those not answered yet, where to write, and what the last invocation recorded."""

    spec: ModelSpec
    options: RunOptions
    samples: list[Sample]
    todo: list[Sample]
    responses_path: Path
    manifest_path: Path
    sampling: Sampling
    previous: RunManifest | None


def plan_run(
    spec: ModelSpec, samples: list[Sample], layout: ResultsLayout, options: RunOptions
) -> RunPlan:
    """The plan step: refuses settings that would mix two runs in one file."""
    if options.shard is not None:
        samples = options.shard.select(samples)
    responses_path, manifest_path = output_paths(layout, spec.name, options.shard)
    sampling = resolve_sampling(spec, options)
    previous = (
        None if options.overwrite else previous_manifest(manifest_path, RunManifest, responses_path)
    )
    _check_manifest_compatible(previous, manifest_path, spec, sampling)
    done = set() if options.overwrite else _complete_ids(responses_path, samples)
    todo = [s for s in samples if s.id not in done]
    return RunPlan(spec, options, samples, todo, responses_path, manifest_path, sampling, previous)


def run_model(
    spec: ModelSpec,
    bench: Benchmark,
    samples: list[Sample],
    layout: ResultsLayout,
    options: RunOptions,
    *,
    provider: Provider | None = None,
    on_record: Callable[[ResponseRecord], None] | None = None,
) -> RunSummary:
    """Answer every selected sample not answered yet. `provider` defaults to the spec's."""
    plan = plan_run(spec, samples, layout, options)
    return execute_run(plan, bench, provider=provider, on_record=on_record)


def execute_run(
    plan: RunPlan,
    bench: Benchmark,
    *,
    provider: Provider | None = None,
    on_record: Callable[[ResponseRecord], None] | None = None,
) -> RunSummary:
    """The execute step: answers `plan.todo`, one record per result, then the manifest."""
    started = time.monotonic()
    summary = RunSummary(
        model=plan.spec.name,
        output=plan.responses_path,
        selected=len(plan.samples),
        already_done=len(plan.samples) - len(plan.todo),
        attempted=len(plan.todo),
        skipped_bad_rows=len(bench.issues),
    )
    manifest = _new_manifest(plan, bench)
    invocation = Invocation(selected=len(plan.samples), attempted=len(plan.todo))
    _continue_history(manifest, plan.previous, invocation)
    if plan.todo:
        if provider is None:
            from holisafe_bench.providers.factory import create_provider

            provider = create_provider(plan.spec)  # fails here, before any sample
        manifest.provider_details = provider.describe()
        manifest.chat_template_hash = manifest.provider_details.get("chat_template_hash")
        write_json_atomic(plan.manifest_path, manifest.model_dump(mode="json"))
        try:
            write_all(
                plan.responses_path,
                ResponseRecord,
                lambda record: _answer(provider, plan, bench, record),
                overwrite=plan.options.overwrite,
                provider=provider,
                summary=summary,
                manifest=manifest,
                invocation=invocation,
                on_record=on_record,
            )
        except BaseException:
            # Interrupted (Ctrl-C) or failed: the records written stay, and so do the
            # counts and tokens of this invocation in the manifest.
            _close_manifest(plan, manifest, invocation, summary, started)
            raise
    _close_manifest(plan, manifest, invocation, summary, started)
    return summary


def _close_manifest(
    plan: RunPlan,
    manifest: RunManifest,
    invocation: Invocation,
    summary: RunSummary,
    started: float,
) -> None:
    _finish_manifest(plan, manifest, invocation, summary)
    summary.elapsed_s = invocation.elapsed_s = round(time.monotonic() - started, 3)
    write_json_atomic(plan.manifest_path, manifest.model_dump(mode="json"))


def _new_manifest(plan: RunPlan, bench: Benchmark) -> RunManifest:
    spec, shard = plan.spec, plan.options.shard
    return RunManifest(
        model=spec.name,
        display_name=spec.display_name,
        group=spec.group,
        model_id=spec.checkpoint,
        model_revision=spec.revision,
        provider=spec.provider,
        sampling=plan.sampling,
        package_versions=package_versions(),
        git_revision=git_revision(),
        dataset=bench.manifest_info(),
        skipped_rows=[issue_to_dict(i) for i in bench.issues],
        shard=None if shard is None else f"{shard.index}/{shard.count}",
    )


def _answer(
    provider: Provider,
    plan: RunPlan,
    bench: Benchmark,
    record: Callable[[ResponseRecord], None],
) -> None:
    spec, options = plan.spec, plan.options
    work = Work(
        samples=plan.todo,
        build=lambda sample: build_request(sample, bench, spec, options),
        on_result=lambda sample, result: record(result_to_record(sample, spec.name, result)),
        on_failure=lambda sample, reason: record(failed_record(sample, spec.name, reason)),
    )
    dispatch(provider, work, DispatchSettings.for_spec(spec, options))


def stored_outcomes(responses_path: Path) -> tuple[dict[int, str], Usage]:
    """The outcome of each stored response, by sample id, and the tokens of every line
    (superseded lines, a failure redone, included: an invocation that was killed wrote its
    lines but never its manifest, so totals come from the lines), in one read. Read on
    the fast path (lines that ResponseRecord accepts unchanged are not built into models;
    any other line is validated as `RecordStore.read` does): at the end of a 4,031-sample
    API run, building every record again cost more CPU than writing them had."""
    tokens = [0, 0]

    def add(row: dict[str, Any]) -> None:
        tokens[0] += row["usage"]["input_tokens"]
        tokens[1] += row["usage"]["output_tokens"]

    store = RecordStore(responses_path, ResponseRecord)
    rows = store.read_dicts(plain_response, plain_responses, each_line=add)
    outcomes = {sample_id: row["outcome"] for sample_id, row in rows.items()}
    return outcomes, Usage(input_tokens=tokens[0], output_tokens=tokens[1])


def _complete_ids(responses_path: Path, samples: list[Sample]) -> set[int]:
    """Samples a resumed run need not redo. A stored response whose sample id names
    another type, category or subcategory in this dataset answered another dataset's
    sample: resuming would mix two benchmarks in one file, so that is refused."""
    rows = RecordStore(responses_path, ResponseRecord).read_dicts(plain_response, plain_responses)
    by_id = {s.id: s for s in samples}
    mixed = [
        (row, by_id[i])
        for i, row in rows.items()
        if i in by_id
        and (row["type"], row["category"], row["subcategory"])
        != (by_id[i].type, by_id[i].category, by_id[i].subcategory)
    ]
    if mixed:
        row, sample = mixed[0]
        raise HolisafeError(
            f"{responses_path}: {len(mixed)} stored response(s) answered other samples than "
            f"this dataset's of the same id (sample {sample.id}: stored {row['type']} "
            f"{row['category']}/{row['subcategory']}, dataset {sample.type} "
            f"{sample.category}/{sample.subcategory}), so they come from another dataset; "
            "use --overwrite to start over or --results for a separate results folder"
        )
    return {i for i, row in rows.items() if outcome_is_complete(row["outcome"])}


def _finish_manifest(
    plan: RunPlan, manifest: RunManifest, invocation: Invocation, summary: RunSummary
) -> None:
    """Counts over the selection as the file now holds it, and its tokens."""
    final, manifest.usage = stored_outcomes(plan.responses_path)
    samples = plan.samples
    manifest.counts = dict(Counter(final[s.id] for s in samples if s.id in final))
    manifest.counts["selected"] = len(samples)
    manifest.counts["missing"] = sum(1 for s in samples if s.id not in final)
    manifest.finished_at = invocation.finished_at = utc_now()
    invocation.outcomes = dict(summary.outcomes)


def _continue_history(
    manifest: RunManifest,
    previous: RunManifest | None,
    invocation: Invocation,
) -> None:
    """A resumed run keeps what earlier invocations recorded: their list, the first start
    time, the token totals and the provider details (a run with nothing to do has none)."""
    if previous is not None:
        manifest.started_at = previous.started_at
        manifest.usage = previous.usage
        manifest.invocations = list(previous.invocations)
        manifest.provider_details = previous.provider_details
        manifest.chat_template_hash = previous.chat_template_hash
    manifest.invocations.append(invocation)  # the same object: filled in as the run goes


def issue_to_dict(issue: Any) -> dict[str, Any]:
    if hasattr(issue, "model_dump"):
        return issue.model_dump(mode="json")
    if hasattr(issue, "__dataclass_fields__"):
        from dataclasses import asdict

        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(issue).items()}
    return {"issue": str(issue)}
