"""Request and result types of the provider layer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from holisafe_bench.records import Outcome, Usage


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


@dataclass(frozen=True)
class ChatRequest:
    """One user turn: images first, then text (HOLISAFE.md order)."""

    id: str
    text: str
    images: tuple[ImageInput, ...] = ()
    system: str | None = None
    max_tokens: int = 512
    temperature: float = 0.0


@dataclass
class ChatResult:
    id: str
    outcome: Outcome
    text: str | None = None
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_s: float | None = None
    error: str | None = None
    attempts: int = 1
    error_kind: Literal["timeout", "api_error", None] = None

    def __post_init__(self) -> None:
        if self.outcome == "ok" and self.text is None:
            raise ValueError("an ok result needs text")
        if self.outcome != "ok" and self.text is not None:
            raise ValueError("a failed or blocked result must not carry text")
