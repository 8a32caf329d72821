"""Provider interfaces. Two shapes, one result type:

- `ApiProvider`: one request per call, async; retries, concurrency and rate limits are NOT
  done here but once, in the shared layer that drives it (providers/runner.py), which may
  also rebuild it in worker processes (providers/process_runner.py).
- `BatchProvider`: an in-process engine (vLLM, transformers) that takes whole batches.
- `ClassifierProvider`: an in-process model read by a forward pass, not by generation (a
  Safe-VLM's safety head, ShieldGemma 2): probabilities by name for each request.
- `StreamingProvider`: an in-process engine that also takes an open-ended stream of
  requests and hands back each result as its sequence finishes (vLLM's continuous batching
  without batch barriers); `run` prefers it when `streaming` is true.

Which class serves which provider name is one table, providers/factory.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.errors import ProviderCallError
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.registry import ApiSettings, ModelSpec


class Provider:
    """Common to all providers: a name for logs and manifests, and cleanup."""

    #: The name in model and judge files (`provider = "openai"`) and in the factory's table.
    provider_name: ClassVar[str] = "provider"

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Provider:
        """The provider for a model under test, from its model file (the factory's way in)."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a model spec")

    def describe(self) -> dict[str, Any]:
        """Facts for the run manifest (model id, revision, chat template hash, ...)."""
        return {"provider": self.provider_name}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engines, clients and sockets."""


@dataclass(frozen=True)
class ProviderRecipe:
    """What a worker process rebuilds an API provider from: plain, picklable settings, since
    SDK clients and event loops cannot cross processes (factory.rebuild turns it back)."""

    provider: str
    model_id: str
    api: ApiSettings


class ApiProvider(Provider, ABC):
    """The contract the shared runner, the process runner and the batch APIs rely on:

    - `model_id` and `api` (key variable, base URL, concurrency, rate limits and `timeout_s`,
      which the runner enforces per attempt);
    - `make_client()`: a new SDK client with those settings, for the provider's own client
      pool and for its vendor batch API;
    - `recipe()`: what a worker process rebuilds an equal provider from;
    - `call_once()` for one attempt, and `call_error()` to map the SDK's exceptions.
    """

    # Empty only for in-process test doubles, which have no SDK and no settings; every
    # registered provider passes both.
    model_id: str = ""
    api: ApiSettings | None = None

    def __init__(self, model_id: str = "", api: ApiSettings | None = None) -> None:
        self.model_id = model_id
        self.api = api

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> ApiProvider:
        """The provider for a model under test: its checkpoint is the API model id."""
        return cls(spec.checkpoint, spec.api)

    def recipe(self) -> ProviderRecipe:
        if self.api is None:
            raise HolisafeError(
                f"provider {self.provider_name!r} cannot be rebuilt in a worker process "
                "(it has no API settings); run with --processes 1"
            )
        return ProviderRecipe(self.provider_name, self.model_id, self.api)

    def make_client(self) -> Any:
        """A new SDK client (key, base URL, timeout; SDK retries off), created inside the
        event loop that will use it."""
        raise NotImplementedError(f"{type(self).__name__} has no SDK client")

    def call_error(self, exc: Exception) -> ProviderCallError | None:
        """The SDK's exception as the shared layer's ProviderCallError (key scrubbed), or
        None if it is not this SDK's; used by live calls and batch control calls alike."""
        return None

    async def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Do now what the first call would do lazily (import the SDK, build its clients),
        so that no attempt's deadline is spent on it: a cold import can take longer than
        a short `timeout_s`. The runner calls it once, before the first request."""

    @abstractmethod
    async def call_once(self, request: ChatRequest) -> ChatResult:
        """Make one attempt. Return ok/content_filter results; raise `ProviderCallError`
        (providers/errors.py) for failures, which the shared layer retries or records."""

    async def aclose(self) -> None:
        """Close async clients; called from the event loop that used them."""


class BatchProvider(Provider, ABC):
    #: How many requests one `generate_batch` call should get; the engine schedules inside.
    batch_size: int = 64

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> BatchProvider:
        """The engine for a model under test; local engines read the whole spec."""
        return cls(spec)  # type: ignore[call-arg]

    @abstractmethod
    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """Results in request order; a failure of one request is an `error` result for
        that request, never an exception that loses the batch."""


class StreamingProvider(BatchProvider):
    """A batch engine that can also stream: `stream` pulls requests from the iterator as the
    engine has room for them and yields each result as soon as it is known, in finishing
    order (not request order). Every request yields exactly one result; a failure of one
    request is an `error` result for it alone."""

    #: False when the engine is to be driven in whole batches instead (`generate_batch`).
    streaming: bool = True

    @abstractmethod
    def stream(self, requests: Iterable[ChatRequest]) -> Iterator[ChatResult]:
        """One result per request, yielded as each finishes."""


@dataclass
class ClassifyResult:
    """A classifier's probabilities for one request, by name, or why there are none."""

    id: str
    probs: dict[str, float] | None = None
    error: str | None = None
    latency_s: float | None = None

    def __post_init__(self) -> None:
        if (self.probs is None) == (self.error is None):
            raise ValueError("a classify result has exactly one of 'probs' and 'error'")


class ClassifierProvider(Provider, ABC):
    """A model read by one forward pass per batch (no generation). Built by
    factory.create_classifier from the guard's model spec and `classifier_options`."""

    #: How many requests one `classify_batch` call should get.
    batch_size: int = 16

    @property
    def prepares_ahead(self) -> bool:
        """Whether the guard stage should prepare the next batch in a thread while this
        one's forward pass runs. Worth it only when the forward pass leaves the CPU free
        (an accelerator computes it); on the CPU the two threads contend for the same cores
        and the GIL, and the forward pass gets slower than the preparing saves."""
        return False

    @abstractmethod
    def classify_batch(self, requests: Sequence[ChatRequest]) -> list[ClassifyResult]:
        """Results in request order; a failure of one request is an error result for that
        request, never an exception that loses the batch."""

    def prepare(self, requests: Sequence[ChatRequest]) -> Any:
        """The work on a batch that needs no model (decoding images, preprocessing,
        tokenising), apart so the guard stage can prepare the next batch while this one's
        forward pass runs (stages/guard.py). Safe to call from another thread. Default:
        nothing ahead; `classify_prepared` does it all."""
        return list(requests)

    def classify_prepared(self, prepared: Any) -> list[ClassifyResult]:
        """`classify_batch` on what `prepare` returned."""
        return self.classify_batch(prepared)
