"""`judge --batch` through the real OpenAI, Anthropic and google-genai SDKs against fake
batch APIs: results mapped back by custom id, partial failures as invalid verdicts with
reasons, a ledger that makes a killed or detached run resume without resubmitting."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.testing.fake_batches import VENDORS, all_true, openai_batches
from holisafe_bench.testing.fake_server import FakeResponse
from tests.conftest import KEY

runner = CliRunner()
N = 95  # responses in the synthetic set


def _mixed(index: int, text: str) -> tuple[str, str]:
    kind = {3: "error", 5: "blocked", 7: "missing"}.get(index % 10)
    if kind:
        return kind, "upstream failure" if kind == "error" else ""
    if index % 10 == 8:
        return "ok", "I can't evaluate this."
    if index % 10 == 9:
        return "ok", "The response is fine."
    return "ok", f"<label>{index % 2 == 0}</label>"


def _args(judge: str, fake, data, out, *extra: str) -> list[str]:
    base = fake.server.base_url + ("/v1" if judge == "gpt4o" else "")
    return [
        "judge", "--judge", judge, "--model", "kw", "-d", str(data), "--out", str(out),
        "--base-url", base, "--batch", "--batch-poll", "0.01", *extra,
    ]  # fmt: skip


def _verdicts(out, judge: str) -> dict[int, dict]:
    latest = {}
    for line in (out / "kw" / "verdicts" / f"{judge}.jsonl").read_text().splitlines():
        v = json.loads(line)
        latest[v["sample_id"]] = v
    return latest


def _no_key_anywhere(out) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("judge", sorted(VENDORS))
def test_batch_results_map_back_by_custom_id_with_reasons_for_failures(kw_run, judge):
    data, out = kw_run
    make, _ = VENDORS[judge]
    fake = make(plan=_mixed, polls_until_done=3)
    fake.server.start()
    try:
        res = runner.invoke(app, _args(judge, fake, data, out))
        assert res.exit_code == 0, res.output
        assert fake.submissions == 1
        verdicts = _verdicts(out, judge)
        assert len(verdicts) == N  # every sample ends valid or invalid

        fates = Counter(fake.fates.values())
        refused = sum(r == "I can't evaluate this." for r in fake.replies.values())
        unlabelled = sum(r == "The response is fine." for r in fake.replies.values())
        reasons = Counter(v["invalid"] for v in verdicts.values() if v["invalid"])
        assert reasons == Counter(
            api_error=fates["error"] + fates["missing"],
            judge_content_filter=fates["blocked"],
            judge_refused=refused,
            parse_error=unlabelled,
        )
        assert all(v["follows"] is None for v in verdicts.values() if v["invalid"])
        valid = [v for v in verdicts.values() if v["follows"] is not None]
        assert len(valid) == N - sum(reasons.values())

        # Per item: the cache holds each valid answer under the custom id it was sent with.
        with sqlite3.connect(out / ".cache" / "judge_cache.sqlite") as db:
            cached = dict(db.execute("SELECT key, follows FROM verdicts"))
        labelled = {k: r for k, r in fake.replies.items() if r.startswith("<label>")}
        assert len(cached) == len(labelled) == len(valid)
        for key, reply in labelled.items():
            assert bool(cached[key]) == (reply == "<label>True</label>")

        manifest = json.loads((out / "kw" / "verdicts" / f"{judge}.json").read_text())
        assert manifest["batch_api"] is True and len(manifest["batch_jobs_submitted"]) == 1
        assert manifest["cost_usd"] > 0

        # A re-run submits one job with only the invalid ones; the rest stay as they are.
        fake.plan = lambda index, text: ("ok", "<label>False</label>")
        res = runner.invoke(app, _args(judge, fake, data, out))
        assert res.exit_code == 0, res.output
        assert fake.submissions == 2
        last_job = list(fake.jobs.values())[-1]
        assert len(last_job.get("items", [])) == sum(reasons.values())
        assert all(v["follows"] is not None for v in _verdicts(out, judge).values())
    finally:
        fake.server.stop()
    _no_key_anywhere(out)


@pytest.mark.parametrize("judge", sorted(VENDORS))
def test_a_detached_batch_is_collected_later_not_resubmitted(kw_run, judge):
    data, out = kw_run
    fake = VENDORS[judge][0](polls_until_done=2)
    fake.server.start()
    try:
        res = runner.invoke(app, _args(judge, fake, data, out, "--batch-no-wait"))
        assert res.exit_code == 0, res.output
        assert fake.submissions == 1
        ledger = (out / "kw" / "batches" / f"{judge}.jsonl").read_text().splitlines()
        assert [json.loads(x)["event"] for x in ledger] == ["submitted"]

        res = runner.invoke(app, _args(judge, fake, data, out))
        assert res.exit_code == 0, res.output
        assert "resuming 1" in res.output
        assert fake.submissions == 1
        assert sum(v["follows"] is True for v in _verdicts(out, judge).values()) == N
        ledger = (out / "kw" / "batches" / f"{judge}.jsonl").read_text().splitlines()
        assert [json.loads(x)["event"] for x in ledger] == ["submitted", "collected"]
    finally:
        fake.server.stop()


def test_a_killed_batch_run_resumes_polling_without_resubmitting(kw_run):
    data, out = kw_run
    fake = openai_batches(polls_until_done=10**9)  # never finishes while the first run lives
    fake.server.start()
    try:
        env = {**os.environ, "OPENAI_API_KEY": KEY}
        cmd = [sys.executable, "-m", "holisafe_bench", *_args("gpt4o", fake, data, out)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ledger = out / "kw" / "batches" / "gpt4o.jsonl"
        deadline = time.monotonic() + 60
        while not (ledger.exists() and b"submitted" in ledger.read_bytes()):
            assert proc.poll() is None, "the judge run ended before submitting"
            assert time.monotonic() < deadline, "no batch submitted within 60 s"
            time.sleep(0.05)
        time.sleep(0.2)  # let it poll a few times
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert fake.submissions == 1
        polls_before = fake.server.count("/v1/batches/")

        fake.polls_until_done = 1
        res = runner.invoke(app, _args("gpt4o", fake, data, out))
        assert res.exit_code == 0, res.output
        assert fake.submissions == 1  # polled and collected, never paid for twice
        assert fake.server.count("/v1/batches/") > polls_before
        assert len(_verdicts(out, "gpt4o")) == N
    finally:
        fake.server.stop()


FAILURES = [("gpt4o", "failed", "api_error"), ("claude", "expired", "timeout")]
FAILURES += [("gemini", "failed", "api_error")]


@pytest.mark.parametrize(("judge", "failure", "reason"), FAILURES)
def test_a_failed_or_expired_job_gives_invalid_verdicts_not_gaps(kw_run, judge, failure, reason):
    data, out = kw_run
    fake = VENDORS[judge][0](job_failure=failure)
    fake.server.start()
    try:
        res = runner.invoke(app, _args(judge, fake, data, out))
        assert res.exit_code == 0, res.output
        verdicts = _verdicts(out, judge)
        assert len(verdicts) == N
        assert {v["invalid"] for v in verdicts.values()} == {reason}
        assert all(failure in (v["detail"] or "") for v in verdicts.values())
    finally:
        fake.server.stop()


@pytest.mark.parametrize("judge", ["gpt4o", "claude"])
def test_a_malformed_results_line_fails_only_its_request(kw_run, judge):
    data, out = kw_run
    fake = VENDORS[judge][0](
        plan=lambda i, text: ("malformed", "") if i == 4 else all_true(i, text)
    )
    fake.server.start()
    try:
        res = runner.invoke(app, _args(judge, fake, data, out))
        assert res.exit_code == 0, res.output
        verdicts = _verdicts(out, judge)
        invalid = [v for v in verdicts.values() if v["invalid"]]
        assert len(verdicts) == N and len(invalid) == 1
        assert invalid[0]["invalid"] == "api_error" and "no result" in invalid[0]["detail"]
    finally:
        fake.server.stop()


def test_control_calls_are_retried_on_429_and_500(kw_run):
    data, out = kw_run
    fake = openai_batches()
    fake.server.start()
    try:
        fake.server.inject(
            FakeResponse(429, {"error": {"message": "slow down"}}, {"retry-after": "0"}),
            FakeResponse(500, {"error": {"message": "oops"}}),
        )
        res = runner.invoke(app, _args("gpt4o", fake, data, out))
        assert res.exit_code == 0, res.output
        assert fake.submissions == 1
        assert fake.server.count("/v1/files") >= 3  # two failed uploads, then the real one
        assert len(_verdicts(out, "gpt4o")) == N
    finally:
        fake.server.stop()


def test_open_weight_judge_refuses_batch_clearly(kw_run):
    data, out = kw_run
    res = runner.invoke(
        app,
        ["judge", "--judge", "open-weight", "--model", "kw", "-d", str(data), "--out", str(out),
         "--base-url", "http://127.0.0.1:9/v1", "--batch"],
    )  # fmt: skip
    assert res.exit_code != 0
    assert "without --batch" in str(res.exception)
