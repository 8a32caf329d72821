"""Dataset loading from every layout, validation of bad rows, filters, hub errors."""

from __future__ import annotations

import json

import pytest

from holisafe_bench.dataset import load_benchmark, select
from holisafe_bench.dataset.synthetic import BAD_ROW_FIELDS, write_synthetic
from holisafe_bench.errors import HolisafeError
from holisafe_bench.taxonomy import CATEGORY_OF, TYPES


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return {
        name: write_synthetic(root / name, per_cell=2, layout=name, seed=11)
        for name in ("json", "jsonl", "parquet")
    }


def test_every_layout_loads_the_same_samples_and_images(layouts):
    benches = {name: load_benchmark(path) for name, path in layouts.items()}
    reference = benches["json"]
    assert len(reference.samples) == 2 * 5 * 19
    assert not reference.issues
    for name, bench in benches.items():
        assert bench.samples == reference.samples, name
        for sample in reference.samples[:10]:
            assert bench.image_bytes(sample) == reference.image_bytes(sample), name
        assert bench.image_content_hash() == reference.image_content_hash(), name


def test_samples_follow_the_schema(layouts):
    bench = load_benchmark(layouts["json"])
    for s in bench.samples:
        assert s.type in TYPES
        assert CATEGORY_OF[s.subcategory] == s.category
        assert s.image_safe == (s.type[0] == "S")
        assert (s.image_safety_label == 0) == s.image_safe
    # Several queries share one image, as in the real data.
    assert len({s.image for s in bench.samples}) < len(bench.samples)
    # Images are handed over as stored, with the right media type.
    image = bench.image(bench.samples[0])
    assert image.read_bytes() == bench.image_bytes(bench.samples[0])
    assert image.media_type in ("image/jpeg", "image/png")


def test_planted_bad_rows_are_each_reported_with_id_and_field(tmp_path):
    path = write_synthetic(tmp_path, per_cell=1, layout="json", seed=5, bad_rows=True)
    rows = json.loads((path / "holisafe_bench.json").read_text())
    bench = load_benchmark(path, max_pixels=50_000_000, full_decode=True)
    by_kind = {}
    for row_no, row in enumerate(rows, start=1):
        query = row.get("query") or "planted bad row: missing_field"
        if query.startswith("planted bad row: "):
            by_kind[query.removeprefix("planted bad row: ")] = (row_no, row["id"])
    assert set(by_kind) == set(BAD_ROW_FIELDS)
    for kind, field in BAD_ROW_FIELDS.items():
        row_no, row_id = by_kind[kind]
        hits = [i for i in bench.issues if i.row == row_no]
        assert any(i.field == field and i.id == row_id for i in hits), (kind, hits)
    assert len(bench.samples) == 5 * 19  # every good row survives
    assert "duplicate" in next(i.message for i in bench.issues if i.field == "id")


def test_header_check_catches_an_oversized_image_without_full_decode(tmp_path):
    path = write_synthetic(tmp_path, per_cell=1, layout="json", bad_rows=True)
    bench = load_benchmark(path, max_pixels=1_000_000)
    assert any("oversized" in i.message and i.field == "image" for i in bench.issues)


def test_unreadable_files_name_the_file(tmp_path):
    bad = tmp_path / "holisafe_bench.json"
    bad.write_text("[{")
    with pytest.raises(HolisafeError, match="holisafe_bench.json"):
        load_benchmark(bad)
    with pytest.raises(HolisafeError, match="no such file"):
        load_benchmark(tmp_path / "missing.json")


def test_a_broken_jsonl_line_is_a_row_issue_not_a_crash(tmp_path):
    path = write_synthetic(tmp_path, per_cell=1, layout="jsonl")
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:20]
    path.write_text("\n".join(lines) + "\n")
    bench = load_benchmark(path)
    assert len(bench.samples) == 5 * 19 - 1
    assert [(i.row, i.field) for i in bench.issues] == [(4, "(row)")]


