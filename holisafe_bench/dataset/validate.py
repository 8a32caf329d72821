"""Row and image validation against the schema of HOLISAFE.md."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from holisafe_bench.dataset.image_header import StructureUnknown, body_problem, header_dimensions
from holisafe_bench.records import Sample
from holisafe_bench.taxonomy import CATEGORY_OF, IMAGE_SAFETY_LABELS, TYPES, image_is_safe

DEFAULT_MAX_PIXELS = 50_000_000  # about 7,000 x 7,000; real HoliSafe images are far smaller

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "id": int,
    "image": (str, dict, bytes),
    "query": str,
    "type": str,
    "category": str,
    "subcategory": str,
    "image_safe": bool,
    "image_safety_label": int,
}


@dataclass(frozen=True)
class RowIssue:
    """One problem with one row: where it is and which field is wrong."""

    source: str
    row: int  # 1-based position in the source file
    id: int | None
    field: str
    message: str

    def __str__(self) -> str:
        ident = f"id {self.id}" if self.id is not None else "id ?"
        return f"{self.source} row {self.row} ({ident}): field '{self.field}': {self.message}"


def validate_fields(raw: Any, *, source: str, row: int) -> list[RowIssue]:
    """Schema checks that need no image: presence, types, codes, taxonomy, consistency."""
    if not isinstance(raw, dict):
        return [
            RowIssue(source, row, None, "(row)", f"expected an object, got {type(raw).__name__}")
        ]
    row_id = raw.get("id") if isinstance(raw.get("id"), int) else None
    issues: list[RowIssue] = []

    def bad(field: str, message: str) -> None:
        issues.append(RowIssue(source, row, row_id, field, message))

    for field, expected in _REQUIRED.items():
        if field not in raw or raw[field] is None:
            bad(field, "missing")
            continue
        value = raw[field]
        # bool is an int in Python: keep ids and labels honest.
        if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            bad(field, f"expected an integer, got {value!r}")
        elif not isinstance(value, expected):
            bad(field, f"expected {_type_name(expected)}, got {type(value).__name__}")
    if issues:
        return issues

    if raw["type"] not in TYPES:
        bad("type", f"unknown type code {raw['type']!r} (expected one of {', '.join(TYPES)})")
    if raw["subcategory"] not in CATEGORY_OF:
        bad("subcategory", f"unknown subcategory {raw['subcategory']!r}")
    elif CATEGORY_OF[raw["subcategory"]] != raw["category"]:
        bad(
            "category",
            f"{raw['category']!r} does not contain subcategory {raw['subcategory']!r} "
            f"(expected {CATEGORY_OF[raw['subcategory']]!r})",
        )
    if raw["type"] in TYPES and raw["image_safe"] != image_is_safe(raw["type"]):
        bad(
            "image_safe",
            f"is {raw['image_safe']} but type {raw['type']} says the image is "
            f"{'safe' if raw['type'][0] == 'S' else 'unsafe'}",
        )
    label = raw["image_safety_label"]
    if not 0 <= label < len(IMAGE_SAFETY_LABELS):
        bad("image_safety_label", f"{label} is outside 0..{len(IMAGE_SAFETY_LABELS) - 1}")
    elif raw["image_safe"] != (label == 0):
        bad(
            "image_safety_label",
            f"{label} ({IMAGE_SAFETY_LABELS[label]}) contradicts image_safe={raw['image_safe']}",
        )
    if not raw["query"].strip():
        bad("query", "empty")
    _check_storable(raw, bad)
    return issues


def _check_storable(raw: dict[str, Any], bad: Callable[[str, str], None]) -> None:
    """What the record files must be able to hold: ids travel through orjson (64-bit
    integers), text is written as UTF-8."""
    if not -(2**63) <= raw["id"] < 2**63:
        bad("id", f"{raw['id']} does not fit in 64 bits")
    for field in ("query", "image", "category", "subcategory"):
        if not isinstance(raw[field], str):
            continue  # image bytes or a parquet image record
        position = surrogate_at(raw[field])
        if position is not None:
            bad(field, f"a lone UTF-16 surrogate at character {position} (not valid Unicode)")


def surrogate_at(text: str) -> int | None:
    """Where a JSON \\ud800-style escape left half a character: such text cannot be
    written as UTF-8, so it would fail every record and hash later."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _type_name(expected: type | tuple[type, ...]) -> str:
    if isinstance(expected, tuple):
        return " or ".join(t.__name__ for t in expected)
    return expected.__name__


def to_sample(raw: dict[str, Any], image_key: str) -> Sample:
    return Sample(
        id=raw["id"],
        image=image_key,
        query=raw["query"],
        type=raw["type"],
        category=raw["category"],
        subcategory=raw["subcategory"],
        image_safe=raw["image_safe"],
        image_safety_label=raw["image_safety_label"],
    )


def check_image(data: bytes, *, max_pixels: int) -> str | None:
    """None if the image header is usable, else why not. Cheap: the pixels are not decoded
    (decode_problem does that)."""
    dimensions = header_dimensions(data)
    if dimensions is not None:  # a JPEG or PNG header read without PIL (image_header.py)
        return _pixel_cap_problem(*dimensions, max_pixels=max_pixels)
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                problem = _pixel_cap_problem(*img.size, max_pixels=max_pixels)
                if problem is not None:
                    return problem
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return f"decompression-bomb guard: {exc}"
    except Exception as exc:  # PIL raises many types for bad data
        return f"does not decode: {type(exc).__name__}: {exc}"
    return None


def _pixel_cap_problem(width: int, height: int, *, max_pixels: int) -> str | None:
    if width * height > max_pixels:
        return (
            f"{width}x{height} = {width * height:,} pixels exceeds the cap of "
            f"{max_pixels:,} (decompression-bomb guard; raise --max-pixels if real)"
        )
    return None


# (sha256, full) -> the verdict of `decode_problem`.
_DECODE_VERDICTS: dict[tuple[str, bool], str | None] = {}


def decode_problem(digest: str, load: Callable[[], bytes], *, full: bool = False) -> str | None:
    """Why the image with this sha256 cannot be used, or None; `load` gives its bytes and is
    called only the first time a content is seen. Before sending (`full` False) a JPEG or
    PNG is checked to be whole from its structure (image_header.body_problem, microseconds);
    any other image, and every image for `data verify` (`full`), is decoded by PIL in full
    (milliseconds). A full decode's verdict also answers the quick check."""
    if (digest, True) in _DECODE_VERDICTS:
        return _DECODE_VERDICTS[digest, True]
    if (digest, False) in _DECODE_VERDICTS and not full:
        return _DECODE_VERDICTS[digest, False]
    data = load()
    if not full:
        try:
            _DECODE_VERDICTS[digest, False] = body_problem(data)
            return _DECODE_VERDICTS[digest, False]
        except StructureUnknown:
            pass
    _DECODE_VERDICTS[digest, True] = _full_decode_problem(data)
    return _DECODE_VERDICTS[digest, True]


def _full_decode_problem(data: bytes) -> str | None:
    # A truncated or corrupt body passes the header check: only decoding every pixel tells.
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception as exc:  # PIL raises many types for bad data
        return f"does not decode: {type(exc).__name__}: {exc}"
    return None


def sniff_media_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "application/octet-stream"
