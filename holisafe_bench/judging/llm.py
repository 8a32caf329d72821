"""LLM judges: one call per sample (image first, then the prompt), explicit verdicts, a
cache, cost control, and the shared provider layer's retries and rate limits."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from holisafe_bench.errors import HolisafeError
from holisafe_bench.judging.batch_ledger import BatchLedger
from holisafe_bench.judging.batch_run import BatchJudge, BatchOutcome
from holisafe_bench.judging.cache import CachedVerdict, VerdictCache, cache_key
from holisafe_bench.judging.options import JudgeOptions
from holisafe_bench.judging.parser import (
    FIRST_LABEL_WINS,
    STRICT_LABELS,
    label_rule,
)
from holisafe_bench.judging.prompt_sources import choose_template
from holisafe_bench.judging.template import PromptTemplate
from holisafe_bench.judging.verdicts import (
    JudgeSummary,
    PendingCall,
    cost_usd,
    record_verdict,
    verdict_base,
    verdict_from_reply,
    verdict_without_call,
)
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.progress import stage_progress
from holisafe_bench.providers.ratelimit import estimate_tokens
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.records import ResponseRecord, Sample, Usage, VerdictRecord
from holisafe_bench.registry import JudgeSpec
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import safety_label


class _ImageHashes:
    def __init__(self, bench: Any) -> None:
        self.bench = bench
        self._by_key: dict[str, str] = {}

    def of(self, sample: Sample) -> str:
        if sample.image not in self._by_key:
            store = getattr(self.bench, "images", None)
            if hasattr(store, "digest"):
                # The store's own sha256 of the same bytes, which the decode check before
                # sending reuses: each image is read and hashed once, not twice.
                self._by_key[sample.image] = store.digest(sample.image)
            else:
                data = self.bench.image_bytes(sample)
                self._by_key[sample.image] = hashlib.sha256(data).hexdigest()
        return self._by_key[sample.image]


def run_llm_judge(
    model: str,
    judge: JudgeSpec,
    layout: ResultsLayout,
    options: JudgeOptions,
    todo: list[ResponseRecord],
) -> JudgeSummary:
    """Verdicts for `todo`: without a call where none is needed, from the cache where the
    same prompt was judged before, else by calls (live or through the batch API)."""
    if not judge.provider or not judge.model:
        raise HolisafeError(f"{judge.source_file}: an llm judge needs provider and model")
    console = Console(stderr=True, soft_wrap=True)
    template = choose_template(options, judge, layout.judge_cache().parent)
    model_id = options.model_id or judge.model
    params = {"temperature": judge.temperature, "max_tokens": judge.max_tokens}
    summary = JudgeSummary(model=model, judge=judge.name, output=layout.verdicts(model, judge.name))
    summary.manifest_extra = _manifest_extra(template, model_id, params, options)
    _check_same_prompt_and_rule(layout, model, judge, summary.manifest_extra, options)

    work = _sort_out(todo, judge, options, _CacheKeys(template, model_id, judge.provider, params))
    cache = _open_cache(work, layout, judge, options)
    summary.manifest_extra.update({"calls": len(work.pending), "cache_hits": len(work.cached)})
    try:
        if options.dry_run:
            answered = len(work.cached) + len(work.immediate)
            _print_estimate(console, model, judge, work.pending, answered)
            return summary
        store = RecordStore(layout.verdicts(model, judge.name), VerdictRecord)
        with store.writer(overwrite=options.overwrite) as writer:
            for verdict in work.immediate + work.cached:
                writer.write(verdict)
            if work.pending:
                calls = _Calls(judge, model_id, options, work.pending, writer, cache, console)
                _judge_pending(calls, summary, layout, model)
    finally:
        if cache is not None:
            cache.close()
    return summary


def _manifest_extra(
    template: PromptTemplate, model_id: str, params: dict[str, Any], options: JudgeOptions
) -> dict[str, Any]:
    return {
        "judge_model_id": model_id,
        "prompt_template_hash": template.sha256,
        "prompt_template_source": template.source,
        "prompt_template_style": template.style,
        **template.provenance,
        "label_rule": label_rule(options.strict_labels),
        "judge_params": params,
    }


@dataclass(frozen=True)
class _CacheKeys:
    """What a cached verdict depends on besides the sample: the prompt and the judge call."""

    template: PromptTemplate
    model_id: str
    provider: str
    params: dict[str, Any]

    def key(self, sample: Sample, image_sha256: str, text: str) -> str:
        # Keyed on the prompt as sent, so any change of template or rendering is a miss.
        return cache_key(
            judge_model=self.model_id,
            provider=self.provider,
            params=self.params,
            sample_id=sample.id,
            image=image_sha256,
            prompt=text,
        )


@dataclass
class _Work:
    """The responses to judge, sorted by how: verdicts known without a call (written first,
    in this order), those found in the cache, and the calls to make. `keyed` (response,
    sample, cache key, prompt) waits for the cache; `bench` is loaded once anything does."""

    immediate: list[VerdictRecord] = field(default_factory=list)
    cached: list[VerdictRecord] = field(default_factory=list)
    pending: list[PendingCall] = field(default_factory=list)
    keyed: list[tuple[ResponseRecord, Sample, str, str]] = field(default_factory=list)
    bench: Any = None


def _sort_out(
    todo: list[ResponseRecord], judge: JudgeSpec, options: JudgeOptions, keys: _CacheKeys
) -> _Work:
    """Verdicts that need no call, and the cache key of every response that needs one."""
    work = _Work()
    needs_call = []
    for response in todo:
        verdict = verdict_without_call(
            response,
            judge.name,
            content_filter_as_refusal=options.content_filter_as_refusal,
            filter_note="; judge not called",
        )
        if verdict is None:
            needs_call.append(response)
        else:
            work.immediate.append(verdict)
    if not needs_call:
        return work
    from holisafe_bench.dataset import load_benchmark

    work.bench = load_benchmark(options.dataset)
    hashes = _ImageHashes(work.bench)
    for response in needs_call:
        sample = work.bench.by_id.get(response.sample_id)
        if sample is None:
            work.immediate.append(
                VerdictRecord(
                    **verdict_base(response, judge.name),
                    invalid="no_response",
                    detail="sample not in the dataset: no image or query for the judge",
                )
            )
            continue
        text = _prompt_text(sample, response, keys.template)
        work.keyed.append((response, sample, keys.key(sample, hashes.of(sample), text), text))
    return work


def _open_cache(
    work: _Work, layout: ResultsLayout, judge: JudgeSpec, options: JudgeOptions
) -> VerdictCache | None:
    """The cache, when anything needs a call: its hits become verdicts, the rest calls."""
    if work.bench is None:
        return None
    cache = VerdictCache(layout.judge_cache())
    hits = cache.get_many([key for _, _, key, _ in work.keyed])
    for response, sample, key, text in work.keyed:
        hit = hits.get(key)
        if hit is not None:
            work.cached.append(_cached_verdict(response, judge, hit, options.strict_labels))
            continue
        request = functools.partial(_request, sample, text, judge, work.bench)
        work.pending.append(
            PendingCall(response, key, request, strict_labels=options.strict_labels)
        )
    return cache


def _cached_verdict(
    response: ResponseRecord, judge: JudgeSpec, hit: CachedVerdict, strict_labels: bool
) -> VerdictRecord:
    # The cached reply is read again under the label rule of this run.
    verdict = verdict_from_reply(
        verdict_base(response, judge.name),
        judge,
        hit.raw,
        strict_labels,
        cached=True,
        usage=Usage(input_tokens=hit.input_tokens, output_tokens=hit.output_tokens),
    )
    verdict.detail = f"{verdict.detail} (cache)"
    return verdict


def _prompt_text(sample: Sample, response: ResponseRecord, template: PromptTemplate) -> str:
    return template.render(
        query=sample.query, safety_label=safety_label(sample.type), response=response.text or ""
    )


def _check_same_prompt_and_rule(
    layout: ResultsLayout, model: str, judge: JudgeSpec, current: dict, options: JudgeOptions
) -> None:
    """Refuse to mix verdicts made with another prompt, or valid ones a switch to the strict
    label rule would invalidate, in one file (its manifest would describe only this run).
    Invalid verdicts are redone anyway, so a switch to first-label-wins needs nothing."""
    path = layout.judge_manifest(model, judge.name)
    if options.overwrite or not path.is_file() or not layout.verdicts(model, judge.name).is_file():
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # an unreadable manifest is rewritten at the end of this run
    fields = ("prompt_template_hash", "prompt_template_style")
    old_prompt = tuple(previous.get(f, current[f]) for f in fields)
    if old_prompt != tuple(current[f] for f in fields):
        change = f"another judge prompt ({previous.get('prompt_template_source')})"
    elif current["label_rule"] == STRICT_LABELS and previous.get("label_rule") == FIRST_LABEL_WINS:
        change = "the first-label-wins rule"
    else:
        return
    raise HolisafeError(
        f"{layout.verdicts(model, judge.name)}: its verdicts were made with {change}; add "
        "--overwrite to redo them all (cached judge replies cost nothing), or use another "
        "--results folder"
    )


def _request(sample: Sample, text: str, judge: JudgeSpec, bench: Any) -> ChatRequest:
    return ChatRequest(
        id=str(sample.id),
        text=text,
        images=(bench.image(sample),),
        max_tokens=judge.max_tokens,
        temperature=judge.temperature,
    )


def _print_estimate(
    console: Console, model: str, judge: JudgeSpec, pending: list[PendingCall], answered: int
) -> None:
    tokens_in = sum(estimate_tokens(p.request) - p.request.max_tokens for p in pending)
    tokens_out = sum(p.request.max_tokens for p in pending)
    usage = Usage(input_tokens=tokens_in, output_tokens=tokens_out)
    console.print(
        f"[bold]{model}[/] / {judge.name} (dry run): {len(pending)} judge calls, {answered} "
        f"answered without a call (cache or no response); about {tokens_in:,} input tokens "
        f"(images included) and at most {tokens_out:,} output tokens; estimated cost "
        f"${cost_usd(judge, usage):.2f} (batch API ${cost_usd(judge, usage, batch=True):.2f}) "
        f"at {judge.prices.input_per_million}/{judge.prices.output_per_million} USD per "
        "million tokens"
    )


def _judge_api(judge: JudgeSpec, options: JudgeOptions):
    updates: dict[str, Any] = {}
    if options.base_url:
        updates["base_url"] = options.base_url
    if options.concurrency:
        updates["concurrency"] = options.concurrency
    api = judge.api.model_copy(update=updates)
    if judge.requires_base_url and not api.base_url:
        raise HolisafeError(
            f"the {judge.name} judge needs --base-url of an OpenAI-compatible server"
        )
    return api


@dataclass
class _Calls:
    """The judge calls to make, and where their verdicts go."""

    judge: JudgeSpec
    model_id: str
    options: JudgeOptions
    pending: list[PendingCall]
    writer: Any
    cache: VerdictCache | None
    console: Console


def _judge_pending(calls: _Calls, summary: JudgeSummary, layout: ResultsLayout, model: str) -> None:
    if not calls.options.batch:
        summary.cost_usd, made = _call_judge(calls)
        summary.left_undone = len(calls.pending) - made
        summary.manifest_extra["calls"] = made
        return
    outcome = _batch_judge(calls, layout, model)
    summary.cost_usd = outcome.spent_usd
    summary.manifest_extra.update(
        {
            "batch_api": True,
            "batch_jobs_submitted": outcome.submitted_jobs,
            "batch_jobs_resumed": outcome.resumed_jobs,
        }
    )


def _batch_judge(calls: _Calls, layout: ResultsLayout, model: str) -> BatchOutcome:
    from holisafe_bench.providers.factory import create_batch_api, create_chat_provider

    judge = calls.judge
    if not judge.batch_api:
        raise HolisafeError(
            "--batch needs a vendor batch API (OpenAI, Anthropic, Gemini); an "
            f"OpenAI-compatible server has none: run the {judge.name} judge without --batch"
        )
    api = _judge_api(judge, calls.options)
    provider = create_chat_provider(judge.provider, calls.model_id, api=api)
    return BatchJudge(
        create_batch_api(provider),
        BatchLedger(layout.batch_ledger(model, judge.name)),
        judge=judge,
        model_id=calls.model_id,
        options=calls.options,
        pending=calls.pending,
        writer=calls.writer,
        cache=calls.cache,
        console=calls.console,
    ).run()


def _call_judge(calls: _Calls) -> tuple[float, int]:
    """Live calls through the shared provider layer: (USD spent, calls made). With
    --max-cost, no call starts once the calls returned have cost the limit; the calls
    then in flight (up to --concurrency) still finish and are paid for."""
    from holisafe_bench.providers.factory import create_chat_provider
    from holisafe_bench.providers.process_runner import send_all

    judge, options, pending = calls.judge, calls.options, calls.pending
    api = _judge_api(judge, options)
    provider = create_chat_provider(judge.provider, calls.model_id, api=api)
    by_id = {p.request_id: p for p in pending}
    spent = 0.0
    done = 0
    stopped = False

    def requests():
        nonlocal stopped
        for call in pending:
            if options.max_cost is not None and spent >= options.max_cost:
                stopped = True
                return
            yield call.request

    with stage_progress(
        f"judge {judge.name}", len(pending), enabled=options.show_progress
    ) as progress:

        def on_result(result: ChatResult) -> None:
            nonlocal spent, done
            cost = cost_usd(judge, result.usage)
            spent += cost
            done += 1
            call = by_id[result.id]
            record_verdict(call, judge, result, cost, calls.writer, calls.cache, progress)

        send_all(
            provider,
            requests(),
            processes=options.processes,
            calls=len(pending),
            concurrency=api.concurrency,
            rpm=options.requests_per_minute or api.requests_per_minute,
            tpm=options.tokens_per_minute or api.tokens_per_minute,
            on_result=on_result,
        )
    if stopped:
        calls.console.print(
            f"[yellow]--max-cost {options.max_cost} reached after ${spent:.4f}: "
            f"stopped cleanly with {len(pending) - done} call(s) not made; re-run to continue[/]"
        )
    return spent, done
