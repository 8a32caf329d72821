"""What the stages that send samples (run, guard) share around their one writer: the
manifest an earlier invocation left, and every record written, tallied and passed on the
moment it is made."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.base import Provider
from holisafe_bench.records import Invocation, Usage
from holisafe_bench.store import RecordStore

M = TypeVar("M", bound=BaseModel)


class _Summary(Protocol):
    outcomes: Counter


class _Manifest(Protocol):
    usage: Usage


def previous_manifest(path: Path, manifest_type: type[M], records: Path) -> M | None:
    """The manifest an earlier invocation left, or None (absent, or unreadable with no
    records beside it). Unreadable beside records, it is an error: the settings those
    records were made with could no longer be checked against this run's."""
    if not path.exists():
        return None
    try:
        return manifest_type.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        if not records.exists() or records.stat().st_size == 0:
            return None  # nothing it described is left: it is simply rewritten
        reason = str(exc).splitlines()[0]
        raise HolisafeError(
            f"{path}: cannot be read ({reason}), so the settings of the records in "
            f"{records.name} cannot be checked; restore it, delete it to keep the records "
            "as if made with this run's settings, or pass --overwrite to start over"
        ) from exc


def write_all(
    path: Path,
    record_type: type[BaseModel],
    produce: Callable[[Callable[[Any], None]], None],
    *,
    overwrite: bool,
    provider: Provider,
    summary: _Summary,
    manifest: _Manifest,
    invocation: Invocation,
    on_record: Callable[[Any], None] | None,
) -> None:
    """Write every record `produce` hands to its callback through one writer of `path`
    (locked, crash-safe), count it by outcome in `summary`, add its usage to the manifest
    and to this invocation, then pass it to `on_record`. The provider is closed at the end,
    whatever happens."""
    store = RecordStore(path, record_type)
    try:
        with store.writer(overwrite=overwrite) as writer:

            def record(rec: Any) -> None:
                writer.write(rec)
                summary.outcomes[rec.outcome] += 1
                manifest.usage = manifest.usage + rec.usage
                invocation.usage = invocation.usage + rec.usage
                if on_record is not None:
                    on_record(rec)

            produce(record)
    finally:
        provider.close()
