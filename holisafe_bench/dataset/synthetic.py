"""A synthetic mini-benchmark in the exact HoliSafe schema, with images drawn by code.

Nothing in it is harmful: images are coloured shapes with a word, queries ask about them.
Used by the tests, the demo (the bundled sample) and the benchmarks.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

from holisafe_bench.taxonomy import CATEGORY_OF, IMAGE_SAFETY_LABELS, SUBCATEGORIES, TYPES

_COLORS = ["red", "green", "blue", "orange", "purple", "teal", "gold", "gray"]
_SHAPES = ["circle", "square", "triangle"]
_QUESTIONS = [
    "What shape is drawn in this picture?",
    "Which colour is the large shape?",
    "Describe this picture in one sentence.",
    "What word is written under the shape?",
    "How many shapes can you see here?",
]


def draw_image(rng: random.Random, size: tuple[int, int], word: str, fmt: str) -> bytes:
    from PIL import Image, ImageDraw

    width, height = size
    img = Image.new("RGB", size, rng.choice(["white", "lightyellow", "lavender", "honeydew"]))
    draw = ImageDraw.Draw(img)
    shape, color = rng.choice(_SHAPES), rng.choice(_COLORS)
    box = (width * 0.2, height * 0.1, width * 0.8, height * 0.7)
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "square":
        draw.rectangle(box, fill=color)
    else:
        draw.polygon([(width / 2, box[1]), (box[0], box[3]), (box[2], box[3])], fill=color)
    draw.text((width * 0.05, height * 0.8), word, fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG" if fmt == "png" else "JPEG", quality=85)
    return buf.getvalue()


def synthetic_rows(
    *,
    per_cell: int = 1,
    n_rows: int | None = None,
    seed: int = 0,
    image_size: tuple[int, int] = (96, 72),
) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Rows in the official JSON schema and the images they use, by relative path.
    One cell is a (type, subcategory) pair; each image is shared by several rows."""
    rng = random.Random(seed)
    cells = [(t, s) for s in SUBCATEGORIES for t in TYPES]
    total = n_rows if n_rows is not None else per_cell * len(cells)
    rows: list[dict[str, Any]] = []
    images: dict[str, bytes] = {}
    next_id = 5
    for index in range(total):
        sample_type, sub = cells[index % len(cells)]
        round_no = index // len(cells)
        category = CATEGORY_OF[sub]
        image_safe = sample_type[0] == "S"
        # Two images per (subcategory, safety, round): several queries share one image.
        img_no = 2 * round_no + (0 if image_safe else 1) + 1
        ext = "png" if img_no % 3 == 0 else "jpg"
        rel = f"{category}/{sub}/{sub}_{img_no}.{ext}"
        if rel not in images:
            images[rel] = draw_image(rng, image_size, f"{sub[:10]} {img_no}", ext)
        rows.append(
            {
                "id": next_id,
                "image": rel,
                "query": f"{rng.choice(_QUESTIONS)} (sample {next_id})",
                "type": sample_type,
                "category": category,
                "subcategory": sub,
                "image_safe": image_safe,
                "image_safety_label": 0 if image_safe else IMAGE_SAFETY_LABELS.index(sub),
            }
        )
        next_id += rng.choice([1, 2, 3, 9])  # ids are not contiguous, as in the real data
    return rows, images


def write_synthetic(
    out_dir: Path,
    *,
    per_cell: int = 1,
    layout: str = "json",
    seed: int = 0,
    bad_rows: bool = False,
    n_rows: int | None = None,
    image_size: tuple[int, int] = (96, 72),
) -> Path:
    """Write a synthetic set; returns what to pass as --dataset: the folder (json layout) or
    the file (parquet, jsonl). `bad_rows` plants one row of each kind `data verify` catches."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, images = synthetic_rows(
        per_cell=per_cell, n_rows=n_rows, seed=seed, image_size=image_size
    )
    if bad_rows:
        _plant_bad_rows(rows, images)
    if layout == "parquet":
        return _write_parquet(out_dir / "test.parquet", rows, images)
    image_root = out_dir / "images"
    for rel, data in images.items():
        path = image_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if layout == "json":
        (out_dir / "holisafe_bench.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
        return out_dir
    if layout == "jsonl":
        target = out_dir / "holisafe_bench.jsonl"
        target.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return target
    raise ValueError(f"unknown layout {layout!r} (json, jsonl, parquet)")


# The planted bad rows, by the field `data verify` must name.
BAD_ROW_FIELDS = {
    "corrupt_image": "image",
    "unknown_type": "type",
    "inconsistent_image_safe": "image_safe",
    "duplicate_id": "id",
    "missing_field": "query",
    "oversized_image": "image",
}


def _plant_bad_rows(rows: list[dict[str, Any]], images: dict[str, bytes]) -> None:
    from PIL import Image

    base = dict(rows[0])
    last_id = max(r["id"] for r in rows)

    def add(kind: str, **changes: Any) -> None:
        row = {**base, "id": last_id + 100 + len(rows), **changes}
        row["query"] = f"planted bad row: {kind}"
        rows.append(row)

    images["hate/race/corrupt_1.jpg"] = b"\xff\xd8\xff\xe0 this is not really a jpeg"
    add("corrupt_image", image="hate/race/corrupt_1.jpg", category="hate", subcategory="race")
    add("unknown_type", type="XYZ")
    add("inconsistent_image_safe", image_safe=not base["image_safe"])
    rows.append({**rows[1], "query": "planted bad row: duplicate_id"})
    missing = {**base, "id": last_id + 100 + len(rows)}
    del missing["query"]
    rows.append(missing)
    # 1-bit PNG compresses to a few KB yet declares 100 million pixels.
    big = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(big, format="PNG")
    images["hate/race/oversized_1.png"] = big.getvalue()
    add("oversized_image", image="hate/race/oversized_1.png", category="hate", subcategory="race")


def _write_parquet(path: Path, rows: list[dict[str, Any]], images: dict[str, bytes]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = []
    for row in rows:
        rec = dict(row)
        rec["image"] = {"bytes": images.get(row["image"]), "path": row["image"]}
        records.append(rec)
    pq.write_table(pa.Table.from_pylist(records), path)
    return path
