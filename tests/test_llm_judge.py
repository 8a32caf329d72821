"""LLM judges through the real CLI and the real OpenAI/Anthropic SDKs against fakes."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.errors import HolisafeError
from holisafe_bench.judging.parser import parse_label
from holisafe_bench.judging.template import load_template
from holisafe_bench.providers.retry import RetryPolicy
from holisafe_bench.testing.fake_server import FakeResponse
from holisafe_bench.testing.fake_vendors import anthropic_server, openai_completion, openai_server
from tests.conftest import KEY

runner = CliRunner()


@pytest.mark.parametrize(
    ("reply", "follows", "invalid"),
    [
        ("<label>True</label>", True, None),
        ("<LABEL> false </Label>", False, None),
        ("Reasoning...\n< label >TRUE< /label >", True, None),
        ("The answer is True.", None, "parse_error"),
        # The authors' rule: the first label wins (--strict-labels: tests/test_judge_prompt.py).
        ("<label>True</label> or maybe <label>False</label>", True, None),
        ("I can't evaluate this request.", None, "judge_refused"),
    ],
)
def test_label_parser(reply, follows, invalid):
    parsed = parse_label(reply)
    assert (parsed.follows, parsed.invalid) == (follows, invalid)


def test_templates_need_all_three_placeholders(tmp_path):
    bad = tmp_path / "t.txt"
    bad.write_text("judge {query} and {response}")
    with pytest.raises(HolisafeError, match="safety_label"):
        load_template(bad)
    good = load_template("default.txt")
    text = good.render(query="Q {x}", safety_label="unsafe", response="R")
    assert "Q {x}" in text and "unsafe" in text and "R" in text


def _reply_by_text(prompt_marker: str = "<label>True</label>"):
    return lambda text: prompt_marker


def _judge(out, data, url, *extra, judge="gpt4o"):
    args = [
        "judge",
        "--judge",
        judge,
        "--model",
        "kw",
        "-d",
        str(data),
        "--out",
        str(out),
        "--base-url",
        url + "/v1",
        *extra,
    ]
    return runner.invoke(app, args)


def _verdicts(out):
    lines = (out / "kw" / "verdicts" / "gpt4o.jsonl").read_text().splitlines()
    latest = {}
    for line in lines:
        v = json.loads(line)
        latest[v["sample_id"]] = v
    return latest


def test_judging_with_faults_every_sample_ends_valid_or_invalid_with_a_reason(kw_run):
    data, out = kw_run
    server = openai_server(reply=lambda text: "<label>True</label>").start()
    try:
        server.inject(
            FakeResponse(body=openai_completion("gpt-4o", "no label here")),
            FakeResponse(body=openai_completion("gpt-4o", "I can't evaluate this.")),
            FakeResponse(body=openai_completion("gpt-4o", "", finish="content_filter")),
            *[FakeResponse(400, {"error": {"message": "bad", "code": "x"}})],
        )
        res = _judge(out, data, server.base_url, "--concurrency", "1")
        assert res.exit_code == 0, res.output
        verdicts = _verdicts(out)
        assert len(verdicts) == 95
        invalid = sorted(v["invalid"] for v in verdicts.values() if v["invalid"])
        assert invalid == ["api_error", "judge_content_filter", "judge_refused", "parse_error"]
        assert sum(v["follows"] is True for v in verdicts.values()) == 91
        assert all(v["raw"] == "<label>True</label>" for v in verdicts.values() if v["follows"])
        calls = server.count("/chat/completions")
        assert calls == 95

        manifest = json.loads((out / "kw" / "verdicts" / "gpt4o.json").read_text())
        assert manifest["counts"]["valid"] == 91 and manifest["counts"]["invalid"] == 4
        assert len(manifest["prompt_template_hash"]) == 64
        assert manifest["cost_usd"] > 0

        # A re-run redoes only the 4 invalid verdicts.
        res = _judge(out, data, server.base_url)
        assert res.exit_code == 0, res.output
        assert server.count("/chat/completions") == calls + 4
        assert all(v["follows"] is True for v in _verdicts(out).values())

        # --overwrite redoes everything, but every answer now comes from the cache.
        before = server.count("/chat/completions")
        res = _judge(out, data, server.base_url, "--overwrite")
        assert res.exit_code == 0, res.output
        assert server.count("/chat/completions") == before
        assert all(v["cached"] for v in _verdicts(out).values())
    finally:
        server.stop()
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_transport_faults_end_as_verdicts_or_reasons_never_gaps(kw_run, tmp_path, monkeypatch):
    data, out = kw_run
    fast = functools.partial(
        RetryPolicy, max_attempts=3, initial_wait=0.01, max_wait=0.02, max_total_seconds=10
    )
    monkeypatch.setattr("holisafe_bench.providers.retry.RetryPolicy", fast)
    declaration = (Path(__file__).parents[1] / "judges" / "gpt4o.toml").read_text()
    judge = tmp_path / "gpt4o-short-timeout.toml"
    judge.write_text(declaration.replace("[api]\n", "[api]\ntimeout_s = 0.5\n"))
    server = openai_server(reply=lambda text: "<label>True</label>").start()
    limited = FakeResponse(429, {"error": {"message": "slow down"}}, headers={"retry-after": "0"})
    down = FakeResponse(500, {"error": {"message": "down"}})
    fine = FakeResponse(body=openai_completion("gpt-4o", "<label>True</label>"))
    try:
        # Concurrency 1: the calls and their retries meet these replies in this order.
        server.inject(
            *[limited, limited, fine],  # a 429 storm, then through on the third attempt
            *[down, fine],  # one 500, then through
            *[down, down, down],  # 500 every time: gives up after 3 attempts
            FakeResponse(200, b"{not json"),  # malformed JSON: not retried
            *[FakeResponse(delay=0.8)] * 3,  # past the 0.5 s timeout on every attempt
        )
        res = _judge(out, data, server.base_url, "--concurrency", "1", judge=str(judge))
        assert res.exit_code == 0, res.output
        calls = server.count("/chat/completions")
        assert calls == 90 + 3 + 2 + 3 + 1 + 3
        verdicts = _verdicts(out)
        assert len(verdicts) == 95
        invalid = {v["sample_id"]: v for v in verdicts.values() if v["invalid"]}
        assert sorted(v["invalid"] for v in invalid.values()) == [
            "api_error",
            "api_error",
            "timeout",
        ]
        assert all(v["detail"] for v in invalid.values())  # each says what went wrong
        assert any("after 3 attempts" in v["detail"] for v in invalid.values())
        assert sum(v["follows"] is True for v in verdicts.values()) == 92
        manifest = json.loads((out / "kw" / "verdicts" / "gpt4o.json").read_text())
        assert manifest["counts"]["valid"] + manifest["counts"]["invalid"] == 95
        assert manifest["counts"]["invalid_api_error"] == 2
        assert manifest["counts"]["invalid_timeout"] == 1

        # A re-run redoes the three failures only.
        res = _judge(out, data, server.base_url, "--concurrency", "1", judge=str(judge))
        assert res.exit_code == 0, res.output
        assert server.count("/chat/completions") == calls + 3
    finally:
        server.stop()
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_dry_run_estimates_and_calls_nothing(kw_run):
    data, out = kw_run
    server = openai_server().start()
    try:
        res = _judge(out, data, server.base_url, "--dry-run")
        assert res.exit_code == 0, res.output
        assert "95 judge calls" in res.output and "estimated cost $" in res.output
        assert server.count() == 0
        assert not (out / "kw" / "verdicts" / "gpt4o.jsonl").exists()
    finally:
        server.stop()


def test_max_cost_stops_cleanly_and_max_invalid_fails_the_run(kw_run):
    data, out = kw_run
    server = openai_server(reply=lambda text: "<label>False</label>").start()
    try:
        res = _judge(out, data, server.base_url, "--concurrency", "1", "--max-cost", "0.0002")
        assert res.exit_code == 0, res.output
        assert "max-cost" in res.output
        assert 1 <= server.count() < 95
        server.inject(*[FakeResponse(body=openai_completion("gpt-4o", "???"))] * 200)
        res = _judge(out, data, server.base_url, "--max-invalid", "5")
        assert isinstance(res.exception, HolisafeError)  # main() turns it into exit 2
        assert "exceed --max-invalid" in str(res.exception)
    finally:
        server.stop()


def test_blocked_model_responses_are_refusals_without_a_judge_call(kw_run, tmp_path):
    data, out = kw_run
    path = out / "kw" / "responses.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for rec in lines[:10]:
        rec.update(outcome="content_filter", text=None)
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    server = anthropic_server(reply=lambda text: "<label>True</label>").start()
    try:
        args = [
            "judge",
            "--judge",
            "claude",
            "--model",
            "kw",
            "-d",
            str(data),
            "--out",
            str(out),
            "--base-url",
            server.base_url,
        ]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        assert server.count("/v1/messages") == 85
        verdicts = [
            json.loads(x)
            for x in (out / "kw" / "verdicts" / "claude.jsonl").read_text().splitlines()
        ]
        blocked = [v for v in verdicts if "content filter" in (v["detail"] or "")]
        assert len(blocked) == 10
        assert all(v["follows"] == (v["type"] != "SSS") for v in blocked)
    finally:
        server.stop()


def test_max_cost_counts_the_calls_made_not_the_calls_planned(kw_run):
    """Stopped by --max-cost, the summary, the stop line and the manifest count the calls
    that were made (each fake call costs $0.0000975: 11 input and 7 output tokens at
    gpt-4o's prices), and every verdict written is one of them."""
    data, out = kw_run
    server = openai_server(reply=lambda text: "<label>False</label>", latency=0.05).start()
    try:
        res = _judge(out, data, server.base_url, "--concurrency", "4", "--max-cost", "0.001")
        assert res.exit_code == 0, res.output
        made = server.count()
        assert 11 <= made < 95  # 11 calls reach $0.001; up to 3 more were in flight
        assert f"{made} judged now" in res.output
        assert f"{95 - made} call(s) not made" in " ".join(res.output.split())
        manifest = json.loads((out / "kw" / "verdicts" / "gpt4o.json").read_text())
        assert manifest["calls"] == made and len(_verdicts(out)) == made
        assert manifest["cost_usd"] == pytest.approx(made * 0.0000975, abs=1e-6)
    finally:
        server.stop()
