"""A run stopped by Ctrl-C or killed outright: exit 130 with a line saying the records are
kept, run.json counting every line's tokens, and a damaged run.json refused, not replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from holisafe_bench.testing.fake_vendors import openai_server


def test_ctrl_c_keeps_the_records_and_their_tokens_in_the_manifest(tmp_path):
    server = openai_server(latency=0.3).start()
    results = tmp_path / "results"
    responses = results / "gpt-4o" / "responses.jsonl"
    try:
        cmd = [
            sys.executable, "-m", "holisafe_bench", "run", "-m", "gpt-4o", "-d", "sample",
            "--results", str(results), "--base-url", f"{server.base_url}/v1",
            "--concurrency", "2",
        ]  # fmt: skip
        env = {**os.environ, "OPENAI_API_KEY": "sk-test-ctrl-c"}
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # As a terminal delivers it: SIGINT at its default, even under a shell that
            # started this test in the background with SIGINT ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if responses.exists() and len(responses.read_bytes().splitlines()) >= 4:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        server.stop()
    assert proc.returncode == 130
    assert "interrupted: every record written so far is kept" in err
    assert "Traceback" not in err
    records = [json.loads(line) for line in responses.read_text().splitlines()]
    assert 4 <= len(records) < 95 and all(r["outcome"] == "ok" for r in records)
    manifest = json.loads((results / "gpt-4o" / "run.json").read_text())
    tokens = {
        key: sum(r["usage"][key] for r in records) for key in ("input_tokens", "output_tokens")
    }
    assert manifest["usage"] == tokens and tokens["input_tokens"] > 0
    (invocation,) = manifest["invocations"]
    assert invocation["outcomes"] == {"ok": len(records)}
    assert invocation["finished_at"] is not None


def test_tokens_of_an_invocation_killed_before_its_manifest_still_count(kw_run):
    """SIGKILL leaves lines written and no manifest update: the next invocation's totals
    come from every line of the file (a redone failure's first line included)."""
    from holisafe_bench.cli.main import app

    data, out = kw_run
    responses = out / "kw" / "responses.jsonl"
    lines = [json.loads(x) for x in responses.read_text().splitlines()]
    # As a killed invocation leaves them: two paid failures, one of them redone later.
    for record in lines[:2]:
        record.update(outcome="error", text=None, error="killed", usage={
            "input_tokens": 100, "output_tokens": 7})  # fmt: skip
    lines[1]["usage"] = {"input_tokens": 50, "output_tokens": 3}
    responses.write_text("".join(json.dumps(r) + "\n" for r in lines))
    from typer.testing import CliRunner

    model = out.parent / "kw.toml"
    res = CliRunner().invoke(
        app, ["run", "--model", str(model), "-d", str(data), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    every = [json.loads(x) for x in responses.read_text().splitlines()]
    assert len(every) == 95 + 2  # the two failures were redone, their lines kept
    manifest = json.loads((out / "kw" / "run.json").read_text())
    assert manifest["usage"] == {
        key: sum(r["usage"][key] for r in every) for key in ("input_tokens", "output_tokens")
    }
    assert manifest["usage"]["input_tokens"] >= 150


def test_an_unreadable_run_json_beside_responses_is_refused_not_replaced(kw_run):
    """Replaced silently, it let a resume with other settings (--max-tokens 7) record them
    as the settings of responses made with the defaults."""
    from typer.testing import CliRunner

    from holisafe_bench.cli.main import app
    from holisafe_bench.errors import HolisafeError

    data, out = kw_run
    manifest = out / "kw" / "run.json"
    manifest.write_text('{"stage": "run", "trunc')
    args = ["run", "--model", str(out.parent / "kw.toml"), "-d", str(data), "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--max-tokens", "7"])
    assert isinstance(res.exception, HolisafeError)
    assert "run.json: cannot be read" in str(res.exception)
    assert "--overwrite" in str(res.exception)
    assert manifest.read_text() == '{"stage": "run", "trunc'  # left for the user to decide
    manifest.unlink()  # the documented way to keep the records
    assert CliRunner().invoke(app, args).exit_code == 0
