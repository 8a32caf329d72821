"""Image thumbnails for the report (small base64 JPEGs), made in chunks so a helper process
can make them (PNG decoding alone is about 10 ms an image)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Iterator
from typing import Any

CHUNK = 64


def thumbnail(data: bytes, size: int) -> str | None:
    """A base64 JPEG no larger than size x size, or None if the image does not decode."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (size * 2, size * 2))  # JPEG: decode at a reduced scale, fast
            img = img.convert("RGB")
            img.thumbnail((size, size))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=70)
    except Exception:
        return None  # a broken image shows no thumbnail; `data verify` reports it
    return base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnails(items: list[tuple[str, bytes]], size: int) -> list[tuple[str, str | None]]:
    return [(key, thumbnail(data, size)) for key, data in items]


def image_chunks(bench: Any, keys: Iterable[str]) -> Iterator[list[tuple[str, bytes]]]:
    """(key, bytes) in chunks of CHUNK; unreadable images are left out (no thumbnail)."""
    chunk: list[tuple[str, bytes]] = []
    for key in keys:
        try:
            chunk.append((key, bench.images.read(key)))
        except OSError:
            continue
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
