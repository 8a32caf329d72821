"""`holisafe_bench.load`: DataFrames that agree with `score --json` on a folder made by the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import holisafe_bench
from holisafe_bench.cli.main import app
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.errors import HolisafeError
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import UNSAFE_TYPES

runner = CliRunner()
JUDGE = "string-match"
REFUSAL = "I'm sorry, but I can't help with that request."
COMPLIANCE = "Sure. The picture shows a red triangle above a caption."
MODELS = ["kw", "mixed", "nope"]


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _score_json(out, *extra: str) -> dict[str, dict]:
    # Four decimals: the DataFrames hold unrounded percentages, the CLI rounds half-up.
    text = _cli("score", "--judge", JUDGE, "--json", "--decimals", "4", "--out", str(out), *extra)
    return {entry["model"]: entry for entry in json.loads(text)}


def _baseline(folder: Path, name: str, behaviour: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ndisplay_name = "{name}"\ngroup = "open-weight"\n'
        f'provider = "baseline"\ncheckpoint = "{behaviour}"\ncheckpoint_note = "test"\n'
    )
    return path


@pytest.fixture(scope="module")
def judged(tmp_path_factory) -> Path:
    """Three models on the 95-row synthetic set, judged by string matching through the CLI;
    made once, read-only: the keyword baseline `kw` (95 responses), an always-refusing
    baseline `nope` (40) and `mixed`, imported from a prediction file (95, some invalid)."""
    folder = tmp_path_factory.mktemp("api")
    data, out = write_synthetic(folder / "data", per_cell=1), folder / "results"
    kw, nope = (
        _baseline(folder, "kw", "baseline-keyword"),
        _baseline(folder, "nope", "baseline-refuse-all"),
    )
    _cli("run", "--model", str(kw), "-d", str(data), "--out", str(out))
    _cli("run", "--model", str(nope), "-d", str(data), "--out", str(out), "--limit", "40")
    predictions = _mixed_predictions(data / "holisafe_bench.json", folder / "mixed.json")
    _cli("import", str(predictions), "--model", "mixed", "--out", str(out))
    _cli("judge", "--judge", JUDGE, "--all", "--out", str(out))
    return out


def _mixed_predictions(dataset: Path, path: Path) -> Path:
    """An official prediction file for the synthetic set: every 7th row has no prediction
    (an invalid verdict), every 3rd refuses, the rest comply, so no rate is 0 or 100."""
    rows = json.loads(dataset.read_text(encoding="utf-8"))
    for i, row in enumerate(rows):
        if i % 7 != 0:
            row["prediction"] = REFUSAL if i % 3 == 0 else COMPLIANCE
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


@pytest.fixture()
def judged_copy(judged, tmp_path) -> Path:
    """A copy a test may change."""
    return Path(shutil.copytree(judged, tmp_path / "results"))


def test_scores_equal_score_json(judged):
    results = holisafe_bench.load(judged)
    expected = _score_json(judged)
    assert sorted(results.scores["model"]) == sorted(expected) == MODELS
    for row in results.scores.itertuples():
        want = expected[row.model]
        assert row.judge == JUDGE and row.masr_definition == want["masr_definition"] == "macro"
        assert row.masr == pytest.approx(float(want["masr"]), abs=5e-5)
        assert row.rr == pytest.approx(float(want["rr"]), abs=5e-5)
        for t in UNSAFE_TYPES:
            assert getattr(row, f"asr_{t}") == pytest.approx(float(want["asr"][t]), abs=5e-5)
        best, worst = want["masr_bounds"]
        assert (row.masr_best, row.masr_worst) == pytest.approx((float(best), float(worst)))
        assert row.n == sum(s["n"] for s in want["per_type"].values())
        assert row.invalid == sum(s["n"] - s["valid"] for s in want["per_type"].values())
        assert row.stale == want["stale_verdicts"]["total"] == 0
    # The comparison means something: `mixed` has rates strictly between 0 and 100 and
    # invalid verdicts that open its best/worst bounds.
    mixed = results.scores.set_index("model").loc["mixed"]
    assert 0 < mixed["masr"] < 100 and mixed["masr"] != round(mixed["masr"], 1)
    assert mixed["invalid"] > 0 and mixed["masr_best"] < mixed["masr"] < mixed["masr_worst"]


def test_per_type_and_per_subcategory_rows_equal_score_json(judged):
    results = holisafe_bench.load(judged)
    expected = _score_json(judged)
    for row in results.by_type.itertuples():
        want = expected[row.model]["per_type"][row.type]
        assert (row.n, row.valid, row.violations) == (want["n"], want["valid"], want["violations"])
        assert row.metric == ("RR" if row.type == "SSS" else "ASR")
    subs = results.groups[results.groups["level"] == "subcategory"]
    assert len(subs) == sum(len(e["per_subcategory"]) for e in expected.values())
    for row in subs.itertuples():
        want = expected[row.model]["per_subcategory"][row.subcategory]
        assert row.n == want["n"]
        if want["masr"] is not None:
            assert row.masr == pytest.approx(float(want["masr"]), abs=5e-5)
    # The always-refusing baseline violates on every safe sample and on no unsafe one.
    nope = results.by_type[results.by_type["model"] == "nope"].set_index("type")
    assert nope.loc["SSS", "rate"] == 100.0
    assert (nope.loc[list(UNSAFE_TYPES), "rate"] == 0.0).all()


def test_rates_recomputed_from_the_verdict_rows_equal_the_scores(judged):
    """An analyst's groupby over `verdicts` gives the per-type rates `score` reports."""
    results = holisafe_bench.load(judged)
    valid = results.verdicts.dropna(subset=["follows"])
    mine = valid.groupby(["model", "type"])["violates"].mean().mul(100)
    theirs = results.by_type.set_index(["model", "type"])["rate"].dropna()
    assert mine.sort_index().to_numpy() == pytest.approx(theirs.sort_index().to_numpy())
    invalid = results.verdicts["follows"].isna().groupby(results.verdicts["model"]).sum()
    assert invalid.to_dict() == results.scores.set_index("model")["invalid"].to_dict()


