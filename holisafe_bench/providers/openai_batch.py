"""OpenAI Batch API: a JSONL file of chat-completion requests (`POST /v1/files`), a batch
over it (`POST /v1/batches`), polled (`GET /v1/batches/{id}`), then the output and error
files (`GET /v1/files/{id}/content`)."""

from __future__ import annotations

import json

from holisafe_bench.providers.batch_api import BatchJobApi, JobStatus, item_error
from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.openai_provider import BLOCK_CODES, OpenAIProvider, completion_result
from holisafe_bench.providers.types import ChatRequest, ChatResult

_ENDED = {"completed", "failed", "expired", "cancelled"}
ENDPOINT = "/v1/chat/completions"


class OpenAIBatchApi(BatchJobApi):
    vendor = "openai"
    max_requests = 50_000
    max_bytes = 190 * 10**6  # the input file may hold 200 MB

    provider: OpenAIProvider

    async def submit(self, items: list[tuple[str, ChatRequest]]) -> str:
        lines = (
            json.dumps(
                {
                    "custom_id": custom_id,
                    "method": "POST",
                    "url": ENDPOINT,
                    "body": self.provider.payload(request),
                },
                separators=(",", ":"),
            )
            for custom_id, request in items
        )
        data = ("\n".join(lines) + "\n").encode("utf-8")
        client = self._sdk()
        uploaded = await self._guard(
            client.files.create(file=("holisafe-judge.jsonl", data), purpose="batch")
        )
        batch = await self._guard(
            client.batches.create(
                input_file_id=uploaded.id,
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata={"source": "holisafe-bench judge"},
            )
        )
        return batch.id

    async def status(self, job_id: str) -> JobStatus:
        batch = await self._guard(self._sdk().batches.retrieve(job_id))
        counts = batch.request_counts
        done = (counts.completed + counts.failed) if counts else 0
        total = counts.total if counts else 0
        failure = None
        if batch.status in ("failed", "cancelled"):
            errors = getattr(batch.errors, "data", None) or []
            detail = "; ".join(str(getattr(e, "message", e)) for e in errors[:3])
            failure = f"batch {batch.status}" + (f": {detail}" if detail else "")
        elif batch.status == "expired":
            failure = "batch expired before this request ran"
        return JobStatus(batch.status in _ENDED, done, total, failure)

    async def results(self, job_id: str, custom_ids: list[str]) -> dict[str, ChatResult]:
        client = self._sdk()
        batch = await self._guard(client.batches.retrieve(job_id))
        out: dict[str, ChatResult] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self._guard(client.files.content(file_id))
            for line in content.text.splitlines():
                parsed = _parse_line(line)
                if parsed is not None:
                    out[parsed.id] = parsed
        return out


def _parse_line(line: str) -> ChatResult | None:
    """One output-file line as a result; None for a line without a usable custom id."""
    try:
        record = json.loads(line)
        custom_id = str(record["custom_id"])
    except (ValueError, KeyError, TypeError):
        return None
    if record.get("error"):
        error = record["error"]
        return item_error(custom_id, str(error.get("message", error)))
    response = record.get("response") or {}
    status, body = response.get("status_code"), response.get("body")
    if status != 200 or not isinstance(body, dict):
        inner = (body or {}).get("error") if isinstance(body, dict) else None
        code = (inner or {}).get("code") if isinstance(inner, dict) else None
        if code in BLOCK_CODES:
            return ChatResult(id=custom_id, outcome="content_filter", finish_reason=code)
        message = (inner or {}).get("message") if isinstance(inner, dict) else None
        return item_error(custom_id, f"HTTP {status}: {message or 'no body'}")
    try:
        return completion_result(custom_id, body)
    except ProviderCallError as exc:
        return item_error(custom_id, str(exc))
