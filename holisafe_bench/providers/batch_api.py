"""Vendor batch APIs (about half the price, results within a day): submit many requests as
one job, poll it, fetch the results by custom id. One class per vendor, all async, built
on the same SDK clients and reply parsing as the live providers.

Control calls (submit, poll, fetch) raise `ProviderCallError` so the shared retry policy
can retry them; a failure of one request inside a job is an `error` result for that
request only.

This module holds what every vendor's batch API shares; which class serves which provider
is the table in providers/factory.py (`create_batch_api`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from holisafe_bench.providers.base import ApiProvider
from holisafe_bench.providers.types import ChatRequest, ChatResult


@dataclass(frozen=True)
class JobStatus:
    ended: bool
    done: int  # requests finished so far (as far as the vendor reports)
    total: int
    # Set when the whole job failed, expired or was cancelled; its requests without a
    # result then become errors carrying this text.
    failure: str | None = None


def item_error(custom_id: str, message: str, *, timeout: bool = False) -> ChatResult:
    return ChatResult(
        id=custom_id,
        outcome="error",
        error=f"batch item: {message}",
        error_kind="timeout" if timeout else "api_error",
    )


class BatchJobApi(ABC):
    vendor: str = "vendor"
    max_requests: int = 10_000
    max_bytes: int = 100 * 10**6  # of one job's request payloads

    def __init__(self, provider: ApiProvider) -> None:
        # The live provider lends its payload builder, reply parser, key and client settings.
        self.provider = provider
        self._client: Any = None

    async def _guard(self, operation: Any) -> Any:
        """Await a control call, with the SDK's exceptions mapped as for live calls."""
        try:
            return await operation
        except Exception as exc:
            error = self.provider.call_error(exc)
            if error is None:
                raise
            raise error from None

    def _sdk(self) -> Any:
        if self._client is None:  # created inside the event loop that uses it
            self._client = self.provider.make_client()
        return self._client

    @abstractmethod
    async def submit(self, items: list[tuple[str, ChatRequest]]) -> str:
        """Submit (custom id, request) pairs as one job; returns the job id."""

    @abstractmethod
    async def status(self, job_id: str) -> JobStatus: ...

    @abstractmethod
    async def results(self, job_id: str, custom_ids: list[str]) -> dict[str, ChatResult]:
        """Results of an ended job by custom id (the ids in submission order, for vendors
        that answer by position)."""

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await self._close(client)

    async def _close(self, client: Any) -> None:
        await client.close()

    @staticmethod
    def request_bytes(request: ChatRequest) -> int:
        """Approximate payload size: base64 images plus the text."""
        images = sum(len(image.read_bytes()) for image in request.images)
        return images * 4 // 3 + len(request.text.encode("utf-8")) + 512

    def chunks(
        self, items: list[tuple[str, ChatRequest]]
    ) -> Iterator[list[tuple[str, ChatRequest]]]:
        """Split items into jobs within the vendor's count and size limits."""
        chunk: list[tuple[str, ChatRequest]] = []
        size = 0
        for item in items:
            item_size = self.request_bytes(item[1])
            if chunk and (len(chunk) >= self.max_requests or size + item_size > self.max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(item)
            size += item_size
        if chunk:
            yield chunk