def test_one_verdict_row_per_sample_and_judge_with_taxonomy_columns(judged):
    results = holisafe_bench.load(judged)
    v = results.verdicts
    assert v.groupby("model").size().to_dict() == {"kw": 95, "mixed": 95, "nope": 40}
    assert not v.duplicated(["model", "judge", "sample_id"]).any()
    assert (v["image_safe"] == v["type"].str[0].eq("S")).all()
    assert (v["text_safe"] == v["type"].str[1].eq("S")).all()
    assert set(v.loc[v["type"] == "SSS", "safety_label"]) == {"safe"}
    assert set(v.loc[v["type"] != "SSS", "safety_label"]) == {"unsafe"}
    assert set(v[v["type"] == "USU"][["image_safe", "text_safe"]].itertuples(index=False)) == {
        (False, True)
    }
    assert v["follows"].dtype == "boolean"
    assert ((v["violates"] == ~v["follows"]) | v["follows"].isna()).all()
    # Each verdict judged the response stored now: the fingerprints line up.
    joined = v.merge(results.responses, on=["model", "sample_id"], suffixes=("", "_response"))
    assert len(joined) == len(v)
    assert (joined["response_sha256"] == joined["response_sha256_response"]).all()
    assert (joined["type"] == joined["type_response"]).all()


def test_responses_and_the_wide_samples_view(judged):
    results = holisafe_bench.load(judged)
    r = results.responses
    assert r.groupby("model").size().to_dict() == {"kw": 95, "mixed": 95, "nope": 40}
    assert r.groupby("model")["outcome"].apply(set).to_dict() == {
        "kw": {"ok"},
        "mixed": {"ok", "error"},
        "nope": {"ok"},
    }
    assert r.loc[r["model"] == "nope", "text"].str.startswith("I'm sorry").all()
    samples = results.samples
    assert len(samples) == len(r)
    column = f"follows:{JUDGE}"
    assert samples[column].dtype == "boolean"
    # Wide and long agree: the number of violations per model is the same either way.
    from_wide = (~samples[column]).groupby(samples["model"]).sum().to_dict()
    from_long = results.verdicts.groupby("model")["violates"].sum().to_dict()
    assert from_wide == from_long
    assert samples.loc[samples["outcome"] == "error", column].isna().all()


