"""The Ray actor that owns one replica: it builds a provider from a picklable zero-argument
factory, inside the actor (so weights load on the node that runs it, on its GPUs), and
serves one batch method of it.

The seam the pool relies on (see pool.py): `call(method, items)` returns one result per
item, in item order. For chat that is `BatchProvider.generate_batch`; a guard stage can
pass a classifier's factory and its batch method (e.g. `classify_batch`) unchanged.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from holisafe_bench.errors import HolisafeError


class Replica:
    """Plain class; pool.py wraps it with `ray.remote` when it starts actors. A provider
    that cannot be built does not kill the actor: `ready()` reports why, in one line."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.provider: Any = None
        self.error: str | None = None
        try:
            self.provider = factory()
        except Exception as exc:  # noqa: BLE001 - reported to the driver by ready()
            text = str(exc) if isinstance(exc, HolisafeError) else f"{type(exc).__name__}: {exc}"
            self.error = " ".join(text.split())

    def ready(self) -> dict[str, Any]:
        """What the driver needs once: the build error, or the provider's manifest facts
        and preferred batch size, and where the replica runs."""
        where = {"host": socket.gethostname(), "pid": os.getpid()}
        if self.provider is None:
            return {"error": self.error, **where}
        return {
            "error": None,
            "describe": self.provider.describe(),
            "batch_size": getattr(self.provider, "batch_size", None),
            **where,
        }

    def call(self, method: str, items: Sequence[Any]) -> list[Any]:
        results = getattr(self.provider, method)(items)
        if len(results) != len(items):
            raise RuntimeError(f"{method} returned {len(results)} results for {len(items)} items")
        return list(results)

    def close(self) -> None:
        if self.provider is not None:
            self.provider.close()
            self.provider = None
