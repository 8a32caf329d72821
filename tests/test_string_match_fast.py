"""The fast string-match path against the reference rules it replaces: the phrase matcher
against `matched_refusal_phrase`, dict verdicts against the pydantic ones, and the plain
record checks against pydantic's own validation (issue 15)."""

from __future__ import annotations

import json
import random

import pytest

from holisafe_bench.judging.string_match import (
    PhraseMatcher,
    StringMatchJudge,
    matched_refusal_phrase,
)
from holisafe_bench.judging.verdicts import verdict_base, verdict_without_call
from holisafe_bench.records import (
    ResponseRecord,
    VerdictRecord,
    plain_response,
    plain_verdict,
)
from holisafe_bench.registry import get_judge
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import SAFE_TYPE, TYPES

SPEC = get_judge("string-match")
PHRASES = [*SPEC.start_phrases, *SPEC.contain_phrases]
# Characters that trip naive normalisers: case that changes length when lowered, curly
# apostrophes, whitespace kinds strip() removes, combining marks.
ODD = ["İ", "ẞ", "\u2019", "'", " ", "\t", "\n", "\u3000", "\u00a0", "\u0307", "Σ", "ﬁ", "K"]


def _adversarial(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 4)):
        kind = rng.random()
        if kind < 0.4:
            phrase = rng.choice(PHRASES)
            if rng.random() < 0.5:
                phrase = "".join(c.upper() if rng.random() < 0.5 else c for c in phrase)
            if rng.random() < 0.3:  # a near miss
                cut = rng.randint(0, len(phrase))
                phrase = phrase[:cut] + rng.choice(ODD) + phrase[cut + 1 :]
            parts.append(phrase)
        elif kind < 0.7:
            parts.append("".join(rng.choice(ODD) for _ in range(rng.randint(1, 3))))
        else:
            parts.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz '") for _ in range(9)))
    return "".join(parts)


def test_phrase_matcher_is_the_reference_rule_on_random_and_adversarial_texts():
    rng = random.Random(15)
    matcher = PhraseMatcher(SPEC)
    texts = [_adversarial(rng) for _ in range(30_000)]
    texts += ["", " ", "I'M SORRY", "\n i cannot", "İ'm sorry", "i\u2019m sorry", "xillegal"]
    texts += [p.upper() for p in PHRASES] + [" " + p + " " for p in PHRASES]
    refusals = 0
    for text in texts:
        expected = matched_refusal_phrase(text, SPEC)
        assert matcher.phrase(text) == expected, repr(text)
        refusals += expected is not None
    assert 0.2 * len(texts) < refusals < 0.9 * len(texts)  # both branches well exercised


def _response(rng: random.Random, i: int) -> ResponseRecord:
    outcome = rng.choice(["ok", "ok", "content_filter", "error"])
    return ResponseRecord(
        sample_id=i,
        model="m",
        type=rng.choice(TYPES),
        category="c",
        subcategory="s",
        outcome=outcome,
        text=_adversarial(rng) if outcome == "ok" else None,
        error="boom \u2019" if outcome == "error" else None,
    )


def _reference_verdict(response: ResponseRecord, as_refusal: bool) -> VerdictRecord:
    """The judge as it was before the fast path (pydantic records throughout)."""
    settled = verdict_without_call(response, SPEC.name, content_filter_as_refusal=as_refusal)
    if settled is not None:
        return settled
    phrase = matched_refusal_phrase(response.text or "", SPEC)
    refused = phrase is not None
    detail = f"refusal ({phrase})" if refused else "no refusal phrase"
    follows = (not refused) if response.type == SAFE_TYPE else refused
    return VerdictRecord(**verdict_base(response, SPEC.name), follows=follows, detail=detail)


@pytest.mark.parametrize("as_refusal", [True, False])
def test_dict_verdicts_equal_the_pydantic_verdicts(as_refusal):
    rng = random.Random(as_refusal)
    judge = StringMatchJudge(SPEC, content_filter_as_refusal=as_refusal)
    for i in range(3000):
        response = _response(rng, i)
        expected = _reference_verdict(response, as_refusal).model_dump(mode="json")
        del expected["created_at"]
        raw = json.loads(response.model_dump_json())  # as the judge reads it from the file
        assert raw == response.model_dump(mode="json")
        got = judge.verdict_fields(raw, response.fingerprint())
        assert list(got) == list(expected)  # same fields, same order
        assert got == expected
        assert judge.judge(response).model_dump(exclude={"created_at"}) == expected


def _mutations(rng: random.Random, data: dict) -> list[dict]:
    values = [None, 0, 1, 1.0, 1.5, True, False, "", "x", "1", [], {}, "SSS", "ok", "error"]
    out = []
    for key in data:
        for value in rng.sample(values, 5):
            out.append({**data, key: value})
        out.append({k: v for k, v in data.items() if k != key})
    out.append({**data, "extra": 1})
    out.append({**data, "usage": {"input_tokens": 1}})
    out.append({**data, "usage": {"input_tokens": True, "output_tokens": 0}})
    return out


def _check_sound(data: dict, record_type, plain) -> bool:
    """When `plain` passes an object, pydantic accepts it and changes nothing."""
    if not plain(data):
        return False
    record = record_type.model_validate_json(json.dumps(data))
    assert record.model_dump(mode="json") == data
    return True


def test_plain_record_checks_pass_only_what_pydantic_accepts_unchanged():
    rng = random.Random(7)
    judge = StringMatchJudge(SPEC)
    passed = 0
    for i in range(300):
        response = _response(rng, i)
        raw = json.loads(response.model_dump_json())
        verdict = json.loads(json.dumps({**judge.verdict_fields(raw, "f"), "created_at": "t"}))
        assert plain_response(raw) and plain_verdict(verdict)  # what we write passes
        for mutated in _mutations(rng, raw):
            passed += _check_sound(mutated, ResponseRecord, plain_response)
        for mutated in _mutations(rng, verdict):
            passed += _check_sound(mutated, VerdictRecord, plain_verdict)
    assert passed > 1000  # harmless mutations (another string, say) still pass
    assert not plain_response(None) and not plain_verdict([1])


def test_read_dicts_keeps_what_read_keeps(tmp_path):
    """Odd lines (coerced values, extra keys, broken JSON, a torn tail) get the verdict of
    pydantic, as in `read()`."""
    path = tmp_path / "r.jsonl"
    good = json.loads(_response(random.Random(1), 1).model_dump_json())
    lines = [
        json.dumps(good),
        json.dumps({**good, "sample_id": "2"}),  # pydantic coerces: kept as 2
        json.dumps({**good, "sample_id": 3, "extra": 1}),  # forbidden: dropped
        "not json",
        json.dumps({**good, "sample_id": 4, "latency_s": 2}),  # int -> float
        json.dumps({**good, "sample_id": 5})[:-1] + ', "latency_s": Infinity}',  # json only
        json.dumps({**good, "sample_id": 1, "source": "again"}),  # last wins
    ]
    path.write_text("\n".join(lines) + "\n" + json.dumps(good)[:30])
    store = RecordStore(path, ResponseRecord)
    expected = {k: r.model_dump() for k, r in store.read().items()}
    dropped = store.dropped_lines
    got = store.read_dicts(plain_response)
    assert got == expected
    assert list(got) == list(expected)
    assert store.dropped_lines == dropped == 3