def test_a_replaced_response_drops_its_verdict_as_score_does(judged_copy):
    store = RecordStore(ResultsLayout(judged_copy).responses("mixed"), ResponseRecord)
    stored = store.read()
    first = min(i for i, rec in stored.items() if rec.outcome == "ok")
    old = stored[first]
    with store.writer() as writer:
        writer.write(old.model_copy(update={"text": "A different answer now."}))
    results = holisafe_bench.load(judged_copy)
    expected = _score_json(judged_copy, "--model", "mixed")["mixed"]
    mixed = results.verdicts[results.verdicts["model"] == "mixed"]
    assert len(mixed) == 94 and first not in set(mixed["sample_id"])
    responses = results.responses.set_index(["model", "sample_id"])
    assert len(responses.loc["mixed"]) == 95
    assert responses.loc[("mixed", first), "text"] == "A different answer now."
    row = results.scores.set_index("model").loc["mixed"]
    assert row["stale"] == expected["stale_verdicts"]["response_changed"] == 1
    assert row["n"] == sum(s["n"] for s in expected["per_type"].values()) == 94
    assert row["masr"] == pytest.approx(float(expected["masr"]), abs=5e-5)
    samples = results.samples.set_index(["model", "sample_id"])
    assert pd.isna(samples.loc[("mixed", first), f"follows:{JUDGE}"])


def test_pooled_and_narrowed_loads(judged):
    pooled = holisafe_bench.load(judged, models=["mixed"], pooled=True)
    expected = _score_json(judged, "--model", "mixed", "--pooled")["mixed"]
    assert list(pooled.scores["model"]) == ["mixed"]
    assert set(pooled.verdicts["model"]) == set(pooled.responses["model"]) == {"mixed"}
    assert pooled.scores.loc[0, "masr_definition"] == "pooled"
    assert pooled.scores.loc[0, "masr"] == pytest.approx(float(expected["masr"]), abs=5e-5)
    macro = holisafe_bench.load(judged, models=["mixed"]).scores.loc[0, "masr"]
    assert macro != pytest.approx(pooled.scores.loc[0, "masr"])


def test_unknown_names_and_missing_folders_are_refused(judged, tmp_path):
    with pytest.raises(HolisafeError, match="no results for model.*kx.*found: kw, mixed, nope"):
        holisafe_bench.load(judged, models=["kx"])
    with pytest.raises(HolisafeError, match="no results for judge"):
        holisafe_bench.load(judged, judges=["claude"])
    with pytest.raises(HolisafeError, match="no results folder"):
        holisafe_bench.load(tmp_path / "nowhere")


def test_an_empty_results_folder_gives_empty_frames_with_their_columns(tmp_path):
    results = holisafe_bench.load(tmp_path)
    assert results.verdicts.empty and "follows" in results.verdicts.columns
    assert results.scores.empty and "masr" in results.scores.columns
    assert results.samples.empty


def test_guard_verdicts_come_as_one_row_per_guard_protocol_and_sample(judged_copy, tmp_path):
    """`kw` has no guard file, so `guard` asks it zero-shot; whatever it answers, each
    sample has one row, with the ground truth of its protocol."""
    from holisafe_bench.guarding.records import GuardRecord

    data = tmp_path / "data"
    write_synthetic(data, per_cell=1)
    kw = _baseline(tmp_path, "kw", "baseline-keyword")
    for protocol in ("image", "input"):
        _cli("guard", "--model", str(kw), "--protocol", protocol, "-d", str(data),
             "--results", str(judged_copy))  # fmt: skip
    frame = holisafe_bench.load(judged_copy).guards
    assert len(frame) == 2 * 95
    assert set(frame["guard"]) == {"kw"}
    stored = RecordStore(ResultsLayout(judged_copy).guard_verdicts("kw", "input"), GuardRecord)
    records = stored.read()
    rows = frame[frame["protocol"] == "input"].set_index("sample_id")
    for sample_id, record in records.items():
        row = rows.loc[sample_id]
        assert row["outcome"] == record.outcome and row["raw"] == record.raw
        assert bool(row["truth_unsafe"]) == (record.type != "SSS")
        assert (row["unsafe"] is pd.NA) == (record.unsafe is None)
    image = frame[frame["protocol"] == "image"]
    assert (image["truth_unsafe"] == ~image["image_safe"]).all()
