"""Media the pipeline passes between layers: the dataset produces images, providers send
them. Neutral ground, so the dataset never imports the provider layer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageInput:
    """An image to send: a file on disk or bytes in memory, never both. `media_type` is the
    encoded format (image/jpeg, image/png); providers that accept it send the bytes as they are."""

    path: Path | None = None
    data: bytes | None = None
    media_type: str = "image/jpeg"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise ValueError("ImageInput needs exactly one of path and data")

    def read_bytes(self) -> bytes:
        return self.data if self.data is not None else self.path.read_bytes()  # type: ignore[union-attr]

    def sha256(self) -> str:
        return hashlib.sha256(self.read_bytes()).hexdigest()
