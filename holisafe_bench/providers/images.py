"""Images for API payloads: the stored bytes, base64-encoded, never re-encoded.

Several samples can share one image file (and an LLM judge sends each sample's image
again): the encoded form of the last few images is kept, keyed by the file's identity
(path, inode, size, mtime) or by the very bytes object, so a repeat costs a stat, not a
read and a base64 of a few hundred KB."""

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


def _identity(image: ImageInput) -> tuple[Any, object]:
    """(cache key, the object the entry must still match)."""
    if image.data is not None:
        # By identity: the same bytes object (a parquet blob) is the same content.
        return ("data", id(image.data)), image.data
    st = os.stat(image.path)  # type: ignore[arg-type]
    return ("file", str(image.path), st.st_ino, st.st_size, st.st_mtime_ns), None


def b64(image: ImageInput) -> str:
    key, owner = _identity(image)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] is owner:
            _cache.move_to_end(key)
            return hit[1]
    encoded = base64.b64encode(image.read_bytes()).decode("ascii")
    with _lock:
        _cache[key] = (owner, encoded)
        if len(_cache) > _CACHED_IMAGES:
            _cache.popitem(last=False)
    return encoded


def data_url(image: ImageInput) -> str:
    return f"data:{image.media_type};base64,{b64(image)}"
