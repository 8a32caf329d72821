"""The loaded benchmark: valid samples, the bad rows, and access to each sample's image."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from holisafe_bench.dataset.validate import RowIssue, decode_problem, sniff_media_type
from holisafe_bench.errors import HolisafeError
from holisafe_bench.media import ImageInput
from holisafe_bench.records import Sample


class ImagePathError(HolisafeError):
    """A row's image path that would read a file outside the dataset: never opened."""


class UnusableImageError(HolisafeError):
    """An image that does not fully decode (e.g. a truncated JPEG): never sent."""


@dataclass
class ImageStore:
    """Images by key: files under a root folder (JSON/JSONL layouts) or bytes in memory
    (parquet). Nothing is decoded or re-encoded here, except the once-per-content decode
    check before an image is handed out for sending."""

    root: Path | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)
    # The dataset folder: every file key must resolve inside it (or inside the HF cache).
    folder: Path | None = None
    # Several samples share one image: resolve, hash and sniff each file once.
    _media_types: dict[str, str] = field(default_factory=dict, repr=False)
    _paths: dict[str, Path] = field(default_factory=dict, repr=False)
    _digests: dict[str, str] = field(default_factory=dict, repr=False)

    def read(self, key: str) -> bytes:
        if key in self.blobs:
            return self.blobs[key]
        return self.path(key).read_bytes()

    def path(self, key: str) -> Path:
        """The file behind `key`, symlinks resolved, after checking it stays in bounds."""
        if self.root is None:
            raise FileNotFoundError(f"no image stored under {key!r}")
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = contained_path(self.root, key, self.folder or self.root)
        return path

    def digest(self, key: str, data: bytes | None = None) -> str:
        """sha256 of the image's bytes, once per key (the manifest hash and the decode
        check share it). `data`: the bytes, when the caller has already read them."""
        digest = self._digests.get(key)
        if digest is None:
            data = self.read(key) if data is None else data
            digest = self._digests[key] = hashlib.sha256(data).hexdigest()
            media_type = sniff_media_type(data[:16])
            if key not in self.blobs:  # sniffed now, so sending it opens the file no more
                self._media_types.setdefault(key, media_type)
            # Checked whole now, while the bytes are here: the check before sending then
            # reads nothing (microseconds for a JPEG or PNG; other formats wait for it).
            if media_type in ("image/jpeg", "image/png"):
                decode_problem(digest, lambda: data)
        return digest

    def check_decodes(self, key: str, data: bytes | None = None, *, full: bool = False) -> None:
        """Raise UnusableImageError unless the image is whole: a truncated file has a valid
        header. Checked from the file's structure, or with `full` by decoding every pixel
        (validate.decode_problem; once per distinct content)."""
        digest = self.digest(key, data)
        load = (lambda: self.read(key)) if data is None else (lambda: data)
        problem = decode_problem(digest, load, full=full)
        if problem is not None:
            raise UnusableImageError(f"image {key}: {problem}; re-download or replace the file")

    def input(self, key: str) -> ImageInput:
        self.check_decodes(key)
        if key in self.blobs:
            data = self.blobs[key]
            return ImageInput(data=data, media_type=sniff_media_type(data))
        path = self.path(key)
        media_type = self._media_types.get(key)
        if media_type is None:
            with path.open("rb") as fh:
                media_type = self._media_types[key] = sniff_media_type(fh.read(16))
        return ImageInput(path=path, media_type=media_type)


def contained_path(root: Path, key: str, folder: Path) -> Path:
    """`root / key` with symlinks resolved, or ImagePathError if the key is absolute or the
    result leaves `folder` (the dataset folder). Targets in the Hugging Face hub cache are
    allowed: a hub snapshot's files are symlinks into the cache's blobs/."""
    if Path(key).is_absolute():
        raise ImagePathError(f"{key!r} is an absolute path; use a path relative to {root}")
    try:
        target = _resolve(root / key)
        inside = _is_within(target, _resolved(str(folder))) or _is_within(target, _hf_cache_root())
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loop, NUL byte, ...
        raise ImagePathError(f"{key!r} cannot be resolved: {exc}") from exc
    if not inside:
        raise ImagePathError(
            f"{key!r} resolves to {target}, outside the dataset folder {folder} (and the "
            "Hugging Face cache); move the file into the dataset folder and fix the path"
        )
    return target


def _resolve(path: Path) -> Path:
    """`path.resolve()`, with the folder part resolved once per folder: thousands of images
    share a few folders, and resolving walks (lstat) every component. Only a final
    component that is itself a symlink (or '.', '..') is resolved in full."""
    name = path.name
    if name in ("", ".", "..") or path.is_symlink():
        return path.resolve()
    return _resolved(str(path.parent)) / name


@functools.lru_cache(maxsize=4096)
def _resolved(folder: str) -> Path:
    return Path(folder).resolve()


def _is_within(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.is_relative_to(folder)


def _hf_cache_root() -> Path | None:
    # Where `data download` (snapshot_download with its default cache) puts the dataset.
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    return _resolved(str(constants.HF_HUB_CACHE))


@dataclass
class Benchmark:
    samples: list[Sample]
    issues: list[RowIssue]
    images: ImageStore
    source: str
    dataset_id: str | None = None
    revision: str | None = None
    rows_read: int = 0
    # What --dataset to pass to load it again: 'hub', 'sample' or an absolute path.
    location: str | None = None
    _image_hash: str | None = None

    def __post_init__(self) -> None:
        self.by_id: dict[int, Sample] = {s.id: s for s in self.samples}

    def image(self, sample: Sample) -> ImageInput:
        return self.images.input(sample.image)

    def image_bytes(self, sample: Sample) -> bytes:
        return self.images.read(sample.image)

    def image_content_hash(self) -> str:
        """sha256 over the sorted sha256 of every distinct image the valid samples use."""
        if self._image_hash is None:
            digests = sorted(self.images.digest(key) for key in {s.image for s in self.samples})
            self._image_hash = hashlib.sha256("\n".join(digests).encode()).hexdigest()
        return self._image_hash

    def manifest_info(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "revision": self.revision,
            "source": self.source,
            "location": self.location,
            "rows": self.rows_read,
            "valid_rows": len(self.samples),
            "bad_rows": len({(i.row, i.source) for i in self.issues}),
            "image_content_sha256": self.image_content_hash(),
        }
