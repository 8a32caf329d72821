"""The header reader (dataset/image_header.py) gives PIL's width and height for every JPEG
and PNG it reads, and steps aside (None) for anything it does not follow."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from holisafe_bench.dataset.image_header import header_dimensions
from holisafe_bench.dataset.validate import check_image


def _encoded(fmt: str, size: tuple[int, int], mode: str = "RGB", **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, "red").save(buf, fmt, **save)
    return buf.getvalue()


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010E] = "a description long enough to make a real APP1 segment " * 20
    return exif


CASES = [
    ("JPEG", (1024, 768), "RGB", {}),
    ("JPEG", (96, 72), "L", {}),
    ("JPEG", (33, 17), "CMYK", {}),
    ("JPEG", (640, 480), "RGB", {"progressive": True}),
    ("JPEG", (300, 200), "RGB", {"exif": _exif()}),
    ("JPEG", (300, 200), "RGB", {"icc_profile": b"\x00" * 5000}),
    ("PNG", (1, 1), "RGB", {}),
    ("PNG", (800, 600), "RGBA", {}),
    ("PNG", (5, 9), "P", {}),
]


@pytest.mark.parametrize("fmt,size,mode,save", CASES)
def test_dimensions_agree_with_pil(fmt, size, mode, save):
    data = _encoded(fmt, size, mode, **save)
    with Image.open(io.BytesIO(data)) as img:
        assert header_dimensions(data) == img.size == size


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xd8",
        b"\xff\xd8\xff\xda\x00\x08",  # a scan before any frame
        b"\xff\xd8\x00\x00\x00\x00",  # not at a marker
        b"\xff\xd8\xff\xe0\x00\x01",  # a length below 2
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # a cut IHDR
        b"GIF89a\x01\x00\x01\x00",
        b"not an image at all",
    ],
)
def test_headers_it_does_not_follow_go_to_pil(data):
    assert header_dimensions(data) is None


def test_a_cut_jpeg_header_still_gets_pils_verdict():
    data = _encoded("JPEG", (64, 64))
    sof = data.index(b"\xff\xc0")
    assert header_dimensions(data[: sof + 6]) is None  # the frame's size is cut off
    assert check_image(data[: sof + 6], max_pixels=10**6).startswith("does not decode")


def test_the_pixel_cap_reads_the_same_either_way():
    jpeg, gif = _encoded("JPEG", (200, 100)), _encoded("GIF", (200, 100))
    for data in (jpeg, gif):  # the header reader, then PIL
        assert check_image(data, max_pixels=20_000) is None
        assert check_image(data, max_pixels=19_999) == (
            "200x100 = 20,000 pixels exceeds the cap of 19,999 "
            "(decompression-bomb guard; raise --max-pixels if real)"
        )
