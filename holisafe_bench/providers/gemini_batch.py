"""Gemini batch mode with inline requests: `POST /v1beta/models/{model}:batchGenerateContent`,
polled with `GET /v1beta/batches/{id}`; the inline responses come back with the job.

Inline jobs are capped at 20 MB, so a judge run with images becomes several jobs."""

from __future__ import annotations

from typing import Any

from holisafe_bench.providers.batch_api import BatchJobApi, JobStatus, item_error
from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.gemini_provider import (
    GeminiProvider,
    enum_name,
    generate_result,
    rest_dump,
)
from holisafe_bench.providers.types import ChatRequest, ChatResult

_SUCCEEDED = {"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"}
_FAILED = {"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
KEY_FIELD = "holisafe_key"


class GeminiBatchApi(BatchJobApi):
    vendor = "gemini"
    max_requests = 10_000
    max_bytes = 19 * 10**6

    provider: GeminiProvider

    async def submit(self, items: list[tuple[str, ChatRequest]]) -> str:
        from google.genai import types

        inline = []
        for custom_id, request in items:
            contents, config = self.provider.contents_and_config(request)
            inline.append(
                types.InlinedRequest(
                    contents=contents, config=config, metadata={KEY_FIELD: custom_id}
                )
            )
        job = await self._guard(
            self._sdk().aio.batches.create(
                model=self.provider.model_id,
                src=inline,
                config={"display_name": "holisafe-bench judge"},
            )
        )
        return job.name

    async def status(self, job_id: str) -> JobStatus:
        job = await self._guard(self._sdk().aio.batches.get(name=job_id))
        state = enum_name(job.state)
        # The Developer API reports no per-request counts through the SDK: 0 until it ends.
        stats = job.completion_stats
        done = ((stats.successful_count or 0) + (stats.failed_count or 0)) if stats else 0
        failure = None
        if state in _FAILED:
            detail = getattr(getattr(job, "error", None), "message", None)
            failure = f"batch {state.removeprefix('JOB_STATE_').lower()}" + (
                f": {detail}" if detail else ""
            )
        return JobStatus(state in _SUCCEEDED | _FAILED, done, 0, failure)

    async def results(self, job_id: str, custom_ids: list[str]) -> dict[str, ChatResult]:
        job = await self._guard(self._sdk().aio.batches.get(name=job_id))
        responses = (job.dest.inlined_responses if job.dest else None) or []
        out: dict[str, ChatResult] = {}
        for position, item in enumerate(responses):
            metadata = item.metadata or {}
            # Answers carry our key back; without it, they come in request order.
            custom_id = metadata.get(KEY_FIELD) or (
                custom_ids[position] if position < len(custom_ids) else None
            )
            if custom_id is None:
                continue
            if item.error is not None:
                out[custom_id] = item_error(custom_id, str(item.error.message or item.error))
            elif item.response is None:
                out[custom_id] = item_error(custom_id, "no response")
            else:
                try:
                    out[custom_id] = generate_result(custom_id, rest_dump(item.response))
                except ProviderCallError as exc:
                    out[custom_id] = item_error(custom_id, str(exc))
        return out

    async def _close(self, client: Any) -> None:
        await client.aio.aclose()
