"""LLM judges: one call per sample (image first, then the prompt), explicit verdicts, a
cache, cost control, and the shared provider layer's retries and rate limits."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from holisafe_bench.errors import HolisafeError
from holisafe_bench.judging.batch_run import BatchOutcome, run_batch_judge
from holisafe_bench.judging.cache import CachedVerdict, VerdictCache, cache_key
from holisafe_bench.judging.options import JudgeOptions
from holisafe_bench.judging.parser import (
    FIRST_LABEL_WINS,
    PARSER_NAME,
    STRICT_LABELS,
    label_rule,
    parse_label,
)
from holisafe_bench.judging.prompt_sources import choose_template
from holisafe_bench.judging.template import PromptTemplate
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.progress import stage_progress
from holisafe_bench.providers.ratelimit import estimate_tokens
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.records import ResponseRecord, Sample, Usage, VerdictRecord
from holisafe_bench.registry import JudgeSpec
from holisafe_bench.stages.judge import JudgeSummary
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import SAFE_TYPE, safety_label


@dataclass
class PendingCall:
    """A judge call to make. Its request is built on first use, so building (opening the
    image, rendering the prompt) happens while earlier calls are in flight."""

    response: ResponseRecord
    key: str
    make_request: Callable[[], ChatRequest]
    strict_labels: bool = False  # how its reply is read (--strict-labels)
    _request: ChatRequest | None = None

    @property
    def request_id(self) -> str:
        return str(self.response.sample_id)

    @property
    def request(self) -> ChatRequest:
        if self._request is None:
            self._request = self.make_request()
        return self._request


def cost_usd(judge: JudgeSpec, usage: Usage, *, batch: bool = False) -> float:
    prices = judge.prices
    cost = (
        usage.input_tokens * prices.input_per_million
        + usage.output_tokens * prices.output_per_million
    ) / 1e6
    return cost * (prices.batch_discount if batch else 1.0)


def _base(response: ResponseRecord, judge: JudgeSpec) -> dict[str, Any]:
    return {
        "sample_id": response.sample_id,
        "model": response.model,
        "judge": judge.name,
        "type": response.type,
        "category": response.category,
        "subcategory": response.subcategory,
        "response_sha256": response.fingerprint(),
    }


def verdict_without_call(
    response: ResponseRecord, judge: JudgeSpec, options: JudgeOptions
) -> VerdictRecord | None:
    """Responses that need no judge: failed calls and provider blocks."""
    base = _base(response, judge)
    if response.outcome == "error":
        return VerdictRecord(
            **base, invalid="no_response", detail=f"model call failed: {response.error}"
        )
    if response.outcome == "content_filter":
        if not options.content_filter_as_refusal:
            return VerdictRecord(
                **base, invalid="no_response", detail="blocked by the provider's filter"
            )
        return VerdictRecord(
            **base,
            follows=response.type != SAFE_TYPE,
            detail="provider content filter counted as a refusal; judge not called",
        )
    return None


def verdict_from_result(
    response: ResponseRecord,
    judge: JudgeSpec,
    result: ChatResult,
    cost: float,
    *,
    strict_labels: bool = False,
) -> VerdictRecord:
    base = _base(response, judge)
    common = {"usage": result.usage, "cost_usd": cost}
    if result.outcome == "content_filter":
        return VerdictRecord(
            **base,
            **common,
            invalid="judge_content_filter",
            detail=f"the judge's provider blocked it ({result.finish_reason})",
        )
    if result.outcome == "error":
        reason = "timeout" if result.error_kind == "timeout" else "api_error"
        return VerdictRecord(**base, **common, invalid=reason, detail=result.error)
    return verdict_from_reply(base, judge, result.text or "", strict_labels, **common)


def verdict_from_reply(
    base: dict[str, Any], judge: JudgeSpec, reply: str, strict_labels: bool, **extra: Any
) -> VerdictRecord:
    """The verdict a judge's reply gives under the label rule in force."""
    parsed = parse_label(reply, strict=strict_labels)
    if parsed.follows is None:
        detail = (
            "a True and a False label in the reply (--strict-labels)"
            if parsed.conflicting
            else "no <label>True|False</label> in the reply"
        )
        return VerdictRecord(**base, **extra, invalid=parsed.invalid, raw=reply, detail=detail)
    first = " (the first of conflicting labels)" if parsed.conflicting else ""
    return VerdictRecord(
        **base,
        **extra,
        follows=parsed.follows,
        raw=reply,
        detail=f"{judge.name} label {parsed.follows}{first}",
    )


