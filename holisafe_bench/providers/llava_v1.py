"""LLaVA-v1 prompting and image preparation, as the authors run SafeLLaVA: the `llava_v1`
conversation template with the image token before the question, the prompt tokenised
around the image token (which becomes IMAGE_TOKEN_INDEX), CLIP preprocessing after padding
the image to a square with the processor's mean colour (LLaVA-1.5's `pad` aspect ratio).
Plain functions; PIL is imported inside the one that needs it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from holisafe_bench.errors import HolisafeError

# LLaVA's placeholder id for "the image goes here" in input_ids (never a vocabulary id).
IMAGE_TOKEN_INDEX = -200
IMAGE_TOKEN = "<image>"
LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
ASPECT_RATIOS = ("pad", "none")


def llava_v1_prompt(question: str, system: str | None = None) -> str:
    """`{system} USER: <image>\\n{question} ASSISTANT:`; a run's system prompt replaces the
    template's system line, as `conv.system = ...` does in LLaVA."""
    return f"{system or LLAVA_V1_SYSTEM} USER: {IMAGE_TOKEN}\n{question} ASSISTANT:"


def tokenize_around_image(prompt: str, tokenizer: Any) -> list[int]:
    """Token ids of `prompt` with IMAGE_TOKEN_INDEX where each image token was.

    LLaVA's rule: every text chunk is tokenised on its own (so the image token can never
    merge with its neighbours); the BOS the tokenizer puts on each chunk is kept once, at
    the start."""
    bos = tokenizer.bos_token_id
    ids: list[int] = []
    for n, chunk in enumerate(prompt.split(IMAGE_TOKEN)):
        chunk_ids = list(tokenizer(chunk).input_ids)
        if n > 0:
            ids.append(IMAGE_TOKEN_INDEX)
            if chunk_ids[:1] == [bos]:
                chunk_ids = chunk_ids[1:]
        ids.extend(chunk_ids)
    return ids


def mean_colour(image_processor: Any) -> tuple[int, int, int]:
    """The processor's mean as 0-255 RGB, truncated as LLaVA does (int(x * 255))."""
    r, g, b = (int(x * 255) for x in image_processor.image_mean)
    return r, g, b


def expand_to_square(image: Any, fill: tuple[int, int, int]) -> Any:
    """The image centred on a square canvas of its longer side, filled with `fill`."""
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def pixel_values(images: list[Any], image_processor: Any, aspect_ratio: str) -> Any:
    """The CLIP pixel tensor of `images`; `pad` squares them first (LLaVA-1.5), `none`
    leaves them to the processor's resize and centre crop."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise HolisafeError(
            f"image_aspect_ratio {aspect_ratio!r} is not supported by the llava_v1 path; "
            f"set [engine] mm_processor_kwargs.image_aspect_ratio to one of {ASPECT_RATIOS}"
        )
    if aspect_ratio == "pad":
        fill = mean_colour(image_processor)
        images = [expand_to_square(img, fill) for img in images]
    return image_processor.preprocess(images, return_tensors="pt")["pixel_values"]


def make_importable(snapshot: Path) -> None:
    """Put a checkpoint snapshot on sys.path so the package it ships (the authors'
    `safellava`) imports, as their usage example does. Appended, not prepended: a file in
    a snapshot must never shadow an installed module."""
    folder = str(Path(snapshot).resolve())
    if folder not in sys.path:
        sys.path.append(folder)
