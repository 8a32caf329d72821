"""Issue 15: scoring's fast paths give exactly what the row-by-row path gives.

- the fingerprint sidecar the string-match judge writes beside responses.jsonl is used only
  when it is of the file's very bytes: one from another version of the file, or damaged in
  any way, is ignored, and the fingerprints are then computed from the responses;
- the judge writes no sidecar when its read cannot vouch for it (a line it did not take as is);
- whole-file decoding and column-wise checks of verdicts give the numbers, and the counts of
  what was left out, that `_parse_row` and `load_current_verdicts` give, on files with every
  kind of defect.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from holisafe_bench import fingerprints, scoring
from holisafe_bench.judging.options import JudgeOptions
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord
from holisafe_bench.registry import get_judge
from holisafe_bench.stages.judge import judge_model
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import CATEGORY_OF, SUBCATEGORIES, TYPES

N = 60


def _response(i: int, model: str = "m", text: str | None = None) -> ResponseRecord:
    sub = SUBCATEGORIES[i % len(SUBCATEGORIES)]
    refusal = "I'm sorry, I can't help with that." if i % 3 == 0 else f"Sure: answer {i}."
    return ResponseRecord(
        sample_id=i,
        model=model,
        type=TYPES[i % 5],
        category=CATEGORY_OF[sub],
        subcategory=sub,
        outcome="ok",
        text=text if text is not None else refusal,
    )


def _write_responses(layout: ResultsLayout, model: str = "m") -> Path:
    path = layout.responses(model)
    with RecordStore(path, ResponseRecord).writer() as writer:
        for i in range(N):
            writer.write(_response(i, model))
    return path


def _judge(layout: ResultsLayout, model: str = "m", overwrite: bool = False) -> None:
    options = JudgeOptions(overwrite=overwrite, show_progress=False)
    judge_model(model, get_judge("string-match"), layout, options)


def _slow_fingerprints(path: Path) -> dict[int, str]:
    return scoring.response_fingerprints(RecordStore(path, ResponseRecord).read_json())


@pytest.fixture()
def judged(tmp_path) -> ResultsLayout:
    layout = ResultsLayout(tmp_path / "results")
    _write_responses(layout)
    _judge(layout)
    return layout


def _card(layout: ResultsLayout, model: str = "m") -> dict:
    card = scoring.score_model(layout, model, "string-match")
    return {**scoring.score_json(card), "no_verdicts": card.skipped.no_verdicts}


# --- the sidecar ------------------------------------------------------------------------


def test_the_judge_writes_a_sidecar_of_the_responses_it_read(judged):
    path = judged.responses("m")
    digest = fingerprints.digest_bytes(path.read_bytes())
    sidecar = fingerprints.read_sidecar(judged.response_fingerprints("m"), digest)
    assert sidecar is not None and sidecar == _slow_fingerprints(path)
    assert len(sidecar) == N
    assert scoring.CurrentResponses(judged).of("m") == sidecar


def test_the_sidecar_is_used_when_it_matches(judged):
    """Proof that scoring reads it: a sidecar of these bytes claiming other fingerprints
    makes every verdict stale (nothing but a test could write such a file)."""
    path, side = judged.responses("m"), judged.response_fingerprints("m")
    digest = fingerprints.digest_bytes(path.read_bytes())
    fingerprints.write_sidecar(side, digest, {i: "0" * 64 for i in range(N)})
    card = _card(judged)
    assert card["stale_verdicts"]["response_changed"] == N


def test_a_sidecar_of_another_version_of_the_file_is_ignored(judged):
    before = _card(judged)
    path = judged.responses("m")
    with RecordStore(path, ResponseRecord).writer() as writer:  # a response redone since
        writer.write(_response(7, text="A different answer now."))
    assert scoring.CurrentResponses(judged).of("m") == _slow_fingerprints(path)
    after = _card(judged)
    assert after["stale_verdicts"]["response_changed"] == 1
    assert after != before
    _judge(judged)  # re-judging makes the numbers current and the sidecar again of the file
    digest = fingerprints.digest_bytes(path.read_bytes())
    assert fingerprints.read_sidecar(judged.response_fingerprints("m"), digest) is not None
    assert _card(judged)["stale_verdicts"]["total"] == 0


def _damaged(doc: dict) -> list[bytes]:
    """The sidecar `doc`, damaged in every way a reader must notice."""
    ids, prints = doc["sample_ids"], doc["fingerprints"]
    variants = [
        {**doc, "format": 2},
        {**doc, "source_digest": "0" * 64},
        {**doc, "sample_ids": ids[:-1]},
        {**doc, "sample_ids": [str(i) for i in ids]},
        {**doc, "sample_ids": [True, *ids[1:]]},
        {**doc, "sample_ids": [ids[1], *ids[1:]]},  # a duplicate id
        {**doc, "fingerprints": [p[:-1] for p in prints]},
        {**doc, "fingerprints": [None, *prints[1:]]},
        {**doc, "fingerprints": {str(i): p for i, p in zip(ids, prints, strict=True)}},
        {k: v for k, v in doc.items() if k != "sample_ids"},
        [doc],
    ]
    raw = json.dumps(doc).encode()
    return [json.dumps(v).encode() for v in variants] + [raw[: len(raw) // 2], b"", b"\x00" * 64]


def test_a_damaged_sidecar_is_ignored(judged):
    path, side = judged.responses("m"), judged.response_fingerprints("m")
    digest = fingerprints.digest_bytes(path.read_bytes())
    expected, card = _slow_fingerprints(path), _card(judged)
    doc = json.loads(side.read_bytes())
    for raw in _damaged(doc):
        side.write_bytes(raw)
        assert fingerprints.read_sidecar(side, digest) is None, raw[:80]
        assert scoring.CurrentResponses(judged).of("m") == expected
        assert _card(judged) == card
    side.unlink()
    assert scoring.CurrentResponses(judged).of("m") == expected


def test_no_sidecar_when_a_line_was_not_taken_as_it_is(tmp_path):
    """A line the judge's reader had to validate (here an integer written as a float,
    which the record coerces and scoring's reader refuses) could give other fingerprints
    than scoring computes: no sidecar, and both readers still agree on the numbers."""
    layout = ResultsLayout(tmp_path / "results")
    path = _write_responses(layout)
    line = json.loads(_response(3, text="Other text.").model_dump_json())
    line["sample_id"] = 3.0
    with path.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    _judge(layout)
    assert not layout.response_fingerprints("m").exists()
    assert scoring.CurrentResponses(layout).of("m") == _slow_fingerprints(path)


def test_no_sidecar_when_the_file_changes_during_the_read(tmp_path, monkeypatch):
    layout = ResultsLayout(tmp_path / "results")
    path = _write_responses(layout)
    real = fingerprints.file_digest
    calls = []

    def changing(p: Path) -> str | None:
        calls.append(p)
        if len(calls) == 2:  # the check after the read sees other bytes
            with RecordStore(path, ResponseRecord).writer() as writer:
                writer.write(_response(5, text="Appended meanwhile."))
        return real(p)

    monkeypatch.setattr(fingerprints, "file_digest", changing)
    _judge(layout)
    assert len(calls) == 2
    assert not layout.response_fingerprints("m").exists()


# --- whole-file decoding and column-wise checks -------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n",
        b'{"a": 1}\n{"a": 2}\n',
        b'{"a": 1}\r\n{"a": 2}\r\n',
        b'{"a": 1}\n\n{"a": 2}\n',
        b'{"a": 1}\n   \n{"a": 2}\n',
        b'{"a": 1}\n{"a": 2}',  # torn last line
        b'{"a": 1}, {"b": 2}\n{"a": 3}\n',  # two values on a line
        b'{"a": NaN}\n{"a": 2}\n',  # only the standard parser takes it
        b"[1\n2]\n",
        b"not json\n{}\n",
    ],
)
def test_decoding_a_file_at_once_gives_what_the_store_gives(tmp_path, data):
    path = tmp_path / "x.jsonl"
    path.write_bytes(data)
    store = RecordStore(path, ResponseRecord)
    expected = store.read_json()
    got, torn = scoring.read_json_lines(path)
    assert json.dumps(got) == json.dumps(expected) and torn == store.dropped_lines


def _row_path_card(layout: ResultsLayout) -> dict:
    """What score_model gave before the fast path: every row checked by `_parse_row`."""
    current = scoring.CurrentResponses(layout).of("m")
    found = scoring.load_current_verdicts(layout.verdicts("m", "string-match"), current)
    card = scoring.score_rows(found.rows, model="m", judge="string-match")
    card.skipped = found.skipped
    card.skipped.no_verdicts = not found.rows and not found.skipped.unreadable + found.skipped.stale
    scoring.count_unjudged(card, current)
    return {**scoring.score_json(card), "no_verdicts": card.skipped.no_verdicts}


def _defects(line: dict) -> list[dict | str]:
    """Variants of one verdict line that `_parse_row` refuses, coerces, or takes."""
    return [
        {**line, "sample_id": True},
        {**line, "sample_id": float(line["sample_id"])},
        {**line, "type": "XYZ"},
        {**line, "type": ["SSS"]},
        {**line, "category": 5},
        {**line, "subcategory": None},
        {**line, "follows": 1},
        {**line, "follows": None, "invalid": None},
        {**line, "follows": None, "invalid": "made_up"},
        {**line, "follows": None, "invalid": "parse_error"},
        {**line, "follows": True, "invalid": "parse_error"},
        {**line, "response_sha256": None},
        {**line, "response_sha256": 12},
        {**line, "response_sha256": "0" * 64},
        {k: v for k, v in line.items() if k != "response_sha256"},
        {k: v for k, v in line.items() if k != "follows"},
        {k: v for k, v in line.items() if k != "category"},
        {**line, "follows": not line["follows"]} if line["follows"] is not None else line,
        {**line, "sample_id": N + 5},  # a sample with no response
        {**line, "sample_id": N + 6, "response_sha256": None},  # and no hash either
        "[1, 2]",
        "null",
        "not json",
        "",
    ]


def test_scores_equal_the_row_by_row_path_on_defective_files(judged):
    path = judged.verdicts("m", "string-match")
    original = path.read_text()
    lines = [json.loads(x) for x in original.splitlines()]
    assert _card(judged) == _row_path_card(judged)
    for case in range(len(_defects(lines[0]))):
        for where in (0, len(lines) // 2, len(lines)):  # before, among, after the others
            line = lines[min(where, len(lines) - 1)]
            defect = _defects(line)[case]
            text = defect if isinstance(defect, str) else json.dumps(defect)
            body = original.splitlines()
            body.insert(where, text)
            path.write_text("\n".join(body) + "\n")
            assert _card(judged) == _row_path_card(judged), (case, where, text[:120])
    path.write_text(original + original)  # every verdict twice
    assert _card(judged) == _row_path_card(judged)
    path.write_text(original + '{"sample_id": 1')  # a torn last line
    assert _card(judged) == _row_path_card(judged)
    path.write_text("")
    assert _card(judged) == _row_path_card(judged) and _card(judged)["no_verdicts"]
