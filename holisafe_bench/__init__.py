"""holisafe-bench: the evaluation harness for HoliSafe-Bench."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from holisafe_bench.api import Results, load

__version__ = "0.1.0"
__all__ = ["Results", "__version__", "load"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `load` needs pandas, and the CLI must start without it.
    if name in ("load", "Results"):
        from holisafe_bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'holisafe_bench' has no attribute {name!r}")
