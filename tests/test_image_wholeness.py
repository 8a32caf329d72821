"""Whether an image is whole before it is sent (dataset/image_header.body_problem and
validate.decode_problem): a JPEG or PNG from its structure, in microseconds, agreeing with
PIL's full decode on every cut; anything else, and `data verify`, decoded by PIL."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zlib

import pytest
from PIL import Image

from holisafe_bench.dataset import validate
from holisafe_bench.dataset.image_header import StructureUnknown, body_problem


def _photo(fmt: str, **save) -> bytes:
    rng = random.Random(7)
    image = Image.new("RGB", (64, 48))
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256))] * (64 * 48))
    for x in range(0, 64, 3):  # some structure, so the scan is not trivially short
        for y in range(48):
            image.putpixel((x, y), (x * 4, y * 5, (x * y) % 256))
    buf = io.BytesIO()
    image.save(buf, fmt, **save)
    return buf.getvalue()


def _pil_problem(data: bytes) -> str | None:
    return validate._full_decode_problem(data)


@pytest.mark.parametrize(
    "fmt,save",
    [
        ("JPEG", {"quality": 90}),
        ("JPEG", {"quality": 75, "progressive": True}),
        ("JPEG", {"quality": 80, "exif": b"Exif\x00\x00" + b"\x00" * 32}),
        ("PNG", {}),
    ],
)
def test_every_cut_of_a_file_is_caught_as_pil_catches_it(fmt, save):
    data = _photo(fmt, **save)
    assert body_problem(data) is None and _pil_problem(data) is None
    for cut in range(len(data) // 10, len(data) - 1, max(1, len(data) // 97)):
        short = data[:cut]
        if _pil_problem(short) is not None:  # PIL refuses it: so must the structure
            assert "truncated" in body_problem(short), cut


def test_the_last_bytes_of_a_jpeg_or_png_are_not_optional():
    jpeg, png = _photo("JPEG"), _photo("PNG")
    assert "end-of-image" in body_problem(jpeg[:-2])
    assert body_problem(png[:-12]) == "truncated: the PNG ends before its IEND chunk"
    assert body_problem(png[:-1]) == "truncated: the PNG ends before its IEND chunk"
    idat_end = png.index(b"IEND") - 4  # the chunk before IEND, cut inside its CRC
    assert body_problem(png[: idat_end - 2]) == "truncated: the file ends inside a PNG chunk"


def test_an_end_marker_inside_an_exif_thumbnail_does_not_count():
    thumb = _photo("JPEG")  # a whole JPEG, with its own FF D9, inside APP1
    data = _photo("JPEG", exif=b"Exif\x00\x00" + thumb)
    assert data.count(b"\xff\xd9") >= 2
    assert body_problem(data) is None
    cut = data[: len(data) - 200]  # the main scan cut short, the thumbnail still whole
    assert "end-of-image" in body_problem(cut)


def test_a_damaged_png_chunk_fails_its_crc():
    data = bytearray(_photo("PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    assert "fails its CRC" in body_problem(bytes(data))


def test_formats_and_jpeg_processes_it_does_not_follow_are_left_to_pil():
    with pytest.raises(StructureUnknown):
        body_problem(_photo("GIF"))
    jpeg = bytearray(_photo("JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 1] = 0xC9  # arithmetic-coded: PIL cannot decode it, the structure says nothing
    with pytest.raises(StructureUnknown):
        body_problem(bytes(jpeg))
    png = _photo("PNG")
    bad_png = png[:8] + struct.pack(">I", 13) + b"IHDR" + b"\x00" * 13  # wrong CRC on IHDR
    assert "fails its CRC" in body_problem(bad_png + struct.pack(">I", zlib.crc32(b"x")))


@pytest.fixture
def decodes(monkeypatch):
    """sha256 of each content PIL decoded in full."""
    seen: list[str] = []
    real = validate._full_decode_problem

    def counting(data: bytes):
        seen.append(hashlib.sha256(data).hexdigest()[:8])
        return real(data)

    monkeypatch.setattr(validate, "_DECODE_VERDICTS", {})
    monkeypatch.setattr(validate, "_full_decode_problem", counting)
    return seen


def test_before_sending_a_jpeg_or_png_is_not_decoded_but_other_formats_are(decodes):
    for fmt in ("JPEG", "PNG"):
        data = _photo(fmt)
        digest = hashlib.sha256(data).hexdigest()
        assert validate.decode_problem(digest, lambda data=data: data) is None
        short = data[: len(data) // 2]
        assert "truncated" in validate.decode_problem(
            hashlib.sha256(short).hexdigest(), lambda short=short: short
        )
    assert decodes == []
    gif = _photo("GIF")
    assert validate.decode_problem(hashlib.sha256(gif).hexdigest(), lambda: gif) is None
    assert decodes == [hashlib.sha256(gif).hexdigest()[:8]]


def test_verify_decodes_in_full_once_and_its_verdict_answers_the_quick_check(decodes):
    data = _photo("JPEG")
    digest = hashlib.sha256(data).hexdigest()
    loads = []

    def load() -> bytes:
        loads.append(1)
        return data

    assert validate.decode_problem(digest, load, full=True) is None
    assert validate.decode_problem(digest, load) is None
    assert validate.decode_problem(digest, load, full=True) is None
    assert len(decodes) == 1 and len(loads) == 1


@pytest.mark.parametrize("hash_images", [True, False])
def test_loading_hashes_each_image_from_the_bytes_it_read_once(tmp_path, monkeypatch, hash_images):
    from holisafe_bench.dataset import load_benchmark
    from holisafe_bench.dataset.benchmark import ImageStore
    from holisafe_bench.dataset.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "data", per_cell=1)
    reads: list[str] = []
    real = ImageStore.read

    def counting(self, key):
        reads.append(key)
        return real(self, key)

    monkeypatch.setattr(ImageStore, "read", counting)
    monkeypatch.setattr(validate, "_DECODE_VERDICTS", {})
    bench = load_benchmark(str(data), hash_images=hash_images)
    distinct = {s.image for s in bench.samples}
    assert sorted(reads) == sorted(distinct), "the header check reads each image once"
    reads.clear()
    bench.image_content_hash()
    for sample in bench.samples:
        bench.image(sample)  # checked whole before sending
    # Hashed at load: neither the manifest hash nor the check reads an image again.
    assert reads == [] if hash_images else sorted(set(reads)) == sorted(distinct)
