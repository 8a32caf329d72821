"""Leaderboard LaTeX/HTML/--compare, score/leaderboard --ci and agreement from verdicts."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord, VerdictRecord
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import TYPES

runner = CliRunner()
# Violation probability per model (the same for every type): lower is safer.
MODELS = {"llava-v1.5-7b": 0.8, "gpt-4o": 0.4, "safellava-7b": 0.1}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    layout = ResultsLayout(root)
    for model, p in MODELS.items():
        rng = random.Random(model)
        # Verdicts count only with the response they judged (see tests/test_reliability_stale).
        response = ResponseRecord(
            sample_id=0,
            model=model,
            type="SSS",
            category="hate",
            subcategory="race",
            outcome="ok",
            text="an answer",
        )
        with RecordStore(layout.responses(model), ResponseRecord).writer() as w:
            for i in range(500):
                w.write(response.model_copy(update={"sample_id": i, "type": TYPES[i % 5]}))
        for judge, noise in (("string-match", 0.0), ("gpt4o", 0.1)):
            with RecordStore(layout.verdicts(model, judge), VerdictRecord).writer() as w:
                for i in range(500):
                    t = TYPES[i % 5]
                    violates = rng.random() < (p if t != "SSS" else 0.05)
                    if rng.random() < noise:
                        violates = not violates
                    w.write(
                        VerdictRecord(
                            sample_id=i,
                            model=model,
                            judge=judge,
                            type=t,
                            category="hate",
                            subcategory="race",
                            follows=not violates,
                            response_sha256=response.fingerprint(),
                        )
                    )
    return root


def _ok(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


def test_latex_has_booktabs_groups_bold_best_and_underlined_second(results):
    text = _ok(["leaderboard", "--format", "latex", "--out", str(results)])
    assert r"\toprule" in text and r"\bottomrule" in text
    assert text.index("Open-weight") < text.index("Closed") < text.index("Safety-tuned")
    safest = next(line for line in text.splitlines() if line.startswith("SafeLLaVA-7B"))
    middle = next(line for line in text.splitlines() if line.startswith("GPT-4o"))
    # mASR column (second to last): SafeLLaVA best (bold), GPT-4o second (underlined).
    assert safest.split(" & ")[-2].startswith(r"\textbf{")
    assert middle.split(" & ")[-2].startswith(r"\underline{")


def test_html_is_self_contained_and_escapes(results):
    text = _ok(["leaderboard", "--format", "html", "--out", str(results)])
    assert "<script>" in text and "http" not in text.split("<body>")[1]
    assert 'class="sortable"' in text and "SafeLLaVA-7B" in text


def test_compare_against_a_reference_table(results, tmp_path):
    reference = tmp_path / "ref.csv"
    reference.write_text(
        "Model,S_IS_T→S↑,S_IS_T→U↓,U_IS_T↓,U_IU_T↓,S_IU_T↓,mASR↓,RR↓\n"
        "GPT-4o,100.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
    )
    text = _ok(
        ["leaderboard", "--compare", str(reference), "--format", "csv", "--out", str(results)]
    )
    row = next(line for line in text.splitlines() if line.startswith("GPT-4o,mASR↓"))
    ours, ref, delta = row.split(",")[2:]
    assert ref == "0.0" and float(delta) == pytest.approx(float(ours), abs=0.05)
    assert "SafeLLaVA-7B,mASR↓" in text and text.count("n/a") >= 7  # not in the reference


def test_score_ci_and_leaderboard_rank_intervals(results):
    text = _ok(["score", "--model", "gpt-4o", "--ci", "0.95", "--out", str(results)])
    assert "95%" in text and "mASR" in text
    text = _ok(["leaderboard", "--ci", "0.95", "--format", "md", "--out", str(results)])
    assert "rank by mASR" in text


def test_agreement_from_verdict_files(results):
    text = _ok(["agreement", "--out", str(results), "--top", "3"])
    assert "Spearman" in text and "Cohen gpt4o vs string-match" in text
    assert "gpt4o vs string-match" in text and "disagree" in text


@pytest.mark.parametrize("pooled", [False, True])
def test_score_ci_estimates_are_the_scores_own_at_the_asked_decimals(results, pooled):
    """Each interval's estimate is the value the score table prints (the same rounding,
    the same --decimals), and with --pooled the mASR interval is the pooled one."""
    import json

    flags = ["--pooled"] if pooled else []
    args = ["score", "-m", "gpt-4o", "--ci", "0.95", "--json", "--decimals", "2", *flags]
    (card,) = json.loads(_ok([*args, "--out", str(results)]))
    overall = card["ci"]["overall"]
    label = "mASR (pooled over unsafe samples)" if pooled else "mASR (macro)"
    assert set(overall) == {"RR (SSS)", "ASR SSU", "ASR USU", "ASR UUU", "ASR SUU", label}
    assert overall[label][0] == card["masr"]
    assert overall["RR (SSS)"][0] == card["rr"]
    assert all(overall[f"ASR {t}"][0] == card["asr"][t] for t in TYPES[1:])
    assert card["ci"]["per_category"]["hate"]["mASR"][0] == card["per_category"]["hate"]["masr"]
    for estimate, low, high in overall.values():
        assert low <= estimate <= high
        assert all(round(x, 2) == x for x in (estimate, low, high))


def test_cohen_kappa_of_a_pair_uses_every_sample_that_pair_judged(tmp_path):
    """Judge c judged other samples than a and b: a vs b is over their 100 shared samples
    (it was over the samples all three judged: none, and the section vanished), and the
    all-judge sections say why they are missing."""
    from holisafe_bench.analysis.judges_compared import sample_agreement

    layout = ResultsLayout(tmp_path)
    response = ResponseRecord(sample_id=0, model="m", type="SSS", category="hate",
                              subcategory="race", outcome="ok", text="an answer")  # fmt: skip
    with RecordStore(layout.responses("m"), ResponseRecord).writer() as w:
        for i in range(200):
            w.write(response.model_copy(update={"sample_id": i, "type": TYPES[i % 5]}))
    samples = {"a": range(100), "b": range(100), "c": range(100, 200)}
    for judge, ids in samples.items():
        with RecordStore(layout.verdicts("m", judge), VerdictRecord).writer() as w:
            for i in ids:
                follows = (i % 3 == 0) if judge == "b" else (i % 2 == 0)
                w.write(VerdictRecord(sample_id=i, model="m", judge=judge, type=TYPES[i % 5],
                                      category="hate", subcategory="race", follows=follows,
                                      response_sha256=response.fingerprint()))  # fmt: skip
    found = sample_agreement(layout, ["a", "b", "c"], ["m"])
    assert found.cohen_n == {("a", "b"): 100} and found.n_items == 0
    text = " ".join(_ok(["agreement", "--out", str(tmp_path)]).split())
    assert "Cohen a vs b │ 100 │" in text
    assert "no sample has a valid verdict from every judge" in text
