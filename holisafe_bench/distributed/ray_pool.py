"""`RayPool`: a model's replicas on a Ray cluster, as one chat `StreamingProvider`.

The run stage drives it like any streaming engine (`execute_run(plan, bench,
provider=RayPool.for_spec(...))`): requests are pulled as replicas have room, results come
back on the driver as each batch finishes, and the stage's one writer appends them to
responses.jsonl with its usual store, lock, resume and manifest. Ray Core actors, not Ray
Data: a Data pipeline writes its output from the workers (or collects it at the end),
while here every result returns to the one process that owns the file.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from holisafe_bench.distributed.pool import PoolSettings, ReplicaPool
from holisafe_bench.distributed.sizing import ReplicaShape
from holisafe_bench.providers.base import ClassifierProvider, ClassifyResult, StreamingProvider
from holisafe_bench.providers.types import ChatRequest, ChatResult, ImageInput
from holisafe_bench.registry import ModelSpec

# Settings the replicas should see as the driver does (vLLM mode and engine arguments, the
# cache folder, offline switches); never anything that looks like a credential.
_FORWARDED_PREFIXES = ("HOLISAFE_", "VLLM_")
_FORWARDED_NAMES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")
_SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN")


class RayPool(StreamingProvider):
    provider_name = "ray"

    def __init__(self, pool: ReplicaPool, address: str | None = None) -> None:
        self.pool = pool
        self.address = address

    @classmethod
    def for_spec(  # type: ignore[override]
        cls,
        spec: ModelSpec,
        shape: ReplicaShape,
        *,
        address: str | None = None,
        forward_env: bool = True,
    ) -> RayPool:
        """Start `shape.replicas` actors, each building `create_provider(spec)` itself.
        `forward_env`: pass the driver's settings (forwarded_env) to the replicas; not
        needed when this process started Ray, whose workers inherit its environment (and
        then a replica can take one of Ray's ready worker processes)."""
        from holisafe_bench.providers.factory import create_provider

        options = shape.actor_options()
        env = forwarded_env() if forward_env else {}
        if env:
            options["runtime_env"] = {"env_vars": env}
        settings = PoolSettings(replicas=shape.replicas, actor_options=options)
        factory = functools.partial(create_provider, spec)
        return cls(ReplicaPool(spec.name, factory, "generate_batch", settings).start(), address)

    @property
    def batch_size(self) -> int:  # type: ignore[override]
        """Requests per call to a replica: --batch-size, else the replica's engine's own."""
        settings = self.pool.settings
        return settings.batch_size or (self.pool.info or {}).get("batch_size") or 8

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.pool.settings.batch_size = value

    def describe(self) -> dict[str, Any]:
        """The replicas' provider facts (waits for the first replica to load), and how the
        pool ran them."""
        info = self.pool.wait_ready()
        settings = self.pool.settings
        ray_facts = {
            "address": self.address,
            "replicas": settings.replicas,
            "num_cpus": settings.actor_options.get("num_cpus"),
            "num_gpus": settings.actor_options.get("num_gpus"),
            "batch_size": self.batch_size,
            "batches_in_flight_per_replica": settings.in_flight,
            "max_attempts": settings.max_attempts,
            "method": self.pool.method,
        }
        details = {**info["describe"], "ray": ray_facts}
        if "scheduling" in details:  # a replica is sent whole batches, never a stream
            details["scheduling"] = "batch"
        return details

    def stream(self, requests: Iterable[ChatRequest]) -> Iterator[ChatResult]:
        yield from self.pool.run((portable(r) for r in requests), _failed)

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        by_id = {result.id: result for result in self.stream(requests)}
        return [by_id[r.id] for r in requests]

    def stop(self) -> None:
        self.pool.stop()

    def close(self) -> None:
        self.pool.close()


class RayClassifier(ClassifierProvider):
    """A classifier guard's replicas on a Ray cluster, as one `ClassifierProvider`: each
    `classify_batch` is spread over the replicas (the pool's own batches, two in flight per
    replica) and its results come back to the guard stage, the one writer of its file."""

    provider_name = "ray"

    def __init__(self, pool: ReplicaPool, address: str | None = None) -> None:
        self.pool = pool
        self.address = address

    @classmethod
    def for_guard(
        cls,
        kind: str,
        spec: ModelSpec,
        options: dict[str, Any],
        shape: ReplicaShape,
        *,
        address: str | None = None,
        forward_env: bool = True,
        batch_size: int | None = None,
    ) -> RayClassifier:
        """Start `shape.replicas` actors, each building `create_classifier(kind, spec,
        **options)` itself."""
        from holisafe_bench.providers.factory import create_classifier

        actor_options = shape.actor_options()
        env = forwarded_env() if forward_env else {}
        if env:
            actor_options["runtime_env"] = {"env_vars": env}
        settings = PoolSettings(
            replicas=shape.replicas, actor_options=actor_options, batch_size=batch_size
        )
        factory = functools.partial(create_classifier, kind, spec, options)
        return cls(ReplicaPool(spec.name, factory, "classify_batch", settings).start(), address)

    @property
    def batch_size(self) -> int:  # type: ignore[override]
        """What one `classify_batch` call should get: enough for every replica's batches
        in flight, so none waits for the stage."""
        settings = self.pool.settings
        per_call = settings.batch_size or (self.pool.info or {}).get("batch_size") or 8
        return per_call * settings.replicas * settings.in_flight

    def describe(self) -> dict[str, Any]:
        info = self.pool.wait_ready()
        settings = self.pool.settings
        ray_facts = {
            "address": self.address,
            "replicas": settings.replicas,
            "num_cpus": settings.actor_options.get("num_cpus"),
            "num_gpus": settings.actor_options.get("num_gpus"),
            "batch_size": settings.batch_size or info["describe"].get("batch_size"),
            "max_attempts": settings.max_attempts,
            "method": self.pool.method,
        }
        return {**info["describe"], "ray": ray_facts}

    def classify_batch(self, requests: Sequence[ChatRequest]) -> list[ClassifyResult]:
        items = (portable(r) for r in requests)
        by_id = {result.id: result for result in self.pool.run(items, _failed_classify)}
        return [by_id[r.id] for r in requests]

    def close(self) -> None:
        self.pool.close()


def _failed_classify(request: ChatRequest, reason: str) -> ClassifyResult:
    return ClassifyResult(id=request.id, error=reason)


def portable(request: ChatRequest) -> ChatRequest:
    """The request with its images as bytes: a replica on another node cannot read the
    driver's files."""
    if all(image.data is not None for image in request.images):
        return request
    images = tuple(
        ImageInput(data=image.read_bytes(), media_type=image.media_type) for image in request.images
    )
    return dataclasses.replace(request, images=images)


def _failed(request: ChatRequest, reason: str) -> ChatResult:
    return ChatResult(id=request.id, outcome="error", error=reason)


def forwarded_env() -> dict[str, str]:
    def wanted(name: str) -> bool:
        if any(word in name for word in _SECRET_WORDS) and name != "TOKENIZERS_PARALLELISM":
            return False
        return name.startswith(_FORWARDED_PREFIXES) or name in _FORWARDED_NAMES

    return {name: value for name, value in os.environ.items() if wanted(name)}
