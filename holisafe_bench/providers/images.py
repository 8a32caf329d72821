"""Images for API payloads: the stored bytes, base64-encoded, never re-encoded.

Several samples can share one image file (and an LLM judge sends each sample's image
again): the encoded form of the last few images is kept, by path (checked against the
file's inode, size and mtime) or by the very bytes object, so a repeat costs a stat, not a
read and a base64 of a few hundred KB; a path not seen before costs no stat at all."""

from __future__ import annotations

import base64
import os
import threading
from collections import OrderedDict
from typing import Any

from holisafe_bench.providers.types import ImageInput

# Distinct images kept encoded (a few MB): enough for the repeats of a run's neighbourhood.
_CACHED_IMAGES = 16
_cache: OrderedDict[Any, tuple[object, str]] = OrderedDict()
_lock = threading.Lock()  # providers may prepare requests from several threads


def _file_identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _read_file(path: str) -> tuple[bytes, tuple[int, int, int]]:
    """The file's bytes and identity from one open: no separate stat of the path, which
    costs as much as the read for the small image of every request that is not a repeat."""
    with open(path, "rb") as fh:
        return fh.read(), _file_identity(os.fstat(fh.fileno()))


def _cached(key: Any, owner: object) -> str | None:
    with _lock:
        hit = _cache.get(key)
        if hit is None or hit[0] != owner:
            return None
        _cache.move_to_end(key)
        return hit[1]


def _keep(key: Any, owner: object, encoded: str) -> None:
    with _lock:
        _cache[key] = (owner, encoded)
        if len(_cache) > _CACHED_IMAGES:
            _cache.popitem(last=False)


def b64(image: ImageInput) -> str:
    if image.data is not None:
        # By identity: the same bytes object (a parquet blob) is the same content; the entry
        # holds the object, so its id cannot be reused while the entry lives.
        key: Any = ("data", id(image.data))
        encoded = _cached(key, image.data)
        if encoded is None:
            encoded = base64.b64encode(image.data).decode("ascii")
            _keep(key, image.data, encoded)
        return encoded
    key = ("file", str(image.path))
    with _lock:
        seen = key in _cache
    # A path seen before is stat-ed to check it is still the same file (inode, size, mtime).
    if seen and (encoded := _cached(key, _file_identity(os.stat(key[1])))) is not None:
        return encoded
    data, identity = _read_file(key[1])
    encoded = base64.b64encode(data).decode("ascii")
    _keep(key, identity, encoded)
    return encoded


def data_url(image: ImageInput) -> str:
    return f"data:{image.media_type};base64,{b64(image)}"
