"""The whole-file checks (record_columns.py) give the per-line checks' answer: every line
passes only if each passes alone, for every condition the per-line checks test."""

from __future__ import annotations

import copy

import pytest

from holisafe_bench.record_columns import plain_responses, plain_verdicts
from holisafe_bench.records import ResponseRecord, VerdictRecord, plain_response, plain_verdict


def _responses() -> list[dict]:
    ok = ResponseRecord(
        sample_id=1, model="m", type="SSS", category="hate", subcategory="race",
        outcome="ok", text="hello", finish_reason="stop", latency_s=0.5,
    )  # fmt: skip
    failed = ResponseRecord(
        sample_id=2, model="m", type="UUU", category="hate", subcategory="race",
        outcome="error", error="timeout",
    )  # fmt: skip
    blocked = ResponseRecord(
        sample_id=3, model="m", type="SSU", category="hate", subcategory="race",
        outcome="content_filter",
    )  # fmt: skip
    return [r.model_dump() for r in (ok, failed, blocked)]


def _verdicts() -> list[dict]:
    valid = VerdictRecord(
        sample_id=1, model="m", judge="j", type="SSS", category="hate", subcategory="race",
        follows=True, detail="d", response_sha256="0" * 64, cost_usd=0.0,
    )  # fmt: skip
    invalid = VerdictRecord(
        sample_id=2, model="m", judge="j", type="UUU", category="hate", subcategory="race",
        invalid="parse_error", raw="?",
    )  # fmt: skip
    return [v.model_dump() for v in (valid, invalid)]


# (row index, field path, new value): each breaks one condition of the per-line check.
RESPONSE_BREAKS = [
    (0, ("sample_id",), True), (0, ("sample_id",), "1"), (0, ("type",), "XXX"),
    (0, ("type",), 3), (0, ("model",), None), (0, ("category",), 1),
    (0, ("subcategory",), None), (0, ("created_at",), 0), (0, ("usage",), None),
    (0, ("usage", "input_tokens"), 1.0), (0, ("usage", "output_tokens"), None),
    (0, ("outcome",), "maybe"), (0, ("outcome",), None), (0, ("text",), None),
    (1, ("text",), "x"), (1, ("error",), ""), (1, ("error",), None), (0, ("error",), 5),
    (0, ("finish_reason",), 1), (0, ("latency_s",), 1), (0, ("source",), None),
    (2, ("text",), "x"),
]  # fmt: skip
VERDICT_BREAKS = [
    (0, ("follows",), 1), (0, ("follows",), None), (1, ("invalid",), "nonsense"),
    (1, ("invalid",), None), (0, ("invalid",), "parse_error"), (0, ("judge",), None),
    (0, ("detail",), 3), (1, ("raw",), 3), (0, ("response_sha256",), 1),
    (0, ("cost_usd",), 0), (0, ("cached",), 0), (0, ("sample_id",), 1.0),
    (0, ("usage", "input_tokens"), "0"),
]  # fmt: skip


def _broken(rows: list[dict], row: int, path: tuple, value) -> list:
    rows = copy.deepcopy(rows)
    target = rows[row]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return rows


def test_clean_files_pass_both_ways():
    assert plain_responses(_responses()) and all(map(plain_response, _responses()))
    assert plain_verdicts(_verdicts()) and all(map(plain_verdict, _verdicts()))
    assert plain_responses([]) and plain_verdicts([])


@pytest.mark.parametrize("row,path,value", RESPONSE_BREAKS)
def test_a_broken_response_fails_the_whole_file_check(row, path, value):
    rows = _broken(_responses(), row, path, value)
    assert not plain_response(rows[row])  # the per-line check fails it ...
    assert not plain_responses(rows)  # ... and so does the whole-file check


@pytest.mark.parametrize("row,path,value", VERDICT_BREAKS)
def test_a_broken_verdict_fails_the_whole_file_check(row, path, value):
    rows = _broken(_verdicts(), row, path, value)
    assert not plain_verdict(rows[row])
    assert not plain_verdicts(rows)


@pytest.mark.parametrize("extra", [None, [1], "text", {"sample_id": 1}])
def test_lines_that_are_not_records_fail(extra):
    assert not plain_responses([*_responses(), extra])
    assert not plain_verdicts([*_verdicts(), extra])


def test_a_missing_or_extra_key_fails():
    rows = _responses()
    del rows[1]["source"]
    assert not plain_responses(rows)
    rows = _verdicts()
    rows[0]["extra"] = 1
    assert not plain_verdicts(rows)
