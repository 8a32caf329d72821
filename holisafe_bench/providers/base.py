"""Provider interfaces. Two shapes, one result type:

- `ApiProvider`: one request per call, async; retries, concurrency and rate limits are NOT
  done here but once, in the shared layer that drives it (providers/runner.py).
- `BatchProvider`: an in-process engine (vLLM, transformers) that takes whole batches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.types import ChatRequest, ChatResult


class Provider:
    """Common to all providers: a name for logs and manifests, and cleanup."""

    provider_name: str = "provider"

    def describe(self) -> dict[str, Any]:
        """Facts for the run manifest (model id, revision, chat template hash, ...)."""
        return {"provider": self.provider_name}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engines, clients and sockets."""


class ApiProvider(Provider, ABC):
    def call_error(self, exc: Exception) -> ProviderCallError | None:
        """The SDK's exception as the shared layer's ProviderCallError (key scrubbed), or
        None if it is not this SDK's; used by live calls and batch control calls alike."""
        return None

    @abstractmethod
    async def call_once(self, request: ChatRequest) -> ChatResult:
        """Make one attempt. Return ok/content_filter results; raise `ProviderCallError`
        (providers/errors.py) for failures, which the shared layer retries or records."""

    async def aclose(self) -> None:
        """Close async clients; called from the event loop that used them."""


class BatchProvider(Provider, ABC):
    #: How many requests one `generate_batch` call should get; the engine schedules inside.
    batch_size: int = 64

    @abstractmethod
    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """Results in request order; a failure of one request is an `error` result for
        that request, never an exception that loses the batch."""
