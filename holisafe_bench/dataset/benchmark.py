"""The loaded benchmark: valid samples, the bad rows, and access to each sample's image."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from holisafe_bench.dataset.validate import RowIssue, sniff_media_type
from holisafe_bench.providers.types import ImageInput
from holisafe_bench.records import Sample


@dataclass
class ImageStore:
    """Images by key: files under a root folder (JSON/JSONL layouts) or bytes in memory
    (parquet). Nothing is decoded or re-encoded here."""

    root: Path | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)
    # Several samples share one image: sniff each file's format once.
    _media_types: dict[str, str] = field(default_factory=dict, repr=False)

    def read(self, key: str) -> bytes:
        if key in self.blobs:
            return self.blobs[key]
        if self.root is None:
            raise FileNotFoundError(f"no image stored under {key!r}")
        return (self.root / key).read_bytes()

    def input(self, key: str) -> ImageInput:
        if key in self.blobs:
            data = self.blobs[key]
            return ImageInput(data=data, media_type=sniff_media_type(data))
        path = self.root / key  # type: ignore[operator]
        media_type = self._media_types.get(key)
        if media_type is None:
            with path.open("rb") as fh:
                media_type = self._media_types[key] = sniff_media_type(fh.read(16))
        return ImageInput(path=path, media_type=media_type)


@dataclass
class Benchmark:
    samples: list[Sample]
    issues: list[RowIssue]
    images: ImageStore
    source: str
    dataset_id: str | None = None
    revision: str | None = None
    rows_read: int = 0
    _image_hash: str | None = None

    def __post_init__(self) -> None:
        self.by_id: dict[int, Sample] = {s.id: s for s in self.samples}

    def image(self, sample: Sample) -> ImageInput:
        return self.images.input(sample.image)

    def image_bytes(self, sample: Sample) -> bytes:
        return self.images.read(sample.image)

    def load_rgb(self, sample: Sample):
        import io

        from PIL import Image

        with Image.open(io.BytesIO(self.image_bytes(sample))) as img:
            return img.convert("RGB")

    def image_content_hash(self) -> str:
        """sha256 over the sorted sha256 of every distinct image the valid samples use."""
        if self._image_hash is None:
            digests = sorted(
                hashlib.sha256(self.images.read(key)).hexdigest()
                for key in {s.image for s in self.samples}
            )
            self._image_hash = hashlib.sha256("\n".join(digests).encode()).hexdigest()
        return self._image_hash

    def manifest_info(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "revision": self.revision,
            "source": self.source,
            "rows": self.rows_read,
            "valid_rows": len(self.samples),
            "bad_rows": len({(i.row, i.source) for i in self.issues}),
            "image_content_sha256": self.image_content_hash(),
        }
