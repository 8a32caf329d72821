"""The JSONL record store: last record wins, torn lines, the writer lock, resume keys."""

from __future__ import annotations

import pytest

from holisafe_bench.records import ResponseRecord
from holisafe_bench.store import RecordStore, StoreLockedError, write_json_atomic


def _rec(sample_id: int, outcome: str = "ok", text: str | None = "hello") -> ResponseRecord:
    return ResponseRecord(
        sample_id=sample_id,
        model="m",
        type="SSS",
        category="hate",
        subcategory="race",
        outcome=outcome,
        text=text if outcome == "ok" else None,
        error="boom" if outcome == "error" else None,
    )


def test_roundtrip_and_last_record_wins(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl", ResponseRecord)
    with store.writer() as w:
        w.write(_rec(1, text="first"))
        w.write(_rec(2))
        w.write(_rec(1, text="second"))
    got = store.read()
    assert sorted(got) == [1, 2]
    assert got[1].text == "second"
    assert store.dropped_lines == 0


def test_torn_last_line_is_dropped_by_reader_and_cut_by_next_writer(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path, ResponseRecord)
    with store.writer() as w:
        w.write(_rec(1))
        w.write(_rec(2))
    whole = path.read_bytes()
    # Simulate a crash in the middle of writing the third line.
    path.write_bytes(whole + _rec(3).model_dump_json().encode()[:25])
    assert sorted(store.read()) == [1, 2]
    assert store.dropped_lines == 1

    with store.writer() as w:
        w.write(_rec(4))
    data = path.read_bytes()
    assert data.startswith(whole)
    assert data.endswith(b"\n")
    assert len(data.splitlines()) == 3
    assert sorted(store.read()) == [1, 2, 4]
    assert store.dropped_lines == 0


def test_unreadable_middle_line_is_skipped_and_counted(tmp_path):
    path = tmp_path / "r.jsonl"
    good = _rec(1).model_dump_json()
    path.write_text(
        good + "\n" + '{"sample_id": "x"}\n' + "not json\n" + _rec(2).model_dump_json() + "\n"
    )
    store = RecordStore(path, ResponseRecord)
    assert sorted(store.read()) == [1, 2]
    assert store.dropped_lines == 2


def test_second_writer_is_refused_while_first_holds_the_lock(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl", ResponseRecord)
    with store.writer() as w:
        w.write(_rec(1))
        with pytest.raises(StoreLockedError, match="being written by this process"), store.writer():
            pass
    # Released afterwards.
    with store.writer() as w:
        w.write(_rec(2))
    assert sorted(store.read()) == [1, 2]


def test_done_keys_excludes_errors_so_resume_redoes_them(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl", ResponseRecord)
    with store.writer() as w:
        w.write(_rec(1))
        w.write(_rec(2, outcome="error"))
        w.write(_rec(3, outcome="content_filter"))
    assert store.done_keys(lambda r: r.is_complete) == {1, 3}


def test_overwrite_starts_a_fresh_file(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl", ResponseRecord)
    with store.writer() as w:
        w.write(_rec(1))
    with store.writer(overwrite=True) as w:
        w.write(_rec(2))
    assert sorted(store.read()) == [2]


def test_atomic_json_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "m.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert target.read_text().strip().endswith("}")
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]


def test_records_refuse_failure_text():
    with pytest.raises(ValueError, match="must not carry text"):
        ResponseRecord(
            sample_id=1,
            model="m",
            type="SSS",
            category="hate",
            subcategory="race",
            outcome="error",
            text="Error: 500",
            error="500",
        )


def test_replacing_swaps_the_whole_file_or_leaves_the_old_one(tmp_path):
    """import --overwrite writes through `replacing`: a failure midway (it once crashed on
    a record that could not be serialised) must not leave the old responses truncated."""
    store = RecordStore(tmp_path / "r.jsonl", ResponseRecord)
    with store.writer() as w:
        for i in range(5):
            w.write(_rec(i))
    with pytest.raises(RuntimeError), store.replacing() as w:
        w.write(_rec(100))
        raise RuntimeError("killed midway")
    assert sorted(store.read()) == [0, 1, 2, 3, 4]
    with store.replacing() as w:
        w.write(_rec(100))
        w.write(_rec(101))
    assert sorted(store.read()) == [100, 101]
    assert [p.name for p in tmp_path.iterdir() if "replacing" in p.name] == []


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path):
    """The write reached the closing brace but not the newline: the record is whole.
    Dropping it made a resumed run pay for that sample again."""
    path = tmp_path / "r.jsonl"
    store = RecordStore(path, ResponseRecord)
    with store.writer() as w:
        w.write(_rec(1))
        w.write(_rec(2))
    path.write_bytes(path.read_bytes()[:-1])  # the last newline lost
    assert sorted(store.read()) == [1, 2] and store.dropped_lines == 0
    with store.writer() as w:
        w.write(_rec(3))
    assert sorted(store.read()) == [1, 2, 3]
    assert path.read_bytes().count(b"\n") == 3  # the newline restored, nothing glued