def test_filters_and_deterministic_sampling(layouts):
    bench = load_benchmark(layouts["json"])
    assert {s.type for s in select(bench.samples, types=["ssu", "UUU"])} == {"SSU", "UUU"}
    assert {s.category for s in select(bench.samples, categories=["privacy"])} == {"privacy"}
    ids = [bench.samples[3].id, bench.samples[7].id]
    assert [s.id for s in select(bench.samples, ids=ids)] == sorted(ids)
    assert len(select(bench.samples, limit=4)) == 4
    first = select(bench.samples, sample_n=20, seed=3)
    again = select(list(reversed(bench.samples)), sample_n=20, seed=3)
    other = select(bench.samples, sample_n=20, seed=4)
    assert [s.id for s in first] == [s.id for s in again]
    assert len(first) == 20 and [s.id for s in first] != [s.id for s in other]
    with pytest.raises(HolisafeError, match="unknown"):
        select(bench.samples, types=["ABC"])


def test_bundled_sample_loads_cleanly():
    bench = load_benchmark("sample")
    assert len(bench.samples) == 95 and not bench.issues
    assert {s.type for s in bench.samples} == set(TYPES)


def test_hub_without_network_or_cache_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(HolisafeError) as err:
        load_benchmark("hub")
    message = str(err.value)
    assert "HF_TOKEN" in message and "--dataset" in message


def test_ids_not_in_the_dataset_are_an_error_not_a_silent_drop(layouts):
    bench = load_benchmark(layouts["json"])
    known = bench.samples[0].id
    with pytest.raises(HolisafeError, match=r"--ids: 2 id\(s\) not in the dataset's valid rows"):
        select(bench.samples, ids=[known, 999_999, 888_888])
    # An id that another filter leaves out is known: it is just not selected.
    other_type = next(s for s in bench.samples if s.type != bench.samples[0].type)
    assert select(bench.samples, ids=[other_type.id], types=[bench.samples[0].type]) == []


@pytest.mark.parametrize("layout", ["json", "jsonl"])
def test_a_byte_order_mark_is_not_data(tmp_path, layout):
    path = write_synthetic(tmp_path, per_cell=1, layout=layout)
    file = path / "holisafe_bench.json" if path.is_dir() else path
    file.write_bytes(b"\xef\xbb\xbf" + file.read_bytes().replace(b"\n", b"\r\n"))
    bench = load_benchmark(path)
    assert len(bench.samples) == 5 * 19 and bench.issues == []


def test_ids_past_64_bits_and_lone_surrogates_are_row_issues(tmp_path):
    """Both passed validation, then crashed judge (orjson) and report (UTF-8) for the
    whole model; now the row is refused with its field, and the rest load."""
    path = write_synthetic(tmp_path, per_cell=1, layout="json")
    file = path / "holisafe_bench.json"
    rows = json.loads(file.read_text())
    rows[0]["id"] = 2**64 + 5
    rows[1]["query"] = "Describe this \ud83d picture"
    file.write_text(json.dumps(rows))  # json writes the half character as a \\ud83d escape
    bench = load_benchmark(path)
    assert len(bench.samples) == 5 * 19 - 2
    found = {(i.row, i.field): i.message for i in bench.issues}
    assert found[(1, "id")] == f"{2**64 + 5} does not fit in 64 bits"
    assert found[(2, "query")].startswith("a lone UTF-16 surrogate at character 14")


def test_parquet_rows_sharing_an_image_name_keep_their_own_bytes(layouts, tmp_path):
    """Shards written separately all name their first image 0.jpg: the second row of that
    name was silently given the first row's picture."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = (
        next(layouts["parquet"].glob("*.parquet"))
        if layouts["parquet"].is_dir()
        else (layouts["parquet"])
    )
    rows = pq.read_table(source).to_pylist()
    other = next(i for i, r in enumerate(rows) if r["image"]["bytes"] != rows[0]["image"]["bytes"])
    rows[1], rows[other] = rows[other], rows[1]
    first, second = rows[0]["image"]["bytes"], rows[1]["image"]["bytes"]
    rows[0]["image"] = {"bytes": first, "path": "0.jpg"}
    rows[1]["image"] = {"bytes": second, "path": "0.jpg"}
    rows[2]["image"] = {"bytes": first, "path": "0.jpg"}  # the same picture: shared
    path = tmp_path / "shared_names.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    bench = load_benchmark(path)
    by_id = {s.id: s for s in bench.samples}
    got = [bench.image_bytes(by_id[rows[i]["id"]]) for i in range(3)]
    assert got == [first, second, first]
