"""How many replicas of a model a cluster runs, and what each one reserves.

- On a cluster with GPUs, a replica of a vLLM or transformers model reserves
  `tensor_parallel_size` GPUs (tensor parallelism inside the actor, data parallelism across
  actors); the default count is how many such replicas the nodes' GPUs hold.
- On a cluster without GPUs (and for baselines, which need none) a replica reserves CPUs:
  by default one replica per CPU; a smaller count (--max-replicas) gives each replica the
  CPUs left over, which Ray hands on to the model as its thread count (OMP_NUM_THREADS).
- Several models at once share the cluster: each gets an equal share by default.
- API models are refused: one machine saturates a vendor's rate limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.registry import ModelSpec

API_PROVIDERS = ("openai", "anthropic", "gemini")
GPU_PROVIDERS = ("vllm", "transformers")
API_REFUSAL = (
    "is an API model: --ray runs open-weight models only (one machine already saturates a "
    "vendor's rate limit; use --processes for more throughput)"
)


@dataclass(frozen=True)
class ReplicaShape:
    replicas: int
    num_cpus: int
    num_gpus: int

    def actor_options(self) -> dict[str, Any]:
        # SPREAD: replicas on as many nodes as possible, so losing a node loses few.
        return {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "scheduling_strategy": "SPREAD",
        }


def check_runs_on_ray(spec: ModelSpec) -> None:
    if spec.provider in API_PROVIDERS:
        raise HolisafeError(f"{spec.name} ({spec.provider}) {API_REFUSAL}")


def plan_replicas(
    spec: ModelSpec,
    nodes: list[dict[str, float]],
    *,
    share: int = 1,
    max_replicas: int | None = None,
) -> ReplicaShape:
    """The replicas of `spec` on a cluster whose live nodes hold `nodes`, when `share`
    models run on it at once."""
    check_runs_on_ray(spec)
    if not nodes:
        raise HolisafeError("--ray: the Ray cluster has no live node")
    if spec.provider in GPU_PROVIDERS and any(node.get("GPU", 0) for node in nodes):
        return _on_gpus(spec, nodes, share, max_replicas)
    cpus = [int(node.get("CPU", 0)) for node in nodes]
    room = max(1, sum(cpus) // max(1, share))
    replicas = min(room, max_replicas or room)
    # Left-over CPUs go to each replica, within what the largest node can give one actor.
    per_replica = max(1, min(room // replicas, max(cpus)))
    return ReplicaShape(replicas, per_replica, 0)


def _on_gpus(
    spec: ModelSpec, nodes: list[dict[str, float]], share: int, max_replicas: int | None
) -> ReplicaShape:
    tp = spec.engine.tensor_parallel_size
    fit = sum(int(node.get("GPU", 0)) // tp for node in nodes)
    if fit == 0:
        largest = max(int(node.get("GPU", 0)) for node in nodes)
        raise HolisafeError(
            f"{spec.name}: tensor_parallel_size {tp} needs {tp} GPUs on one node; the "
            f"largest Ray node has {largest}"
        )
    room = max(1, fit // max(1, share))
    return ReplicaShape(min(room, max_replicas or room), 1, tp)
