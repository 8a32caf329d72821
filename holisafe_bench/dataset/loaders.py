"""Read the benchmark from its physical layouts: the hub, the official JSON + images/ folder,
parquet, and JSONL. Every row is validated; bad rows become RowIssues, never exceptions."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Any

from holisafe_bench.dataset.benchmark import (
    Benchmark,
    ImagePathError,
    ImageStore,
    UnusableImageError,
)
from holisafe_bench.dataset.validate import (
    DEFAULT_MAX_PIXELS,
    RowIssue,
    check_image,
    to_sample,
    validate_fields,
)
from holisafe_bench.errors import HolisafeError

HUB_DATASET_ID = "etri-vilab/holisafe-bench"
JSON_NAME = "holisafe_bench.json"


def bundled_sample_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "sample"


def load_benchmark(
    source: str | Path | None = None,
    *,
    token: str | None = None,
    revision: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    full_decode: bool = False,
    hash_images: bool = True,
) -> Benchmark:
    """Load and validate. `source`: None or 'hub', 'sample', a folder, or a .json/.jsonl/
    .parquet file. `full_decode` decodes every image (slower; `data verify` uses it).
    `hash_images`: hash each image while its bytes are read for the header check (the
    stages that send images need every hash: the manifest, the judge's cache keys); False
    for a command that only looks at the rows or the pictures."""
    opts = {"max_pixels": max_pixels, "full_decode": full_decode, "hash_images": hash_images}
    if source is None or str(source) == "hub":
        folder, rev = download_from_hub(token=token, revision=revision)
        bench = _load_path(folder, **opts)
        bench.dataset_id, bench.revision = HUB_DATASET_ID, rev
        bench.location = "hub"
        return bench
    if str(source) == "sample":
        bench = _load_path(bundled_sample_dir(), **opts)
        bench.dataset_id = "holisafe-bench/bundled-synthetic-sample"
        bench.location = "sample"
        return bench
    path = Path(source)
    if not path.exists():
        raise HolisafeError(
            f"{path}: no such file or folder (expected 'hub', 'sample', a folder "
            f"with {JSON_NAME} + images/, or a .json/.jsonl/.parquet file)"
        )
    bench = _load_path(path, **opts)
    bench.location = str(path.resolve())
    return bench


def recorded_dataset(run_manifest: Path) -> str | None:
    """The --dataset a run used, from its run.json (so later stages need not be told again);
    None when the manifest does not say or the recorded folder is gone."""
    try:
        info = json.loads(run_manifest.read_text(encoding="utf-8")).get("dataset") or {}
    except (OSError, ValueError, AttributeError):
        return None
    location = info.get("location") if isinstance(info, dict) else None
    if location in ("hub", "sample"):
        return location
    if location and Path(location).exists():
        return location
    return None


def _load_path(path: Path, **opts: Any) -> Benchmark:
    if path.is_dir():
        if (path / JSON_NAME).exists():
            return _load_json(path / JSON_NAME, **opts)
        parquets = sorted(path.rglob("*.parquet"))
        if parquets:
            return _load_parquet(parquets, **opts)
        raise HolisafeError(f"{path}: neither {JSON_NAME} nor .parquet files found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _load_json(path, **opts)
    if suffix == ".jsonl":
        return _load_jsonl(path, **opts)
    if suffix == ".parquet":
        return _load_parquet([path], **opts)
    raise HolisafeError(f"{path}: unsupported file type {suffix!r} (.json, .jsonl, .parquet)")


def _images_root(json_path: Path) -> Path:
    # The official layout puts images/ beside the JSON; paths inside are relative to it.
    images = json_path.parent / "images"
    return images if images.is_dir() else json_path.parent


def _file_store(rows_file: Path) -> ImageStore:
    # The folder holding the rows file bounds what a row's image path may read.
    return ImageStore(root=_images_root(rows_file), folder=rows_file.parent)


def _utf8_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not data
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise HolisafeError(
            f"{path}: not UTF-8 (byte {exc.start}, line {line}: {data[exc.start : exc.end]!r}); "
            "HoliSafe files are UTF-8 JSON: re-save the file as UTF-8"
        ) from exc


def _load_json(path: Path, **opts: Any) -> Benchmark:
    try:
        rows = json.loads(_utf8_text(path))
    except json.JSONDecodeError as exc:
        raise HolisafeError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    if not isinstance(rows, list):
        raise HolisafeError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
    return _build(rows, _file_store(path), str(path), **opts)


def _load_jsonl(path: Path, **opts: Any) -> Benchmark:
    rows: list[Any] = []
    pre_issues: list[RowIssue] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            if lineno == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)  # a byte-order mark is not data
            try:
                rows.append(json.loads(raw.decode("utf-8")))
            except UnicodeDecodeError as exc:  # one bad row, not a bad file
                rows.append(None)
                pre_issues.append(
                    RowIssue(str(path), lineno, None, "(row)", f"not UTF-8 (byte {exc.start})")
                )
            except json.JSONDecodeError as exc:
                rows.append(None)
                pre_issues.append(
                    RowIssue(str(path), lineno, None, "(row)", f"not valid JSON: {exc.msg}")
                )
    bench = _build(rows, _file_store(path), str(path), **opts)
    bench.issues = pre_issues + bench.issues
    return bench


def _load_parquet(paths: list[Path], **opts: Any) -> Benchmark:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    blobs: dict[str, bytes] = {}
    for path in paths:
        try:
            table = pq.read_table(path)
        except Exception as exc:
            raise HolisafeError(f"{path}: not a readable parquet file: {exc}") from exc
        for offset, raw in enumerate(table.to_pylist()):
            image = raw.get("image")
            key = f"{path.name}#row{offset + 1}"
            if isinstance(image, dict):
                # `datasets` stores an image feature as {bytes, path}
                data = image.get("bytes")
                named = image.get("path") or key
                if data is not None and blobs.get(named, data) != data:
                    # Another row's image has this name (0.jpg in every shard): this row
                    # keeps its own bytes under a name of its own.
                    named = f"{key}/{named}"
                raw["image"] = named if data is not None else None
                if data is not None:
                    blobs.setdefault(named, data)
            elif isinstance(image, bytes | bytearray):
                blobs.setdefault(key, bytes(image))
                raw["image"] = key
            rows.append(raw)
    source = str(paths[0]) if len(paths) == 1 else f"{paths[0].parent} ({len(paths)} files)"
    return _build(rows, ImageStore(blobs=blobs), source, **opts)


def _build(
    rows: list[Any],
    images: ImageStore,
    source: str,
    *,
    max_pixels: int,
    full_decode: bool,
    hash_images: bool,
) -> Benchmark:
    issues: list[RowIssue] = []
    candidates = []
    seen_ids: dict[int, int] = {}
    for row_no, raw in enumerate(rows, start=1):
        if raw is None:
            continue  # already reported (unparseable JSONL line)
        row_issues = validate_fields(raw, source=source, row=row_no)
        if not row_issues:
            first = seen_ids.setdefault(raw["id"], row_no)
            if first != row_no:
                row_issues.append(
                    RowIssue(
                        source, row_no, raw["id"], "id", f"duplicate id (first seen at row {first})"
                    )
                )
        if row_issues:
            issues.extend(row_issues)
            continue
        candidates.append((row_no, raw))

    image_verdicts: dict[str, str | None] = {}
    samples = []
    for row_no, raw in candidates:
        key = raw["image"]
        if not isinstance(key, str):  # JSON rows carry a path; only parquet holds bytes
            problem = f"expected a path relative to the images folder, got {type(key).__name__}"
            issues.append(RowIssue(source, row_no, raw["id"], "image", problem))
            continue
        if key not in image_verdicts:
            image_verdicts[key] = _image_problem(
                images,
                key,
                max_pixels=max_pixels,
                full_decode=full_decode,
                hash_images=hash_images,
            )
        problem = image_verdicts[key]
        if problem is not None:
            issues.append(RowIssue(source, row_no, raw["id"], "image", problem))
            continue
        samples.append(to_sample(raw, key))
    return Benchmark(
        samples=samples, issues=issues, images=images, source=source, rows_read=len(rows)
    )


def _image_problem(
    images: ImageStore, key: str, *, max_pixels: int, full_decode: bool, hash_images: bool
) -> str | None:
    """Why the image behind `key` is unusable, or None. The header check is cheap; the full
    decode (`data verify`) also catches truncated pixel data."""
    try:
        data = images.read(key)
    except ImagePathError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read {key!r}: {exc.strerror or exc}"
    problem = check_image(data, max_pixels=max_pixels)
    if problem is not None:
        return f"{key}: {problem}"
    # Hashed (and checked whole) while the bytes are here: the manifest's image hash and
    # the check before sending need both, and would read every image again for them.
    if hash_images or full_decode:
        images.digest(key, data)
    if full_decode:
        try:
            images.check_decodes(key, data, full=True)
        except UnusableImageError as exc:
            return str(exc)
    return None


def download_from_hub(*, token: str | None = None, revision: str | None = None) -> tuple[Path, str]:
    """The dataset snapshot folder and its commit, from the cache when offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    token = token or os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    what_to_do = (
        f"accept the terms at https://huggingface.co/datasets/{HUB_DATASET_ID}, then set "
        "HF_TOKEN (or run `huggingface-cli login`); or pass a local copy with --dataset PATH"
    )
    kwargs: dict[str, Any] = {
        "repo_id": HUB_DATASET_ID,
        "repo_type": "dataset",
        "revision": revision,
        "token": token,
    }
    try:
        try:
            folder = snapshot_download(**kwargs)
        except (LocalEntryNotFoundError, OSError) as exc:
            if isinstance(exc, GatedRepoError | RepositoryNotFoundError):
                raise
            folder = snapshot_download(**kwargs, local_files_only=True)
    except GatedRepoError as exc:
        raise HolisafeError(
            f"{HUB_DATASET_ID} is gated and this token has no access: {what_to_do}"
        ) from exc
    except RepositoryNotFoundError as exc:
        hint = "no token found: " if not token else "the token cannot see it: "
        raise HolisafeError(f"{HUB_DATASET_ID} not reachable ({hint}{what_to_do})") from exc
    except LocalEntryNotFoundError as exc:
        raise HolisafeError(
            f"{HUB_DATASET_ID}: no network and not in the Hugging Face cache; "
            f"download it once with `holisafe-bench data download` "
            f"({what_to_do})"
        ) from exc
    except HfHubHTTPError as exc:
        raise HolisafeError(f"{HUB_DATASET_ID}: hub error ({exc}); {what_to_do}") from exc
    path = Path(folder)
    return path, path.name  # snapshot folders are named by commit hash
