"""Append-only JSONL record files with resume, crash safety and a writer lock.

A file holds one JSON object per line, keyed by `sample_id`; a later line for the same key
replaces an earlier one. Writers flush and fsync in batches, so a crash loses at most the
records in flight. A crash mid-write can leave a torn last line (no trailing newline or not
valid JSON): readers drop it and the next writer truncates it before appending.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from holisafe_bench import jsonio
from holisafe_bench.errors import HolisafeError

log = logging.getLogger(__name__)

R = TypeVar("R", bound=BaseModel)


class StoreLockedError(HolisafeError, RuntimeError):
    """Another writer holds the lock of a record file."""


# Lock files this process holds. POSIX locks do not conflict within one process, and closing
# any descriptor of a locked file drops its lock, so a second writer here is refused from
# this set before it opens the file.
_held_locks: set[str] = set()
_held_guard = threading.Lock()


@contextlib.contextmanager
def _writer_lock(lock_path: Path, data_path: Path) -> Iterator[None]:
    """Hold `lock_path` exclusively. POSIX record locks (lockf), not flock: a flock belongs to
    the open file description, which forked API workers inherit, so after a SIGKILL of the
    writer its orphaned workers kept the lock and the resumed run was refused. A record lock
    belongs to this process alone: never inherited by fork, released when it dies."""
    key = os.path.realpath(lock_path)

    def busy(holder: str) -> StoreLockedError:
        return StoreLockedError(
            f"{data_path} is being written by {holder} (lock {lock_path}); "
            "wait for it to finish, or stop it, then re-run to resume"
        )

    with _held_guard:
        if key in _held_locks:
            raise busy(f"this process (pid {os.getpid()})")
        _held_locks.add(key)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                raise busy(_lock_holder(fd)) from exc
            # The holder's pid, so a refused second writer can say who holds the file.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock
    finally:
        with _held_guard:
            _held_locks.discard(key)


def _remove_debris(lock_path: Path) -> None:
    """The lock file (still held: a writer that opened it meanwhile is refused, not let in)
    and its folder when empty."""
    with contextlib.suppress(OSError):
        lock_path.unlink()
        lock_path.parent.rmdir()


def _lock_holder(fd: int) -> str:
    try:
        pid = int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return "another process"
    return f"process {pid}"


class RecordStore(Generic[R]):
    def __init__(self, path: Path, record_type: type[R], key: str = "sample_id") -> None:
        self.path = Path(path)
        self.record_type = record_type
        self.key = key
        self.dropped_lines = 0  # unreadable lines seen by the last read()

    def iter_lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, raw line) of every complete line. A torn last line (no newline)
        is skipped and counted in `dropped_lines`."""
        self.dropped_lines = 0
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            data = fh.read()
        lines = data.split(b"\n")
        if lines[-1] and not whole_record(lines[-1]):
            self.dropped_lines += 1
            lines[-1] = b""
        for lineno, raw in enumerate(lines, start=1):
            if raw.strip():
                yield lineno, raw

    def read_json(self) -> list[Any]:
        """Every complete line decoded as JSON, without validation (for fast readers); a
        line that is not JSON gives None in its place."""
        return _decode_lines([raw for _, raw in self.iter_lines()])

    def read_dicts(
        self,
        accept: Callable[[Any], bool],
        accept_all: Callable[[list[Any]], bool] | None = None,
        *,
        each_line: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[int, dict[str, Any]]:
        """All records by key as plain dicts, the last line for a key winning, without
        building models (for fast paths). A decoded line that `accept` passes is kept as
        decoded; any other goes through the record type's own validation, exactly as in
        `read()` (kept as its `model_dump()`, or skipped, counted and logged). So `accept`
        must only pass what validation would accept unchanged. `accept_all`, if given, is
        `accept` over the whole file at once (record_columns.py): when it passes, no line
        is checked alone. `each_line`, if given, sees every kept line in file order, the
        superseded ones too (to total what all lines record in the same read)."""
        records: dict[int, dict[str, Any]] = {}
        numbered = list(self.iter_lines())
        decoded = _decode_lines([raw for _, raw in numbered])
        if accept_all is not None and accept_all(decoded):
            key = self.key
            if each_line is not None:
                for data in decoded:
                    each_line(data)
            return {data[key]: data for data in decoded}
        for (lineno, raw), data in zip(numbered, decoded, strict=True):
            if not accept(data):
                record = self._validate(lineno, raw)
                if record is None:
                    continue
                data = record.model_dump()
            if each_line is not None:
                each_line(data)
            records[data[self.key]] = data
        return records

    def _validate(self, lineno: int, raw: bytes) -> R | None:
        """The record of one line, or None (counted in `dropped_lines`, logged)."""
        try:
            return self.record_type.model_validate_json(raw)
        except ValidationError as exc:
            self.dropped_lines += 1
            errors = exc.errors()
            log.warning(
                "%s line %d: skipped unreadable record: %s",
                self.path,
                lineno,
                errors[0]["msg"] if errors else exc,
            )
            return None

    def read(self) -> dict[int, R]:
        """All records by key, the last line for a key winning. Unreadable lines are skipped
        and counted in `dropped_lines`, never raised."""
        records: dict[int, R] = {}
        for lineno, raw in self.iter_lines():
            record = self._validate(lineno, raw)
            if record is not None:
                records[getattr(record, self.key)] = record
        return records

    def done_keys(self, is_done: Callable[[R], bool] = lambda r: True) -> set[int]:
        """Keys whose latest record counts as done, for resume."""
        return {k for k, r in self.read().items() if is_done(r)}

    @contextlib.contextmanager
    def writer(
        self, *, overwrite: bool = False, fsync_every: int = 32, fsync_seconds: float = 2.0
    ) -> Iterator[RecordWriter[R]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with _writer_lock(lock_path, self.path):
            if overwrite and self.path.exists():
                self.path.unlink()
            _truncate_torn_tail(self.path)
            writer = RecordWriter(self.path, fsync_every, fsync_seconds)
            try:
                yield writer
            finally:
                writer.close()
                if not self.path.exists():
                    _remove_debris(lock_path)  # nothing written: leave no trace

    @contextlib.contextmanager
    def replacing(self) -> Iterator[RecordWriter[R]]:
        """A writer whose records replace the whole file at once when the block ends
        without an error; a failure or a kill midway leaves the old file as it was."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with _writer_lock(lock_path, self.path):
            staged = self.path.with_name(f".{self.path.name}.{os.getpid()}.replacing")
            writer = RecordWriter(staged, fsync_every=1 << 62, fsync_seconds=float("inf"))
            try:
                yield writer
                writer.close()  # flushed and fsynced before it takes the file's place
                if staged.exists():
                    os.replace(staged, self.path)
            finally:
                writer.close()
                staged.unlink(missing_ok=True)


class RecordWriter(Generic[R]):
    """Appends records to `path`. The file is created by the first record, so a stage that
    fails before it (no API key, a model that cannot load) leaves no empty file behind."""

    def __init__(self, path: Path, fsync_every: int, fsync_seconds: float) -> None:
        self._path = path
        self._fh = None
        self._fsync_every = fsync_every
        self._fsync_seconds = fsync_seconds
        self._pending = 0
        self._last_sync = time.monotonic()
        self.written = 0

    def write(self, record: BaseModel) -> None:
        if self._fh is None:
            self._fh = self._path.open("ab")
        # One write call per line keeps a crash to at most one torn line at the end.
        self._fh.write(record.model_dump_json().encode("utf-8") + b"\n")
        self.written += 1
        self._pending += 1
        if (
            self._pending >= self._fsync_every
            or time.monotonic() - self._last_sync >= self._fsync_seconds
        ):
            self.sync()

    def write_lines(self, lines: list[bytes]) -> None:
        """Append ready JSON lines (no newline) in one write call, for cheap records written
        in bulk: a crash still leaves at most one torn line, at the end."""
        if not lines:
            return
        if self._fh is None:
            self._fh = self._path.open("ab")
        self._fh.write(b"\n".join(lines) + b"\n")
        self.written += len(lines)
        self._pending += len(lines)
        if (
            self._pending >= self._fsync_every
            or time.monotonic() - self._last_sync >= self._fsync_seconds
        ):
            self.sync()

    def sync(self) -> None:
        if self._fh is None:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._pending = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self.sync()
            self._fh.close()


def _decode_lines(lines: list[bytes]) -> list[Any]:
    """Each line decoded as JSON (None if it is not). orjson first, in one call for the whole
    file; a line orjson refuses is retried with the standard parser, which accepts a little
    more (NaN, huge integers, lone surrogates), so the result is what `json` would give."""
    try:
        decoded = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:
        decoded = None
    # A line holding two values (or half of one) shows as a count that differs.
    if decoded is None or len(decoded) != len(lines):
        decoded = [_decode_line(raw) for raw in lines]
    return decoded


def _decode_line(raw: bytes) -> Any:
    try:
        return jsonio.loads(raw)
    except ValueError:
        return None


def whole_record(raw: bytes) -> bool:
    """A last line without its newline that is still one whole JSON object: the write
    reached the closing brace, so the record is complete (a cut anywhere earlier leaves
    the object unclosed). It is kept, not dropped and paid for again."""
    try:
        return isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        return False


def _truncate_torn_tail(path: Path) -> None:
    """Cut anything after the last newline, so appends never glue onto a torn line; a
    last line that is a whole record only gets its newline."""
    if not path.exists():
        return
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        # Scan backwards in chunks for the last newline.
        pos = size
        chunk = 65536
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            block = fh.read(pos - start)
            idx = block.rfind(b"\n")
            if idx >= 0:
                _end_tail(fh, path, start + idx + 1, size)
                return
            pos = start
        _end_tail(fh, path, 0, size)


def _end_tail(fh: Any, path: Path, tail_start: int, size: int) -> None:
    fh.seek(tail_start)
    if whole_record(fh.read(size - tail_start)):
        fh.seek(size)
        fh.write(b"\n")
        return
    fh.truncate(tail_start)
    log.warning("%s: dropped a torn last line", path)


def write_json_atomic(path: Path, payload: BaseModel | dict) -> None:
    """Write a manifest or other JSON document so that readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        payload.model_dump_json(indent=2)
        if isinstance(payload, BaseModel)
        else json.dumps(payload, indent=2, ensure_ascii=False)
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
