"""Images for API payloads: the stored bytes, base64-encoded, never re-encoded."""

from __future__ import annotations

import base64

from holisafe_bench.providers.types import ImageInput


def b64(image: ImageInput) -> str:
    return base64.b64encode(image.read_bytes()).decode("ascii")


def data_url(image: ImageInput) -> str:
    return f"data:{image.media_type};base64,{b64(image)}"
