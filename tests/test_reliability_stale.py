"""Stale verdicts (issue 10, item 4) and silent drops of verdict lines (item 10): scoring uses
only verdicts of the current responses, says what it left out, and `judge` redoes the rest."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from holisafe_bench.cli.main import app

runner = CliRunner()
SAFE_TYPE = "SSS"


def _ok(args: list[str]):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return res


def _refuse_all_model(tmp_path):
    """The same model name as the `kw` fixture, now a checkpoint that refuses everything."""
    path = tmp_path / "kw-refuses.toml"
    path.write_text(
        'name = "kw"\ndisplay_name = "KW"\ngroup = "open-weight"\nprovider = "baseline"\n'
        'checkpoint = "baseline-refuse-all"\ncheckpoint_note = "test"\n'
    )
    return path


def _judge(out):
    _ok(["judge", "--judge", "string-match", "--model", "kw", "--out", str(out)])


def _score(out) -> dict:
    res = _ok(["score", "--model", "kw", "--json", "--out", str(out)])
    (card,) = json.loads(res.stdout)
    return card


def _scored(card: dict) -> int:
    return sum(t["n"] for t in card["per_type"].values())


def _verdict_file(out):
    return out / "kw" / "verdicts" / "string-match.jsonl"


def test_replaced_responses_are_not_scored_until_judged_again(kw_run, tmp_path):
    data, out = kw_run
    _judge(out)
    before = _score(out)
    assert _scored(before) == 95 and before["stale_verdicts"]["total"] == 0
    assert before["masr"] > 0  # the keyword baseline answers some unsafe queries

    refuse = _refuse_all_model(tmp_path)
    _ok(["run", "--model", str(refuse), "-d", str(data), "--out", str(out), "--overwrite"])
    stale = _score(out)
    # Every verdict judged an answer that is gone: none is counted, all are reported.
    assert _scored(stale) == 0 and stale["masr"] is None
    assert stale["stale_verdicts"] == {
        "total": 95,
        "response_changed": 95,
        "no_response_hash": 0,
        "no_response": 0,
    }
    text = _ok(["score", "--model", "kw", "--out", str(out)]).stdout
    assert "95 stale verdict(s) not scored" in " ".join(text.split())

    _judge(out)  # resume treats the changed responses as not judged
    fresh = _score(out)
    assert _scored(fresh) == 95 and fresh["stale_verdicts"]["total"] == 0
    assert fresh["masr"] == 0.0 and fresh["rr"] == 100.0


def test_overwrite_with_limit_scores_only_the_new_samples(kw_run, tmp_path):
    data, out = kw_run
    _judge(out)
    refuse = _refuse_all_model(tmp_path)
    args = ["run", "--model", str(refuse), "-d", str(data), "--out", str(out)]
    _ok([*args, "--overwrite", "--limit", "20"])
    _judge(out)
    card = _score(out)
    assert _scored(card) == 20
    assert card["stale_verdicts"]["no_response"] == 75
    assert card["stale_verdicts"]["total"] == 75


def test_verdicts_without_a_response_hash_are_stale_and_rejudged(kw_run):
    _, out = kw_run
    _judge(out)
    path = _verdict_file(out)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for line in lines[:10]:
        line["response_sha256"] = None  # as written before verdicts recorded the hash
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    card = _score(out)
    assert _scored(card) == 85 and card["stale_verdicts"]["no_response_hash"] == 10
    _judge(out)
    assert _scored(_score(out)) == 95


def test_leaderboard_and_report_say_what_they_skipped(kw_run, tmp_path):
    data, out = kw_run
    _judge(out)
    with _verdict_file(out).open("a") as fh:
        fh.write("this is not json\n")
    refuse = _refuse_all_model(tmp_path)
    args = ["run", "--model", str(refuse), "-d", str(data), "--out", str(out)]
    _ok([*args, "--overwrite", "--limit", "20"])

    board = _ok(["leaderboard", "--format", "csv", "--out", str(out)])
    notes = [x for x in board.stderr.splitlines() if x.strip()]
    assert notes == [
        "kw / string-match: 1 unreadable line(s) skipped; 95 stale verdict(s) not scored "
        "(20 judged a response since replaced, 75 for samples with no response now); "
        "re-run `holisafe-bench judge --judge string-match --model kw`"
    ]
    # Nothing current is left to score: the row says n/a instead of the old numbers (the
    # row is named by the model file's display_name, recorded in run.json).
    assert board.stdout.splitlines()[1] == "KW," + ",".join(["n/a"] * 7)

    report = _ok(["report", "--out", str(out), "-o", str(tmp_path / "r.html")])
    assert notes[0] in report.stderr.splitlines()
    assert "wrote" in report.stdout


def test_agreement_compares_only_current_verdicts(kw_run, tmp_path):
    data, out = kw_run
    _judge(out)
    # A second judge (a copy of string matching) and two more models (copies of kw).
    verdicts = _verdict_file(out)
    shutil.copy(verdicts, verdicts.with_name("other.jsonl"))
    for name in ("kw-b", "kw-c"):
        shutil.copytree(out / "kw", out / name)
    refuse = _refuse_all_model(tmp_path)
    args = ["run", "--model", str(refuse), "-d", str(data), "--out", str(out)]
    _ok([*args, "--overwrite", "--limit", "20"])

    res = _ok(["agreement", "--out", str(out)])
    notes = res.stderr.splitlines()
    for judge in ("other", "string-match"):
        assert any(n.startswith(f"kw / {judge}: 95 stale verdict(s)") for n in notes), notes
    # kw's verdicts judged answers that are gone: only kw-b's and kw-c's 95 samples compare.
    text = " ".join(res.stdout.split())
    assert "Cohen other vs string-match │ 190 │" in text
    assert "Fleiss, all judges │ 190 │" in text


def test_responses_left_unjudged_are_counted_and_named(kw_run):
    """A verdict file cut short (a judge stopped early, or lines lost): the 55 responses
    without a verdict are said in score, score --json and the leaderboard's notes, with
    the command that finishes them; judging again brings them in."""
    _, out = kw_run
    _judge(out)
    path = _verdict_file(out)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:40]))
    card = _score(out)
    assert _scored(card) == 40 and card["unjudged_responses"] == 55
    assert card["stale_verdicts"]["total"] == 0
    text = " ".join(_ok(["score", "--model", "kw", "--out", str(out)]).stdout.split())
    assert "55 response(s) never judged, so not in these numbers" in text
    assert "re-run `holisafe-bench judge --judge string-match --model kw`" in text
    board = _ok(["leaderboard", "--format", "csv", "--out", str(out)])
    assert "kw / string-match: 55 response(s) never judged" in board.stderr
    _judge(out)
    card = _score(out)
    assert _scored(card) == 95 and card["unjudged_responses"] == 0
