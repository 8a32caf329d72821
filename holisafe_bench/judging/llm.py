"""LLM judges: one call per sample (image first, then the prompt), explicit verdicts, a
cache, cost control, and the shared provider layer's retries and rate limits."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from holisafe_bench.errors import HolisafeError
from holisafe_bench.judging.batch_run import BatchOutcome, run_batch_judge
from holisafe_bench.judging.cache import CachedVerdict, VerdictCache, cache_key
from holisafe_bench.judging.options import JudgeOptions
from holisafe_bench.judging.parser import PARSER_NAME, parse_label
from holisafe_bench.judging.stage import JudgeSummary
from holisafe_bench.judging.template import PromptTemplate, load_template
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.progress import stage_progress
from holisafe_bench.providers.ratelimit import estimate_tokens
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.records import ResponseRecord, Sample, Usage, VerdictRecord
from holisafe_bench.registry import JudgeSpec
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import SAFE_TYPE, safety_label


@dataclass
class PendingCall:
    """A judge call to make. Its request is built on first use, so building (opening the
    image, rendering the prompt) happens while earlier calls are in flight."""

    response: ResponseRecord
    key: str
    make_request: Callable[[], ChatRequest]
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
    response: ResponseRecord, judge: JudgeSpec, result: ChatResult, cost: float
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
    parsed = parse_label(result.text or "")
    if parsed.follows is None:
        return VerdictRecord(
            **base,
            **common,
            invalid=parsed.invalid,
            raw=result.text,
            detail="no single <label>True|False</label> in the reply",
        )
    return VerdictRecord(
        **base,
        **common,
        follows=parsed.follows,
        raw=result.text,
        detail=f"{judge.name} label {parsed.follows}",
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
    verdict = verdict_from_result(call.response, judge, result, cost)
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
    template = load_template(options.prompt_file or judge.prompt_template or "default.txt")
    model_id = options.model_id or judge.model
    params = {"temperature": judge.temperature, "max_tokens": judge.max_tokens}
    summary = JudgeSummary(model=model, judge=judge.name, output=layout.verdicts(model, judge.name))
    summary.manifest_extra = {
        "judge_model_id": model_id,
        "prompt_template_hash": template.sha256,
        "prompt_template_source": template.source,
        "parser": PARSER_NAME,
        "judge_params": params,
    }

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
            key = cache_key(
                judge_model=model_id,
                provider=judge.provider,
                params=params,
                template=template.sha256,
                sample_id=sample.id,
                image=hashes.of(sample),
                query=sample.query,
                response=response.text,
            )
            keyed.append((response, sample, key))
        cache = VerdictCache(layout.judge_cache())
        hits = cache.get_many([k for _, _, k in keyed])
        for response, sample, key in keyed:
            hit = hits.get(key)
            if hit is not None:
                cached.append(
                    VerdictRecord(
                        **_base(response, judge),
                        follows=hit.follows,
                        raw=hit.raw,
                        cached=True,
                        usage=Usage(input_tokens=hit.input_tokens, output_tokens=hit.output_tokens),
                        detail=f"{judge.name} label {hit.follows} (cache)",
                    )
                )
            else:
                pending.append(
                    PendingCall(
                        response,
                        key,
                        functools.partial(_request, sample, response, template, judge, bench),
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


def _request(
    sample: Sample, response: ResponseRecord, template: PromptTemplate, judge: JudgeSpec, bench: Any
) -> ChatRequest:
    text = template.render(
        query=sample.query, safety_label=safety_label(sample.type), response=response.text or ""
    )
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