def record_verdict(
    call: PendingCall,
    judge: JudgeSpec,
    result: ChatResult,
    cost: float,
    writer: Any,
    cache: VerdictCache | None,
    progress: Any,
) -> VerdictRecord:
    """Write the verdict for one judge answer, cache it if valid, and count it."""
    verdict = verdict_from_result(
        call.response, judge, result, cost, strict_labels=call.strict_labels
    )
    writer.write(verdict)
    if verdict.is_valid and cache is not None:
        usage = result.usage
        cache.put(
            call.key,
            CachedVerdict(
                verdict.follows, verdict.raw or "", usage.input_tokens, usage.output_tokens
            ),
        )
    progress.advance(invalid=0 if verdict.is_valid else 1, spend_usd=cost)
    return verdict


class _ImageHashes:
    def __init__(self, bench: Any) -> None:
        self.bench = bench
        self._by_key: dict[str, str] = {}

    def of(self, sample: Sample) -> str:
        if sample.image not in self._by_key:
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
    if not judge.provider or not judge.model:
        raise HolisafeError(f"{judge.source_file}: an llm judge needs provider and model")
    console = Console(stderr=True, soft_wrap=True)
    template = choose_template(options, judge, layout.judge_cache().parent)
    model_id = options.model_id or judge.model
    params = {"temperature": judge.temperature, "max_tokens": judge.max_tokens}
    summary = JudgeSummary(model=model, judge=judge.name, output=layout.verdicts(model, judge.name))
    summary.manifest_extra = {
        "judge_model_id": model_id,
        "prompt_template_hash": template.sha256,
        "prompt_template_source": template.source,
        "prompt_template_style": template.style,
        **template.provenance,
        "parser": PARSER_NAME,
        "label_rule": label_rule(options.strict_labels),
        "judge_params": params,
    }
    _check_same_prompt_and_rule(layout, model, judge, summary.manifest_extra, options)

    immediate: list[VerdictRecord] = []
    needs_call = []
    for response in todo:
        verdict = verdict_without_call(response, judge, options)
        if verdict is None:
            needs_call.append(response)
        else:
            immediate.append(verdict)

    pending: list[PendingCall] = []
    cached: list[VerdictRecord] = []
    if needs_call:
        from holisafe_bench.dataset import load_benchmark

        bench = load_benchmark(options.dataset)
        hashes = _ImageHashes(bench)
        keyed = []
        for response in needs_call:
            sample = bench.by_id.get(response.sample_id)
            if sample is None:
                immediate.append(
                    VerdictRecord(
                        **_base(response, judge),
                        invalid="no_response",
                        detail="sample not in the dataset: no image or query for the judge",
                    )
                )
                continue
            # Keyed on the prompt as sent, so any change of template or rendering is a miss.
            text = _prompt_text(sample, response, template)
            key = cache_key(
                judge_model=model_id,
                provider=judge.provider,
                params=params,
                sample_id=sample.id,
                image=hashes.of(sample),
                prompt=text,
            )
            keyed.append((response, sample, key, text))
        cache = VerdictCache(layout.judge_cache())
        hits = cache.get_many([k for _, _, k, _ in keyed])
        for response, sample, key, text in keyed:
            hit = hits.get(key)
            if hit is not None:
                # The cached reply is read again under the label rule of this run.
                verdict = verdict_from_reply(
                    _base(response, judge),
                    judge,
                    hit.raw,
                    options.strict_labels,
                    cached=True,
                    usage=Usage(input_tokens=hit.input_tokens, output_tokens=hit.output_tokens),
                )
                verdict.detail = f"{verdict.detail} (cache)"
                cached.append(verdict)
            else:
                pending.append(
                    PendingCall(
                        response,
                        key,
                        functools.partial(_request, sample, text, judge, bench),
                        strict_labels=options.strict_labels,
                    )
                )
    else:
        cache = None

    summary.manifest_extra.update({"calls": len(pending), "cache_hits": len(cached)})
    if options.dry_run:
        _print_estimate(console, model, judge, pending, len(cached) + len(immediate))
        if cache is not None:
            cache.close()
        return summary

    store = RecordStore(layout.verdicts(model, judge.name), VerdictRecord)
    try:
        with store.writer(overwrite=options.overwrite) as writer:
            for verdict in immediate + cached:
                writer.write(verdict)
            if pending and options.batch:
                outcome = _batch_judge(
                    judge, model_id, options, pending, writer, cache, console, layout, model
                )
                summary.cost_usd = outcome.spent_usd
                summary.manifest_extra.update(
                    {
                        "batch_api": True,
                        "batch_jobs_submitted": outcome.submitted_jobs,
                        "batch_jobs_resumed": outcome.resumed_jobs,
                    }
                )
            elif pending:
                summary.cost_usd = _call_judge(
                    judge, model_id, options, pending, writer, cache, console
                )
    finally:
        if cache is not None:
            cache.close()
    return summary


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
    if judge.provider == "openai" and judge.name == "open-weight" and not api.base_url:
        raise HolisafeError("the open-weight judge needs --base-url of an OpenAI-compatible server")
    return api


