"""Connecting to a Ray cluster, or starting a local one, and reading what its nodes hold."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from holisafe_bench.errors import HolisafeError

RAY_HINT = "pip install 'holisafe-bench[ray]'"
#: `--ray` with no address: start a Ray instance on this machine for the run.
LOCAL = "local"
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def import_ray() -> Any:
    """The ray module, or one line saying how to install it."""
    try:
        import ray
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "ray":
            raise
        raise HolisafeError(f"--ray needs the package 'ray': {RAY_HINT}") from exc
    return ray


def parse_address(text: str | None) -> str | None:
    """None (start a local Ray), 'auto', 'ray://host:port' or 'host:port'."""
    if text is None or text.strip() in ("", LOCAL):
        return None
    text = text.strip()
    if text == "auto" or text.startswith("ray://") or _HOST_PORT.match(text):
        return text
    raise HolisafeError(
        f"--ray {text!r}: expected no value (start a local Ray), 'auto', "
        "'ray://host:port' or 'host:port'"
    )


@dataclass
class RayConnection:
    """An open connection; `started` when this process started the Ray instance itself."""

    address: str
    started: bool

    def close(self) -> None:
        import ray

        ray.shutdown()


def connect(address: str | None) -> RayConnection:
    """Join the cluster at `address` (None: start a Ray instance on this machine, bound to
    127.0.0.1, for this run only). Reuses a connection this process already has."""
    ray = import_ray()
    if ray.is_initialized():
        return RayConnection(_gcs_address(ray), started=False)
    verbose = bool(os.environ.get("HOLISAFE_VERBOSE"))
    common: dict[str, Any] = {
        # Replica logs (model loading, warnings) stay in Ray's log files unless asked for.
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.ERROR,
    }
    try:
        if address is None:
            ray.init(
                # "local": a new instance even where RAY_ADDRESS is set or a cluster this
                # machine started is up (ray.init would join those without an address).
                address="local",
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                # Ray runs its workers at nice 15, for the sake of its own daemons; here a
                # worker is the model, and the machine's other work must not starve it.
                _system_config={"worker_niceness": 0},
                **common,
            )
        else:
            ray.init(address=address, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray instance"
        reason = " ".join(str(exc).split())
        raise HolisafeError(f"--ray: cannot connect to {where}: {reason}") from exc
    return RayConnection(address or _gcs_address(ray), started=address is None)


def _gcs_address(ray: Any) -> str:
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001 - only for the manifest; Ray Client has none
        return "unknown"


def alive_nodes() -> list[dict[str, float]]:
    """The total resources of each live node (CPU, GPU, memory and custom ones)."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]
