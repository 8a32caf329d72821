"""JPEG and PNG files read straight from their bytes, without PIL: the width and height in
the header, and whether the file is whole.

Loading the benchmark checks every image's header (size cap, readable format); PIL's
`Image.open` costs a few hundred microseconds an image, most of it setting up a decoder
that the check never uses, which for 4,031 images is most of a second before the first
request. The two formats the benchmark ships are read here in microseconds; anything
else, or a header this reader does not follow, returns None and goes to PIL as before.

Before an image is sent, its body is checked too (dataset/benchmark.py, check_decodes): a
file cut short has a valid header. PIL's full decode tells, but costs about 6 ms for a
1024x768 photo, which on 4,031 distinct images is more CPU than all the API calls. The
structure tells as much for the two formats here (`body_problem`): a PNG is whole when
every chunk up to IEND is there with its CRC right; a Huffman-coded JPEG is whole when its
entropy-coded data ends in the end-of-image marker, which cannot occur inside that data
(an FF byte there is always followed by 00 or a restart marker). Damage that leaves the
structure intact goes unseen here; PIL's full decode accepted a test JPEG with bytes
flipped in its scan data too. Other formats and JPEG processes raise StructureUnknown and
are decoded.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the frame's size; C4 (DHT), C8 (JPG) and CC (DAC) share the
# range but do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers with no length field after them.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# The JPEG processes PIL decodes and `body_problem` vouches for: baseline, extended and
# progressive, Huffman-coded.
_HUFFMAN_SOF = frozenset({0xC0, 0xC1, 0xC2})
_EOI = b"\xff\xd9"


class StructureUnknown(Exception):
    """`body_problem` cannot tell for this file: decode it to know."""


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


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, offset of its FF byte) of each JPEG segment after SOI, in order, up to and
    including the first of SOI, EOI or SOS (after which comes entropy-coded data), or until
    the bytes run out. Raises StructureUnknown where a marker should be and is not."""
    i, end = 2, len(data)
    while i + 4 <= end:
        if data[i] != 0xFF:
            raise StructureUnknown("not at a marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        yield marker, i
        if marker in (0xD8, 0xD9, 0xDA):
            return
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2:
            raise StructureUnknown("a segment shorter than its length field")
        i += 2 + length


def _jpeg(data: bytes) -> tuple[int, int] | None:
    try:
        for marker, i in _jpeg_segments(data):
            if marker in (0xD8, 0xD9, 0xDA):  # SOI again, end of image, or scan before a frame
                return None
            if marker in _SOF_MARKERS:
                length = int.from_bytes(data[i + 2 : i + 4], "big")
                if length < 7 or i + 9 > len(data):
                    return None
                height = int.from_bytes(data[i + 5 : i + 7], "big")
                width = int.from_bytes(data[i + 7 : i + 9], "big")
                return (width, height) if width and height else None
    except StructureUnknown:
        return None  # a header this reader does not follow
    return None


def body_problem(data: bytes) -> str | None:
    """Why this JPEG or PNG file is not whole (cut short, a PNG chunk damaged), or None if
    it is. Raises StructureUnknown for any other format, or a layout this reader does not
    follow."""
    if data.startswith(PNG_SIGNATURE):
        return _png_body_problem(memoryview(data))
    if data.startswith(b"\xff\xd8"):
        return _jpeg_body_problem(data)
    raise StructureUnknown("neither a PNG nor a JPEG")


def _png_body_problem(data: memoryview) -> str | None:
    i, end = len(PNG_SIGNATURE), len(data)
    while i + 12 <= end:  # length, type, data, CRC
        length = int.from_bytes(data[i : i + 4], "big")
        crc_at = i + 8 + length
        if crc_at + 4 > end:
            return "truncated: the file ends inside a PNG chunk"
        if zlib.crc32(data[i + 4 : crc_at]) != int.from_bytes(data[crc_at : crc_at + 4], "big"):
            return f"damaged: PNG chunk {bytes(data[i + 4 : i + 8])!r} fails its CRC"
        if data[i + 4 : i + 8] == b"IEND":
            return None
        i = crc_at + 4
    return "truncated: the PNG ends before its IEND chunk"


def _jpeg_body_problem(data: bytes) -> str | None:
    frame = None
    for marker, i in _jpeg_segments(data):
        if marker in (0xD8, 0xD9):
            raise StructureUnknown("SOI or EOI before the scan")
        if marker in _SOF_MARKERS:
            frame = marker
        if marker == 0xDA:  # the first scan: from here on, entropy-coded data
            if frame not in _HUFFMAN_SOF:
                raise StructureUnknown(f"JPEG process SOF{(frame or 0) - 0xC0} or no frame")
            if data.rfind(_EOI, i + 2) < 0:  # from the end: at once for a whole file
                return "truncated: the JPEG's scan data has no end-of-image marker"
            return None
    return "truncated: the JPEG ends before its scan data"