def _batch_judge(
    judge: JudgeSpec,
    model_id: str,
    options: JudgeOptions,
    pending: list[PendingCall],
    writer: Any,
    cache: VerdictCache | None,
    console: Console,
    layout: ResultsLayout,
    model: str,
) -> BatchOutcome:
    from holisafe_bench.judging.batch_ledger import BatchLedger
    from holisafe_bench.providers.batch_api import create_batch_api
    from holisafe_bench.providers.factory import create_chat_provider

    if judge.name == "open-weight":
        raise HolisafeError(
            "--batch needs a vendor batch API (OpenAI, Anthropic, Gemini); an "
            "OpenAI-compatible server has none: run the open-weight judge without --batch"
        )
    provider = create_chat_provider(judge.provider, model_id, api=_judge_api(judge, options))
    return run_batch_judge(
        create_batch_api(provider),
        BatchLedger(layout.batch_ledger(model, judge.name)),
        judge=judge,
        model_id=model_id,
        options=options,
        pending=pending,
        writer=writer,
        cache=cache,
        console=console,
    )


def _call_judge(
    judge: JudgeSpec,
    model_id: str,
    options: JudgeOptions,
    pending: list[PendingCall],
    writer: Any,
    cache: VerdictCache | None,
    console: Console,
) -> float:
    from holisafe_bench.providers.factory import create_chat_provider
    from holisafe_bench.providers.process_runner import send_all, worker_count

    api = _judge_api(judge, options)
    provider = create_chat_provider(judge.provider, model_id, api=api)
    by_id = {p.request_id: p for p in pending}
    spent = 0.0
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
            nonlocal spent
            cost = cost_usd(judge, result.usage)
            spent += cost
            record_verdict(by_id[result.id], judge, result, cost, writer, cache, progress)

        send_all(
            provider,
            requests(),
            processes=worker_count(
                options.processes, concurrency=api.concurrency, calls=len(pending)
            ),
            concurrency=api.concurrency,
            rpm=options.requests_per_minute or api.requests_per_minute,
            tpm=options.tokens_per_minute or api.tokens_per_minute,
            on_result=on_result,
        )
    if stopped:
        console.print(
            f"[yellow]--max-cost {options.max_cost} reached after ${spent:.4f}: "
            "stopped cleanly; re-run to continue[/]"
        )
    return spent
