"""The fingerprint sidecar of a responses file: `responses.fingerprints` beside it.

Scoring checks every verdict against the fingerprint (sha256 of outcome and text) of the
response now stored, which means decoding and hashing every response of every model. The
judge stage computes those fingerprints anyway, so it writes them here together with a
digest (BLAKE3) of the exact bytes of the responses file it read them from. A reader hashes
the file's bytes (far cheaper than decoding them) and uses the sidecar only when the digest
matches; otherwise (another version of the file, a damaged or foreign sidecar) it decodes
the file as before. Nothing is trusted from times or sizes.

Format (JSON): {"format": 1, "source_digest": hex, "sample_ids": [int...],
"fingerprints": [hex...]}, the two lists aligned (they load without per-entry work).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import blake3
import orjson

FORMAT = 1


def digest_bytes(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def file_digest(path: Path) -> str | None:
    """The digest of a file's bytes, or None if it cannot be read."""
    try:
        return digest_bytes(path.read_bytes())
    except OSError:
        return None


def read_sidecar(path: Path, source_digest: str) -> dict[int, str] | None:
    """The fingerprints by sample id if `path` is a well-formed sidecar of the file whose
    bytes have `source_digest`; None otherwise (missing, other version, damaged)."""
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if type(doc) is not dict or doc.get("format") != FORMAT:
        return None
    if doc.get("source_digest") != source_digest:
        return None
    ids, prints = doc.get("sample_ids"), doc.get("fingerprints")
    if type(ids) is not list or type(prints) is not list or len(ids) != len(prints):
        return None
    # Checked as whole columns (set of types, set of lengths): no per-entry Python.
    if ids and (set(map(type, ids)) != {int} or set(map(type, prints)) != {str}):
        return None
    if prints and set(map(len, prints)) != {64}:
        return None
    found = dict(zip(ids, prints, strict=True))
    return found if len(found) == len(ids) else None


def write_sidecar(path: Path, source_digest: str, fingerprints: Mapping[int, str]) -> None:
    """Write the sidecar atomically (readers see all of it or none). It is only a cache, so
    a folder that cannot be written is no error, and there is no fsync: a sidecar damaged
    by a crash fails the checks of `read_sidecar` and is ignored."""
    doc = {
        "format": FORMAT,
        "source_digest": source_digest,
        "sample_ids": list(fingerprints),
        "fingerprints": list(fingerprints.values()),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(orjson.dumps(doc))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


class WatchedRead:
    """One read of a responses file, watched so that its fingerprints may be written as a
    sidecar: the file's digest before and after the read must agree (the read saw those
    very bytes), and every line must have passed `accept` unchanged (then the reader's
    fingerprints are exactly the ones scoring computes from the same bytes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._before = file_digest(path)
        self._all_accepted = True

    def checked(self, accept: Callable[[Any], bool]) -> Callable[[Any], bool]:
        def check(data: Any) -> bool:
            ok = accept(data)
            if not ok:
                self._all_accepted = False
            return ok

        return check

    def source_digest(self) -> str | None:
        """The digest to write the sidecar under, or None if the read cannot vouch for it."""
        if not self._all_accepted or self._before is None:
            return None
        return self._before if file_digest(self.path) == self._before else None
