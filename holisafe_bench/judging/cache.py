"""A content-addressed cache of valid judge verdicts (SQLite, WAL mode).

The key covers everything the verdict depends on: judge model and parameters, template
hash, sample id, image hash, query and response text. Only valid verdicts are stored:
a failure is never served back as a result."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def cache_key(**parts: Any) -> str:
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedVerdict:
    follows: bool
    raw: str
    input_tokens: int
    output_tokens: int


class VerdictCache:
    #: Puts are written in one transaction per this many (one commit each costs more than
    #: the judge call's bookkeeping); a crash loses at most these, and only as cache entries:
    #: the verdicts themselves are already in the verdict file.
    FLUSH_EVERY = 64

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, follows INTEGER NOT NULL,"
            " raw TEXT NOT NULL, input_tokens INTEGER, output_tokens INTEGER)"
        )
        self._pending: list[tuple[str, int, str, int, int]] = []

    def get_many(self, keys: list[str]) -> dict[str, CachedVerdict]:
        self.flush()
        found: dict[str, CachedVerdict] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, follows, raw, input_tokens, output_tokens FROM verdicts "
                f"WHERE key IN ({marks})",
                chunk,
            )
            for key, follows, raw, tin, tout in rows:
                found[key] = CachedVerdict(bool(follows), raw, tin or 0, tout or 0)
        return found

    def put(self, key: str, verdict: CachedVerdict) -> None:
        self._pending.append(
            (key, int(verdict.follows), verdict.raw, verdict.input_tokens, verdict.output_tokens)
        )
        if len(self._pending) >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        self.flush()
        self._db.close()
