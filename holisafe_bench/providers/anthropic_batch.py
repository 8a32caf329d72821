"""Anthropic Message Batches: `POST /v1/messages/batches`, polled with
`GET /v1/messages/batches/{id}`, results streamed from the batch's `results_url`."""

from __future__ import annotations

from typing import Any

from holisafe_bench.providers.anthropic_provider import AnthropicProvider, message_result
from holisafe_bench.providers.batch_api import BatchJobApi, JobStatus, item_error
from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.types import ChatRequest, ChatResult


class AnthropicBatchApi(BatchJobApi):
    vendor = "anthropic"
    max_requests = 100_000
    max_bytes = 240 * 10**6  # a batch may carry 256 MB

    provider: AnthropicProvider

    async def submit(self, items: list[tuple[str, ChatRequest]]) -> str:
        from anthropic.types.messages import MessageBatch

        requests = []
        for custom_id, request in items:
            params = self.provider.payload(request)
            params.update(params.pop("extra_body"))
            requests.append({"custom_id": custom_id, "params": params})
        # The generic POST, as for live calls: no re-walk of the base64 payload.
        batch = await self._guard(
            self._sdk().post(
                "/v1/messages/batches", body={"requests": requests}, cast_to=MessageBatch
            )
        )
        return batch.id

    async def status(self, job_id: str) -> JobStatus:
        batch = await self._guard(self._sdk().messages.batches.retrieve(job_id))
        c = batch.request_counts
        done = c.succeeded + c.errored + c.canceled + c.expired
        total = done + c.processing
        return JobStatus(batch.processing_status == "ended", done, total)

    async def results(self, job_id: str, custom_ids: list[str]) -> dict[str, ChatResult]:
        from anthropic.types.messages import MessageBatchIndividualResponse

        client = self._sdk()
        batch = await self._guard(client.messages.batches.retrieve(job_id))
        if not batch.results_url:
            raise ProviderCallError(f"batch {job_id} ended without a results_url")
        # Read line by line (rather than the SDK's JSONL stream) so one broken line costs
        # only its own request; the URL is absolute, on the API's own host.
        raw = await self._guard(
            client.get(
                batch.results_url,
                cast_to=bytes,
                options={"headers": {"Accept": "application/binary"}},
            )
        )
        out: dict[str, ChatResult] = {}
        for line in raw.splitlines():
            try:
                item = MessageBatchIndividualResponse.model_validate_json(line)
            except ValueError:
                continue  # its request gets "no result" from the caller
            out[item.custom_id] = _result(item)
        return out


def _result(item: Any) -> ChatResult:
    custom_id, result = item.custom_id, item.result
    if result.type == "succeeded":
        try:
            return message_result(custom_id, result.message)
        except ProviderCallError as exc:
            return item_error(custom_id, str(exc))
    if result.type == "errored":
        error = getattr(getattr(result, "error", None), "error", None)
        detail = f"{getattr(error, 'type', 'error')}: {getattr(error, 'message', '')}"
        return item_error(custom_id, detail)
    return item_error(custom_id, f"request {result.type}", timeout=result.type == "expired")
