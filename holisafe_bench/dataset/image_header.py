"""Width and height read straight from a JPEG's or PNG's header bytes, without PIL.

Loading the benchmark checks every image's header (size cap, readable format); PIL's
`Image.open` costs a few hundred microseconds an image, most of it setting up a decoder
that the check never uses, which for 4,031 images is most of a second before the first
request. The two formats the benchmark ships are read here in microseconds; anything
else, or a header this reader does not follow, returns None and goes to PIL as before.
Only the header is vouched for: a truncated body is caught by the full decode every image
passes before it is sent (dataset/benchmark.py, check_decodes).
"""

from __future__ import annotations

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the frame's size; C4 (DHT), C8 (JPG) and CC (DAC) share the
# range but do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers with no length field after them.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def header_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG or PNG header in `data`, or None."""
    if data.startswith(PNG_SIGNATURE):
        return _png(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    return None


def _png(data: bytes) -> tuple[int, int] | None:
    # The first chunk must be IHDR, 13 bytes long: width and height, then 5 more bytes.
    if len(data) < 33 or data[8:16] != b"\x00\x00\x00\rIHDR":
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return (width, height) if width and height else None


def _jpeg(data: bytes) -> tuple[int, int] | None:
    i, end = 2, len(data)
    while i + 4 <= end:
        if data[i] != 0xFF:
            return None  # not at a marker: a header this reader does not follow
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # SOI again, end of image, or scan before a frame
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if length < 7 or i + 9 > end:
                return None
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return (width, height) if width and height else None
        i += 2 + length
    return None
