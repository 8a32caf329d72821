"""Images and requests for the tests, encoded as a dataset would hold them."""

from __future__ import annotations

import io

from holisafe_bench.providers.types import ChatRequest, ImageInput


def image(size: tuple[int, int], color: str, fmt: str = "PNG") -> ImageInput:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).ellipse((2, 2, size[0] - 3, size[1] - 3), fill=color)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return ImageInput(data=buf.getvalue(), media_type=f"image/{fmt.lower()}")


BROKEN = ImageInput(data=b"\x89PNG\r\n\x1a\n but not really a png", media_type="image/png")


def request(
    rid: str,
    img: ImageInput | None,
    text: str = "what shape is in this picture",
    *,
    max_tokens: int = 12,
    temperature: float = 0.0,
    system: str | None = None,
    images: tuple[ImageInput, ...] | None = None,
) -> ChatRequest:
    return ChatRequest(
        id=rid,
        text=text,
        images=images if images is not None else ((img,) if img is not None else ()),
        max_tokens=max_tokens,
        temperature=temperature,
        system=system,
    )
