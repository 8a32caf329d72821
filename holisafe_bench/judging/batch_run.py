"""`judge --batch`: judge calls through the vendor's batch API.

Every job is written to the ledger the moment the vendor accepts it. A run first collects
the jobs a previous run left open (polling, never resubmitting), then submits what is
still missing, waits, and maps results back by custom id (the cache key). A request the
job did not answer becomes an invalid verdict with the reason, never a silent gap."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from holisafe_bench.errors import HolisafeError
from holisafe_bench.judging.batch_ledger import BatchLedger, LedgerEntry
from holisafe_bench.judging.cache import VerdictCache
from holisafe_bench.judging.options import JudgeOptions
from holisafe_bench.progress import stage_progress
from holisafe_bench.providers.batch_api import BatchJobApi, JobStatus, item_error
from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.ratelimit import estimate_tokens
from holisafe_bench.providers.retry import RetryPolicy
from holisafe_bench.records import Usage
from holisafe_bench.registry import JudgeSpec


@dataclass
class BatchOutcome:
    spent_usd: float = 0.0
    submitted_jobs: list[str] = field(default_factory=list)
    resumed_jobs: list[str] = field(default_factory=list)
    stale_results: int = 0  # answers for responses that changed since submission: not used


def run_batch_judge(
    api: BatchJobApi,
    ledger: BatchLedger,
    *,
    judge: JudgeSpec,
    model_id: str,
    options: JudgeOptions,
    pending: list[Any],
    writer: Any,
    cache: VerdictCache | None,
    console: Console,
) -> BatchOutcome:
    from holisafe_bench.judging.llm import cost_usd, record_verdict

    by_key: dict[str, list[Any]] = {}
    for call in pending:
        by_key.setdefault(call.key, []).append(call)
    outcome = BatchOutcome()
    retry = RetryPolicy()

    def estimated_cost(items: list[tuple[str, Any]]) -> float:
        usage = Usage(
            input_tokens=sum(estimate_tokens(r) - r.max_tokens for _, r in items),
            output_tokens=sum(r.max_tokens for _, r in items),
        )
        return cost_usd(judge, usage, batch=True)

    async def submit_missing(open_keys: set[str]) -> list[LedgerEntry]:
        items = [(key, calls[0].request) for key, calls in by_key.items() if key not in open_keys]
        budget = 0.0
        entries = []
        for chunk in api.chunks(items):
            estimate = estimated_cost(chunk)
            if options.max_cost is not None and budget + estimate > options.max_cost:
                console.print(
                    f"[yellow]--max-cost {options.max_cost}: not submitting {len(chunk)} more "
                    f"requests (estimated ${estimate:.4f}); re-run to continue[/]"
                )
                break
            job_id = await retry.run(lambda chunk=chunk: api.submit(chunk))
            entry = LedgerEntry(
                event="submitted",
                job_id=job_id,
                vendor=api.vendor,
                judge_model=model_id,
                keys=[key for key, _ in chunk],
            )
            ledger.record(entry)
            budget += estimate
            entries.append(entry)
            outcome.submitted_jobs.append(job_id)
            console.print(f"submitted {api.vendor} batch {job_id} ({len(chunk)} requests)")
        return entries

    def collect(entry: LedgerEntry, status: JobStatus, results: dict[str, Any], progress) -> None:
        missing = status.failure or "no result for this request in the finished batch"
        for key in entry.keys:
            result = results.get(key) or item_error(key, missing)
            calls = by_key.pop(key, [])
            if not calls:
                outcome.stale_results += 1
                continue
            cost = cost_usd(judge, result.usage, batch=True)
            outcome.spent_usd += cost
            for call in calls:
                record_verdict(call, judge, result, cost, writer, cache, progress)
                cost = 0.0  # one request paid for every response that shares its key
        ledger.record(
            LedgerEntry(event="collected", job_id=entry.job_id, vendor=api.vendor, note=missing)
        )

    async def drive() -> None:
        try:
            jobs = ledger.open_jobs(api.vendor, model_id)
            if jobs:
                outcome.resumed_jobs = [j.job_id for j in jobs]
                console.print(
                    f"resuming {len(jobs)} {api.vendor} batch job(s) found in the ledger: "
                    "polling them, not resubmitting"
                )
            jobs += await submit_missing({k for j in jobs for k in j.keys})
            if options.batch_no_wait:
                console.print(
                    f"{len(jobs)} batch job(s) open; run the same command again to collect "
                    "their results"
                )
                return
            total = sum(len(j.keys) for j in jobs)
            with stage_progress(
                f"judge {judge.name} (batch)", total, enabled=options.show_progress
            ) as progress:
                waiting = list(jobs)
                while waiting:
                    still = []
                    for entry in waiting:
                        status = await retry.run(lambda e=entry: api.status(e.job_id))
                        if not status.ended:
                            still.append(entry)
                            continue
                        results = (
                            {}
                            if status.failure and status.done == 0
                            else await retry.run(lambda e=entry: api.results(e.job_id, e.keys))
                        )
                        collect(entry, status, results, progress)
                    waiting = still
                    if waiting:
                        await asyncio.sleep(options.batch_poll_seconds)
        finally:
            await api.aclose()

    started = time.monotonic()
    try:
        asyncio.run(drive())
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted: the submitted batch jobs are in the ledger; run the same "
            "command again to resume polling (nothing is submitted twice)[/]"
        )
        raise
    except ProviderCallError as exc:
        raise HolisafeError(
            f"{api.vendor} batch API: {exc}. Jobs already submitted are kept in "
            f"{ledger.store.path}; run the same command again to resume them."
        ) from None
    if outcome.stale_results:
        console.print(
            f"{outcome.stale_results} batch answers were for responses that changed since "
            "submission: not used"
        )
    console.print(
        f"batch judging took {time.monotonic() - started:.1f} s; "
        f"realised cost ${outcome.spent_usd:.4f} (batch prices)"
    )
    return outcome
