"""The base64 images API providers send (providers/images.py): the stored bytes as they
are, a repeat of a file served from the cache after a stat, a changed file read again, a
file never seen before read with no stat of its path, bytes in memory keyed by the object."""

from __future__ import annotations

import base64
import os

import pytest

from holisafe_bench.media import ImageInput
from holisafe_bench.providers import images


@pytest.fixture(autouse=True)
def _empty_cache():
    images._cache.clear()
    yield
    images._cache.clear()


@pytest.fixture
def reads(monkeypatch):
    """Paths whose bytes were read, in order."""
    seen: list[str] = []
    real = images._read_file

    def counting(path: str):
        seen.append(path)
        return real(path)

    monkeypatch.setattr(images, "_read_file", counting)
    return seen


@pytest.fixture
def stats(monkeypatch):
    """Paths stat-ed through os.stat while the test runs."""
    seen: list[str] = []
    real = os.stat

    def counting(path, *args, **kwargs):
        seen.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(images.os, "stat", counting)
    return seen


def _decoded(image: ImageInput) -> bytes:
    return base64.b64decode(images.b64(image))


def test_a_file_is_sent_as_its_stored_bytes_and_its_data_url_names_the_media_type(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG not really")
    image = ImageInput(path=path, media_type="image/png")
    assert _decoded(image) == b"\x89PNG not really"
    assert images.data_url(image) == "data:image/png;base64," + images.b64(image)


def test_a_new_file_is_read_once_with_no_stat_and_a_repeat_is_a_stat_not_a_read(
    tmp_path, reads, stats
):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"jpeg-bytes")
    assert _decoded(ImageInput(path=path)) == b"jpeg-bytes"
    assert reads == [str(path)] and str(path) not in stats
    assert _decoded(ImageInput(path=path)) == b"jpeg-bytes"
    assert reads == [str(path)], "the repeat came from the cache"
    assert stats.count(str(path)) == 1, "checked once against the file"


def test_a_file_changed_since_it_was_cached_is_read_again(tmp_path, reads):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"first")
    assert _decoded(ImageInput(path=path)) == b"first"
    path.write_bytes(b"second, longer")
    assert _decoded(ImageInput(path=path)) == b"second, longer"
    replaced = tmp_path / "b.jpg"
    replaced.write_bytes(b"second, other")  # same size, another inode
    os.replace(replaced, path)
    assert _decoded(ImageInput(path=path)) == b"second, other"
    assert len(reads) == 3


def test_a_missing_file_raises_and_caches_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        images.b64(ImageInput(path=tmp_path / "gone.jpg"))
    assert not images._cache


def test_bytes_in_memory_are_keyed_by_the_object(reads):
    blob = b"parquet blob " * 10
    assert _decoded(ImageInput(data=blob)) == blob
    assert images.b64(ImageInput(data=blob)) is images.b64(ImageInput(data=blob))
    other = bytes(bytearray(b"another blob"))
    assert _decoded(ImageInput(data=other)) == b"another blob"
    assert reads == []


def test_only_the_last_few_images_stay_cached(tmp_path, reads):
    paths = []
    for n in range(images._CACHED_IMAGES + 1):
        paths.append(tmp_path / f"{n}.jpg")
        paths[-1].write_bytes(f"image {n}".encode())
        images.b64(ImageInput(path=paths[-1]))
    assert len(images._cache) == images._CACHED_IMAGES
    images.b64(ImageInput(path=paths[-1]))  # the newest: still cached
    images.b64(ImageInput(path=paths[0]))  # the oldest: evicted, read again
    assert reads.count(str(paths[-1])) == 1 and reads.count(str(paths[0])) == 2
