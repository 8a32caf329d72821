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
from holisafe_bench.judging.verdicts import PendingCall, cost_usd, record_verdict
from holisafe_bench.progress import stage_progress
from holisafe_bench.providers.batch_api import BatchJobApi, JobStatus, item_error
from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.ratelimit import estimate_tokens
from holisafe_bench.providers.retry import RetryPolicy
from holisafe_bench.providers.types import ChatRequest
from holisafe_bench.records import Usage
from holisafe_bench.registry import JudgeSpec


@dataclass
class BatchOutcome:
    spent_usd: float = 0.0
    submitted_jobs: list[str] = field(default_factory=list)
    resumed_jobs: list[str] = field(default_factory=list)
    stale_results: int = 0  # answers for responses that changed since submission: not used


class BatchJudge:
    """One `judge --batch` run: `submit` what no open job covers, `poll` the jobs until they
    end, `collect` each finished job's results into verdicts. `run` does all three."""

    def __init__(
        self,
        api: BatchJobApi,
        ledger: BatchLedger,
        *,
        judge: JudgeSpec,
        model_id: str,
        options: JudgeOptions,
        pending: list[PendingCall],
        writer: Any,
        cache: VerdictCache | None,
        console: Console,
    ) -> None:
        self.api, self.ledger, self.judge, self.model_id = api, ledger, judge, model_id
        self.options, self.writer, self.cache, self.console = options, writer, cache, console
        # Calls sharing a cache key share one request (and its answer).
        self.by_key: dict[str, list[PendingCall]] = {}
        for call in pending:
            self.by_key.setdefault(call.key, []).append(call)
        self.outcome = BatchOutcome()
        self.retry = RetryPolicy()

    def run(self) -> BatchOutcome:
        started = time.monotonic()
        try:
            asyncio.run(self._drive())
        except KeyboardInterrupt:
            self.console.print(
                "[yellow]interrupted: the submitted batch jobs are in the ledger; run the same "
                "command again to resume polling (nothing is submitted twice)[/]"
            )
            raise
        except ProviderCallError as exc:
            raise HolisafeError(
                f"{self.api.vendor} batch API: {exc}. Jobs already submitted are kept in "
                f"{self.ledger.store.path}; run the same command again to resume them."
            ) from None
        if self.outcome.stale_results:
            self.console.print(
                f"{self.outcome.stale_results} batch answers were for responses that changed "
                "since submission: not used"
            )
        self.console.print(
            f"batch judging took {time.monotonic() - started:.1f} s; "
            f"realised cost ${self.outcome.spent_usd:.4f} (batch prices)"
        )
        return self.outcome

    async def _drive(self) -> None:
        try:
            jobs = self.resume()
            jobs += await self.submit({k for j in jobs for k in j.keys})
            if self.options.batch_no_wait:
                self.console.print(
                    f"{len(jobs)} batch job(s) open; run the same command again to collect "
                    "their results"
                )
                return
            await self.poll(jobs)
        finally:
            await self.api.aclose()

    def resume(self) -> list[LedgerEntry]:
        """The jobs a previous run left open: polled, never resubmitted."""
        jobs = self.ledger.open_jobs(self.api.vendor, self.model_id)
        if jobs:
            self.outcome.resumed_jobs = [j.job_id for j in jobs]
            self.console.print(
                f"resuming {len(jobs)} {self.api.vendor} batch job(s) found in the ledger: "
                "polling them, not resubmitting"
            )
        return jobs

    async def submit(self, open_keys: set[str]) -> list[LedgerEntry]:
        """Submit every request no open job covers, in the vendor's chunks, within
        --max-cost; each job is in the ledger the moment the vendor accepts it."""
        # Requests are built (image read, prompt rendered) only for what is submitted.
        items = [(k, calls[0].request) for k, calls in self.by_key.items() if k not in open_keys]
        budget = 0.0
        entries = []
        for chunk in self.api.chunks(items):
            estimate = self._estimated_cost(chunk)
            limit = self.options.max_cost
            if limit is not None and budget + estimate > limit:
                self.console.print(
                    f"[yellow]--max-cost {limit}: not submitting {len(chunk)} more "
                    f"requests (estimated ${estimate:.4f}); re-run to continue[/]"
                )
                break
            entries.append(await self._submit_chunk(chunk))
            budget += estimate
        return entries

    async def _submit_chunk(self, chunk: list[tuple[str, ChatRequest]]) -> LedgerEntry:
        job_id = await self.retry.run(lambda: self.api.submit(chunk))
        entry = LedgerEntry(
            event="submitted",
            job_id=job_id,
            vendor=self.api.vendor,
            judge_model=self.model_id,
            keys=[key for key, _ in chunk],
        )
        self.ledger.record(entry)
        self.outcome.submitted_jobs.append(job_id)
        self.console.print(f"submitted {self.api.vendor} batch {job_id} ({len(chunk)} requests)")
        return entry

    async def poll(self, jobs: list[LedgerEntry]) -> None:
        """Wait for every job to end, collecting each as soon as it has."""
        total = sum(len(j.keys) for j in jobs)
        label = f"judge {self.judge.name} (batch)"
        with stage_progress(label, total, enabled=self.options.show_progress) as progress:
            waiting = list(jobs)
            while waiting:
                waiting = [e for e in waiting if not await self._poll_once(e, progress)]
                if waiting:
                    await asyncio.sleep(self.options.batch_poll_seconds)

    async def _poll_once(self, entry: LedgerEntry, progress: Any) -> bool:
        """Whether the job has ended (and was collected)."""
        status = await self.retry.run(lambda: self.api.status(entry.job_id))
        if not status.ended:
            return False
        results = (
            {}
            if status.failure and status.done == 0
            else await self.retry.run(lambda: self.api.results(entry.job_id, entry.keys))
        )
        self.collect(entry, status, results, progress)
        return True

    def collect(
        self, entry: LedgerEntry, status: JobStatus, results: dict[str, Any], progress: Any
    ) -> None:
        """One verdict per response the ended job covers; a request it did not answer gets
        an invalid verdict saying why."""
        missing = status.failure or "no result for this request in the finished batch"
        for key in entry.keys:
            result = results.get(key) or item_error(key, missing)
            calls = self.by_key.pop(key, [])
            if not calls:
                self.outcome.stale_results += 1
                continue
            cost = cost_usd(self.judge, result.usage, batch=True)
            self.outcome.spent_usd += cost
            for call in calls:
                record_verdict(call, self.judge, result, cost, self.writer, self.cache, progress)
                cost = 0.0  # one request paid for every response that shares its key
        self.ledger.record(
            LedgerEntry(
                event="collected", job_id=entry.job_id, vendor=self.api.vendor, note=missing
            )
        )

    def _estimated_cost(self, items: list[tuple[str, ChatRequest]]) -> float:
        usage = Usage(
            input_tokens=sum(estimate_tokens(r) - r.max_tokens for _, r in items),
            output_tokens=sum(r.max_tokens for _, r in items),
        )
        return cost_usd(self.judge, usage, batch=True)
