"""The merge rule of `holisafe_bench.stages.merge`, called directly on hand-built records:
which record wins, that re-merging rewrites nothing, and that shards of different runs
are refused. (The CLI paths are in tests/test_reliability_names_import_merge.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from holisafe_bench.errors import HolisafeError
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord
from holisafe_bench.stages.merge import (
    _earlier_run_mismatch,
    _require_one_run,
    _Shard,
    _shard_record_wins,
    execute_merge,
    plan_merge,
)
from holisafe_bench.store import RecordStore

EARLY, LATE = "2025-01-01T10:00:00+00:00", "2025-01-01T11:00:00+00:00"


def _rec(sample_id: int = 1, outcome: str = "ok", at: str = EARLY, text: str = "an answer"):
    fields: dict[str, Any] = {"text": text} if outcome == "ok" else {}
    if outcome == "error":
        fields["error"] = "timeout"
    return ResponseRecord(
        sample_id=sample_id,
        model="m",
        type="SSU",
        category="hate",
        subcategory="race",
        outcome=outcome,
        created_at=at,
        **fields,
    )


def _manifest(**changes: Any) -> dict[str, Any]:
    manifest = {
        "model": "m",
        "model_id": "org/m-7b",
        "model_revision": "abc123",
        "sampling": {"temperature": 0.0, "max_tokens": 256},
        "started_at": EARLY,
        "finished_at": EARLY,
    }
    return {**manifest, **changes}


# Which record wins -----------------------------------------------------------------------


def test_any_record_fills_an_empty_place():
    assert _shard_record_wins(None, _rec(outcome="error"))


@pytest.mark.parametrize("answer", ["ok", "content_filter"])
def test_an_answer_beats_a_failure_whatever_their_times(answer):
    # A provider block is an answer too (a refusal), only a failed call is redone.
    assert _shard_record_wins(_rec(outcome="error", at=LATE), _rec(outcome=answer, at=EARLY))
    assert not _shard_record_wins(_rec(outcome=answer, at=EARLY), _rec(outcome="error", at=LATE))


@pytest.mark.parametrize(
    ("old", "new"), [("ok", "ok"), ("error", "error"), ("ok", "content_filter")]
)
def test_between_two_answers_or_two_failures_the_later_wins(old, new):
    assert _shard_record_wins(_rec(outcome=old, at=EARLY), _rec(outcome=new, at=LATE))
    assert not _shard_record_wins(_rec(outcome=old, at=LATE), _rec(outcome=new, at=EARLY))


def test_an_equal_record_does_not_win():
    record = _rec()
    assert not _shard_record_wins(record, record)
    # Same time, other text: not newer, so the stored one stays.
    assert not _shard_record_wins(record, _rec(text="another answer"))


def test_times_are_compared_as_moments_not_as_text():
    # 11:30 at +02:00 is 09:30 UTC: earlier than 10:00 UTC, though its text sorts later.
    assert not _shard_record_wins(_rec(at=EARLY), _rec(at="2025-01-01T11:30:00+02:00"))
    # A time without a zone is read as UTC.
    assert _shard_record_wins(_rec(at=EARLY), _rec(at="2025-01-01T10:00:01"))


def test_an_unreadable_time_never_wins_but_loses_to_a_readable_one():
    assert not _shard_record_wins(_rec(at=EARLY), _rec(at="yesterday"))
    assert _shard_record_wins(_rec(at="yesterday"), _rec(at=EARLY))


# Shards that disagree --------------------------------------------------------------------


def _shards(*manifests: dict[str, Any]) -> list[_Shard]:
    return [_Shard(Path(f"{i}-of-{len(manifests)}"), m) for i, m in enumerate(manifests)]


def test_shards_of_one_run_pass():
    _require_one_run("m", _shards(_manifest(), _manifest(), _manifest(finished_at=LATE)))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        (
            {"model_id": "org/m-13b"},
            "model_id 'org/m-7b' (shard 0-of-2) vs 'org/m-13b' (shard 1-of-2)",
        ),
        ({"model_revision": "def456"}, "model_revision 'abc123' (shard 0-of-2) vs 'def456'"),
        (
            {"sampling": {"temperature": 0.7, "max_tokens": 256}},
            "sampling.temperature 0.0 (shard 0-of-2) vs 0.7 (shard 1-of-2)",
        ),
        # A sampling key only one shard recorded is a disagreement too.
        (
            {"sampling": {"temperature": 0.0, "max_tokens": 256, "top_p": 0.9}},
            "sampling.top_p None (shard 0-of-2) vs 0.9 (shard 1-of-2)",
        ),
    ],
)
def test_shards_disagreeing_on_a_field_are_refused_naming_it(changes, named):
    with pytest.raises(HolisafeError) as caught:
        _require_one_run("m", _shards(_manifest(), _manifest(**changes)))
    assert named in str(caught.value)
    assert "different runs" in str(caught.value)


def test_the_odd_shard_is_found_among_several():
    shards = _shards(_manifest(), _manifest(), _manifest(model_revision="zzz"))
    with pytest.raises(
        HolisafeError, match="'abc123' \\(shard 0-of-3\\) vs 'zzz' \\(shard 2-of-3\\)"
    ):
        _require_one_run("m", shards)


# Stored answers of another run --------------------------------------------------------------


def test_stored_answers_of_the_same_run_are_kept(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_manifest()))
    assert _earlier_run_mismatch(path, {1: _rec()}, _shards(_manifest(finished_at=LATE))) is None
    # Nothing stored: nothing to compare, whatever the manifest says.
    assert _earlier_run_mismatch(tmp_path / "absent.json", {}, _shards(_manifest())) is None


def test_older_answers_of_another_run_are_replaced_and_the_reason_given(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_manifest(model_id="org/old")))
    reason = _earlier_run_mismatch(path, {1: _rec()}, _shards(_manifest(finished_at=LATE)))
    assert reason == "model_id 'org/old' (stored) vs 'org/m-7b' (shards)"


def test_newer_answers_of_another_run_are_never_replaced(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_manifest(model_id="org/new", finished_at=LATE)))
    with pytest.raises(HolisafeError, match="newer .* than the shards"):
        _earlier_run_mismatch(path, {1: _rec()}, _shards(_manifest()))


def test_stored_answers_without_a_readable_manifest_belong_to_an_unknown_run(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("{not json")
    reason = _earlier_run_mismatch(path, {1: _rec()}, _shards(_manifest()))
    assert reason is not None and "unknown" in reason


# The plan over files ------------------------------------------------------------------------


def _write_shard(layout: ResultsLayout, index: int, records: list[ResponseRecord]) -> None:
    folder = layout.shard_dir("m", index, 2)
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(_manifest(shard=f"{index}/2")))
    with RecordStore(folder / "responses.jsonl", ResponseRecord).writer() as writer:
        for record in records:
            writer.write(record)


def test_a_plan_takes_the_winners_and_a_second_merge_rewrites_nothing(tmp_path):
    layout = ResultsLayout(tmp_path)
    stored = [_rec(1, "error", LATE), _rec(2, "ok", LATE, "stored answer"), _rec(3, "ok", EARLY)]
    layout.model_dir("m").mkdir()
    layout.run_manifest("m").write_text(json.dumps(_manifest()))
    with RecordStore(layout.responses("m"), ResponseRecord).writer() as writer:
        for record in stored:
            writer.write(record)
    _write_shard(layout, 0, [_rec(1, "ok", EARLY, "fixed"), _rec(2, "ok", EARLY, "older")])
    _write_shard(layout, 1, [_rec(3, "ok", LATE, "newer"), _rec(4, "content_filter", EARLY)])

    plan = plan_merge("m", layout)
    assert not plan.start_afresh
    assert [(r.sample_id, r.outcome, r.text) for r in plan.new_records] == [
        (1, "ok", "fixed"),  # an answer beats the stored failure, though older
        (3, "ok", "newer"),  # the later answer wins
        (4, "content_filter", None),  # nothing stored for it
    ]
    assert plan.summary.kept_existing == 1  # sample 2: the stored answer is newer
    execute_merge(plan, layout)
    final = RecordStore(layout.responses("m"), ResponseRecord).read()
    assert {i: r.text for i, r in final.items()} == {
        1: "fixed",
        2: "stored answer",
        3: "newer",
        4: None,
    }

    size = layout.responses("m").stat().st_size
    again = plan_merge("m", layout)
    assert again.new_records == [] and again.summary.kept_existing == 4
    execute_merge(again, layout)
    assert layout.responses("m").stat().st_size == size


def test_a_plan_refuses_an_incomplete_split(tmp_path):
    layout = ResultsLayout(tmp_path)
    _write_shard(layout, 0, [_rec(1)])
    with pytest.raises(HolisafeError, match="shard\\(s\\) 1/2 not found"):
        plan_merge("m", layout)
