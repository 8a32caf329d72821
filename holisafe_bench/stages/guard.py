"""The `guard` stage: a guard's verdict on every selected sample, written resumably to
results/<guard>/guard/<protocol>.jsonl with a manifest beside it.

Generative guards (Llama Guard, LLaVAGuard, zero-shot chat models) go through the same
provider drivers as `run` (stages/dispatch.py); classifier guards (a Safe-VLM's safety head,
ShieldGemma 2) through one forward pass per batch. Either way each verdict is appended as
soon as it is known, by one writer, and a re-run redoes only errors and missing samples.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.guarding.prompts import GuardPrompt, guard_prompt
from holisafe_bench.guarding.records import GuardManifest, GuardRecord
from holisafe_bench.guarding.spec import GuardSpec
from holisafe_bench.guarding.verdict import GuardOutput
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.provenance import git_revision, package_versions
from holisafe_bench.providers.base import ClassifierProvider, ClassifyResult, Provider
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.records import Invocation, Sample, utc_now
from holisafe_bench.registry import ModelSpec
from holisafe_bench.stages.dispatch import DispatchSettings, Work, built_requests, dispatch
from holisafe_bench.stages.writing import previous_manifest, write_all
from holisafe_bench.store import RecordStore, write_json_atomic

if TYPE_CHECKING:
    from holisafe_bench.dataset import Benchmark


@dataclass
class GuardOptions:
    protocol: str = "image"
    overwrite: bool = False
    batch_size: int | None = None
    concurrency: int | None = None
    processes: int | None = None


@dataclass
class GuardSummary:
    guard: str
    protocol: str
    output: Path
    selected: int = 0
    already_done: int = 0
    attempted: int = 0
    outcomes: Counter = field(default_factory=Counter)
    elapsed_s: float = 0.0


@dataclass
class GuardPlan:
    """What a guard run has to do, read from the files, before any write."""

    spec: GuardSpec
    model: ModelSpec  # what the provider layer loads
    options: GuardOptions
    prompt: GuardPrompt
    taxonomy: dict[str, str]
    samples: list[Sample]
    todo: list[Sample]
    verdicts_path: Path
    manifest_path: Path
    previous: GuardManifest | None


def plan_guard(
    spec: GuardSpec, samples: list[Sample], layout: ResultsLayout, options: GuardOptions
) -> GuardPlan:
    """Refuses a protocol the guard cannot take, and settings that would mix two runs."""
    from holisafe_bench.guarding.taxonomy_maps import load_taxonomy

    protocol = options.protocol
    if protocol not in spec.protocols:
        raise HolisafeError(
            f"guard {spec.name!r} takes only --protocol {' or '.join(spec.protocols)} "
            f"(it classifies {_what_it_sees(spec)}), not {protocol!r}"
        )
    model = spec.model_spec()
    prompt = guard_prompt(spec, protocol)
    verdicts_path = layout.guard_verdicts(spec.name, protocol)
    manifest_path = layout.guard_manifest(spec.name, protocol)
    previous = (
        None
        if options.overwrite
        else previous_manifest(manifest_path, GuardManifest, verdicts_path)
    )
    _check_compatible(previous, manifest_path, spec, model, prompt)
    store = RecordStore(verdicts_path, GuardRecord)
    done = set() if options.overwrite else store.done_keys(lambda r: r.is_complete)
    todo = [s for s in samples if s.id not in done]
    return GuardPlan(
        spec, model, options, prompt, load_taxonomy(spec.taxonomy), samples, todo,
        verdicts_path, manifest_path, previous,
    )  # fmt: skip


def _what_it_sees(spec: GuardSpec) -> str:
    return "images only" if spec.protocols == ("image",) else "image+query requests"


def _check_compatible(
    previous: GuardManifest | None,
    path: Path,
    spec: GuardSpec,
    model: ModelSpec,
    prompt: GuardPrompt,
) -> None:
    if previous is None:
        return
    now = {
        "model id": model.checkpoint,
        "revision": model.revision,
        "parser": spec.parser,
        "taxonomy": spec.taxonomy,
        "prompt template": prompt.sha256,
        "max_tokens": None if spec.is_classifier else spec.max_tokens,
    }
    before = {
        "model id": previous.model_id,
        "revision": previous.model_revision,
        "parser": previous.parser,
        "taxonomy": previous.taxonomy,
        "prompt template": previous.prompt_sha256,
        "max_tokens": previous.max_tokens,
    }
    changed = [f"{k} {before[k]!r} -> {now[k]!r}" for k in now if before[k] != now[k]]
    if changed:
        raise HolisafeError(
            f"{path}: existing guard verdicts were made with other settings ("
            + "; ".join(changed)
            + "); use --overwrite to start over or --results for a separate results folder"
        )


def run_guard(
    spec: GuardSpec,
    bench: Benchmark,
    samples: list[Sample],
    layout: ResultsLayout,
    options: GuardOptions,
    *,
    provider: Provider | None = None,
    on_record: Callable[[GuardRecord], None] | None = None,
) -> GuardSummary:
    plan = plan_guard(spec, samples, layout, options)
    return execute_guard(plan, bench, provider=provider, on_record=on_record)


def execute_guard(
    plan: GuardPlan,
    bench: Benchmark,
    *,
    provider: Provider | None = None,
    on_record: Callable[[GuardRecord], None] | None = None,
) -> GuardSummary:
    """The execute step: a verdict for each of `plan.todo`, then the manifest."""
    started = time.monotonic()
    summary = GuardSummary(
        guard=plan.spec.name,
        protocol=plan.options.protocol,
        output=plan.verdicts_path,
        selected=len(plan.samples),
        already_done=len(plan.samples) - len(plan.todo),
        attempted=len(plan.todo),
    )
    manifest = _new_manifest(plan, bench)
    invocation = Invocation(selected=len(plan.samples), attempted=len(plan.todo))
    if plan.todo:
        provider = provider or _create_provider(plan)  # fails here, before any sample
        manifest.provider_details = provider.describe()
        write_json_atomic(plan.manifest_path, manifest.model_dump(mode="json"))
        write_all(
            plan.verdicts_path,
            GuardRecord,
            lambda record: _classify_all(provider, plan, bench, record),
            overwrite=plan.options.overwrite,
            provider=provider,
            summary=summary,
            manifest=manifest,
            invocation=invocation,
            on_record=on_record,
        )
    manifest.invocations.append(invocation)
    _finish_manifest(plan, manifest, invocation, summary)
    summary.elapsed_s = invocation.elapsed_s = round(time.monotonic() - started, 3)
    write_json_atomic(plan.manifest_path, manifest.model_dump(mode="json"))
    return summary


def _create_provider(plan: GuardPlan) -> Provider:
    from holisafe_bench.providers.factory import create_classifier, create_provider

    if plan.spec.is_classifier:
        return create_classifier(plan.spec.kind, plan.model, plan.spec.classifier_options)
    return create_provider(plan.model)


def _new_manifest(plan: GuardPlan, bench: Benchmark) -> GuardManifest:
    from holisafe_bench.stages.run import issue_to_dict

    spec, previous = plan.spec, plan.previous
    manifest = GuardManifest(
        guard=spec.name,
        display_name=spec.display_name,
        protocol=plan.options.protocol,
        kind=spec.kind,
        model_id=plan.model.checkpoint,
        model_revision=plan.model.revision,
        provider=plan.model.provider,
        parser=spec.parser,
        taxonomy=spec.taxonomy,
        prompt_sha256=plan.prompt.sha256,
        max_tokens=None if spec.is_classifier else spec.max_tokens,
        package_versions=package_versions(),
        git_revision=git_revision(),
        dataset=bench.manifest_info(),
        skipped_rows=[issue_to_dict(i) for i in bench.issues],
    )
    if previous is not None:  # a resumed run keeps what earlier invocations recorded
        manifest.started_at = previous.started_at
        manifest.usage = previous.usage
        manifest.invocations = list(previous.invocations)
        manifest.provider_details = previous.provider_details
    return manifest


def _finish_manifest(
    plan: GuardPlan, manifest: GuardManifest, invocation: Invocation, summary: GuardSummary
) -> None:
    final = RecordStore(plan.verdicts_path, GuardRecord).read()
    held = [final[s.id] for s in plan.samples if s.id in final]
    counts = Counter(r.outcome for r in held)
    counts["predicted_unsafe"] = sum(1 for r in held if r.unsafe)
    counts["selected"] = len(plan.samples)
    counts["missing"] = len(plan.samples) - len(held)
    manifest.counts = dict(counts)
    manifest.finished_at = invocation.finished_at = utc_now()
    invocation.outcomes = dict(summary.outcomes)


# --- from samples to verdicts ---------------------------------------------------------------


def guard_request(sample: Sample, bench: Benchmark, plan: GuardPlan) -> ChatRequest:
    spec = plan.spec
    return ChatRequest(
        id=str(sample.id),
        text=plan.prompt.render(sample.query),
        images=(bench.image(sample),),
        max_tokens=spec.max_tokens,
        temperature=0.0,
        logprobs=spec.logprobs,
    )


def _classify_all(
    provider: Provider, plan: GuardPlan, bench: Benchmark, record: Callable[[GuardRecord], None]
) -> None:
    spec, protocol = plan.spec, plan.options.protocol

    def failed(sample: Sample, reason: str) -> None:
        record(GuardRecord.for_sample(sample, spec.name, protocol, outcome="error", reason=reason))

    work = Work(
        samples=plan.todo,
        build=lambda sample: guard_request(sample, bench, plan),
        on_result=lambda sample, result: record(_from_chat(sample, result, plan)),
        on_failure=failed,
    )
    if isinstance(provider, ClassifierProvider):
        _run_classifier(provider, work, plan, record)
    else:
        dispatch(provider, work, DispatchSettings.for_spec(plan.model, plan.options))


def _run_classifier(
    provider: ClassifierProvider,
    work: Work,
    plan: GuardPlan,
    record: Callable[[GuardRecord], None],
) -> None:
    size = plan.options.batch_size or plan.model.engine.batch_size or provider.batch_size
    for batch, results in classify_pipelined(provider, _chunks(built_requests(work), size)):
        for (sample, _), result in zip(batch, results, strict=True):
            record(_from_probs(sample, result, plan))


def classify_pipelined(
    provider: ClassifierProvider, batches: Iterable[list[tuple[Any, ChatRequest]]]
) -> Iterator[tuple[list, list[ClassifyResult]]]:
    """(batch, results) for each batch of (tag, request) pairs, in order. When the provider
    `prepares_ahead` (its forward pass runs on an accelerator), the next batch is prepared
    (images decoded, preprocessed, tokenised) in a worker thread while this one's forward
    pass runs, so the device waits on no per-sample work; otherwise each batch is prepared
    just before its forward pass."""
    from concurrent.futures import ThreadPoolExecutor

    def requests(batch: list) -> list[ChatRequest]:
        return [request for _, request in batch]

    def finish(batch: list, prepared: Any) -> tuple[list, list[ClassifyResult]]:
        results = provider.classify_prepared(prepared)
        if len(results) != len(batch):
            raise HolisafeError(
                f"classifier returned {len(results)} results for a batch of {len(batch)}"
            )
        return batch, results

    if not provider.prepares_ahead:
        for batch in batches:
            yield finish(batch, provider.prepare(requests(batch)))
        return
    with ThreadPoolExecutor(1, thread_name_prefix="guard-prepare") as pool:
        waiting = None
        for batch in batches:
            prepared = pool.submit(provider.prepare, requests(batch))
            if waiting is not None:
                yield finish(waiting[0], waiting[1].result())
            waiting = (batch, prepared)
        if waiting is not None:
            yield finish(waiting[0], waiting[1].result())


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _parse(plan: GuardPlan, output: GuardOutput):
    from holisafe_bench.guarding.parsers import get_guard_parser

    return get_guard_parser(plan.spec.parser)(output, plan.taxonomy)


def _from_chat(sample: Sample, result: ChatResult, plan: GuardPlan) -> GuardRecord:
    name, protocol = plan.spec.name, plan.options.protocol
    common = {"usage": result.usage, "latency_s": result.latency_s}
    if result.outcome == "error":
        reason = result.error or "no output"
        return GuardRecord.for_sample(
            sample, name, protocol, outcome="error", reason=reason, **common
        )
    if result.outcome == "content_filter":  # the vendor blocked the guard's reply
        return GuardRecord.for_sample(
            sample, name, protocol, outcome="invalid",
            reason="content_filter: the provider blocked the guard's output", **common,
        )  # fmt: skip
    output = GuardOutput(text=result.text, first_token_logprobs=result.first_token_logprobs)
    verdict = _parse(plan, output)
    return GuardRecord.from_verdict(sample, name, protocol, verdict, raw=result.text, **common)


def _from_probs(sample: Sample, result: ClassifyResult, plan: GuardPlan) -> GuardRecord:
    name, protocol = plan.spec.name, plan.options.protocol
    if result.probs is None:
        return GuardRecord.for_sample(
            sample, name, protocol, outcome="error", reason=result.error,
            latency_s=result.latency_s,
        )  # fmt: skip
    verdict = _parse(plan, GuardOutput(probs=result.probs))
    return GuardRecord.from_verdict(
        sample, name, protocol, verdict, probs=result.probs, latency_s=result.latency_s
    )
