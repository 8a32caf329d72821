"""Helpers for the Ray tests and benchmark: a check that this process sees loopback only
(Ray must listen on 127.0.0.1 and nowhere else), a local multi-node cluster that notices a
dead node within seconds, and a provider double whose replica dies on a chosen request.

Workers import this module by name (a factory pickled here is rebuilt there), so it lives in
the package, not under tests/.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from holisafe_bench.providers.base import BatchProvider
from holisafe_bench.providers.types import ChatRequest, ChatResult

NAMESPACE_COMMAND = "unshare -n sh -c 'ip link set lo up && exec CMD'"
NOT_ISOLATED = (
    "Ray tests start a Ray cluster and must only reach 127.0.0.1: run them in a private "
    f"network namespace, as root: {NAMESPACE_COMMAND} (make test does)"
)
# A dead node is noticed within ~2 s instead of Ray's default of about a minute.
FAST_NODE_FAILURE = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 4,
}


def loopback_only() -> bool:
    """True when this process's network namespace has the loopback interface alone."""
    try:
        names = {name for _, name in socket.if_nameindex()}
    except OSError:
        return False
    return names == {"lo"}


def start_cluster(head_cpus: int, workers: Sequence[dict[str, Any]] = ()) -> Any:
    """A head node and worker nodes on 127.0.0.1 (`ray.cluster_utils.Cluster`); each worker
    is a dict of `add_node` arguments (num_cpus, resources). Call `.shutdown()` at the end."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": head_cpus,
            "resources": {"head": 1},
            "include_dashboard": False,
            "_system_config": FAST_NODE_FAILURE,
        },
    )
    for worker in workers:
        cluster.add_node(**worker)
    cluster.wait_for_nodes()
    return cluster


def raylet_pid(node: Any) -> int:
    """The PID of a `Cluster` node's raylet."""
    from ray._private import ray_constants

    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


def kill_node(node: Any) -> list[int]:
    """SIGKILL a `Cluster` node's raylet and every process under it (its workers, so its
    replicas): the node dies at once, as when its machine is lost. Killing the raylet
    alone leaves its workers running for a while, answering their calls."""
    root = raylet_pid(node)
    doomed = [root, *_descendants(root)]
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return doomed


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class CrashingProvider(BatchProvider):
    """Answers every request with its own text, after `delay_s`; a request whose text
    contains `poison` ends the replica's process, as a segfault in an engine would."""

    provider_name = "crashing"
    batch_size = 4

    def __init__(self, poison: str = "POISON", delay_s: float = 0.0) -> None:
        self.poison = poison
        self.delay_s = delay_s

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        import time

        if any(self.poison in r.text for r in requests):
            os._exit(17)
        time.sleep(self.delay_s)
        return [ChatResult(id=r.id, outcome="ok", text=f"echo {r.text}") for r in requests]
