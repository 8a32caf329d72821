"""Image thumbnails for the report, made in a worker process so decoding (PNG decoding is
~10 ms an image) runs on another core while the report's tables and plots are built.

Kept apart from report.py so the worker imports only Pillow."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
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


def _chunk(items: list[tuple[str, bytes]], size: int) -> list[tuple[str, str | None]]:
    return [(key, thumbnail(data, size)) for key, data in items]


class ThumbnailMaker:
    """Submit images as they are read; `results()` waits for all of them."""

    def __init__(self, size: int) -> None:
        self.size = size
        # spawn, not fork: the parent may hold threads and locks (progress bars, SDKs).
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        self._jobs: list[tuple[list[tuple[str, bytes]], Future]] = []

    def submit_all(self, items: Iterable[tuple[str, bytes]]) -> None:
        batch: list[tuple[str, bytes]] = []
        for item in items:
            batch.append(item)
            if len(batch) == CHUNK:
                self._submit(batch)
                batch = []
        if batch:
            self._submit(batch)

    def _submit(self, batch: list[tuple[str, bytes]]) -> None:
        self._jobs.append((batch, self._pool.submit(_chunk, batch, self.size)))

    def results(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for batch, future in self._jobs:
            try:
                out.update(future.result())
            except BrokenProcessPool:
                # The worker could not start (e.g. a caller's script without a __main__
                # guard): make the rest here rather than lose them.
                out.update(_chunk(batch, self.size))
        return out

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)

    def __enter__(self) -> ThumbnailMaker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_images(bench: Any, keys: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    for key in keys:
        try:
            yield key, bench.images.read(key)
        except OSError:
            continue  # unreadable: no thumbnail
