"""A server that echoes the request's Authorization header, in a reply's text and in a
response header: the key reaches no stored record, verdict, cache, report or -v log."""

from __future__ import annotations

import base64
import gzip
import os
import re
import subprocess
import sys

import pytest

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.keys import api_key
from holisafe_bench.testing.fake_server import FakeRequest, FakeResponse, FakeServer
from holisafe_bench.testing.fake_vendors import openai_completion

SECRET = "sk-ECHOED-SECRET-0123456789"


def _echoing_server() -> FakeServer:
    server = FakeServer()

    @server.route("POST", r"/v1/chat/completions")
    def chat(req: FakeRequest) -> FakeResponse:
        auth = req.headers.get("Authorization") or req.headers.get("authorization") or ""
        text = f"<label>True</label> I can see your header: {auth}"
        return FakeResponse(
            body=openai_completion(req.json()["model"], text), headers={"x-echo": auth}
        )

    return server


def test_an_echoed_key_is_stored_nowhere_and_logged_nowhere(tmp_path):
    server = _echoing_server().start()
    results = tmp_path / "results"
    env = {**os.environ, "OPENAI_API_KEY": SECRET}
    url = f"{server.base_url}/v1"
    base = [sys.executable, "-m", "holisafe_bench", "-v"]
    logs = []
    try:
        for args in (
            ["run", "-m", "gpt-4o", "-d", "sample", "--limit", "3", "--base-url", url],
            ["judge", "-j", "gpt4o", "-m", "gpt-4o", "--base-url", url],
            ["report", "-o", str(tmp_path / "report.html")],
        ):
            done = subprocess.run(
                [*base, *args, "--results", str(results)], env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr[-2000:]
            logs.append(done.stdout + done.stderr)
    finally:
        server.stop()
    assert server.count() == 6  # 3 answers, 3 verdicts: the echo really came back
    assert (
        "I can see your header: Bearer [redacted]"
        in (results / "gpt-4o" / "responses.jsonl").read_text()
    )
    assert "DEBUG" in logs[0]  # -v did log the exchange
    for text in logs:
        assert SECRET not in text
    for path in [*tmp_path.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    # The report's sample browser is gzipped and base64-encoded: look inside it too.
    page = (tmp_path / "report.html").read_text()
    unpacked = [_gunzipped(blob) for blob in re.findall(r"[A-Za-z0-9+/=]{200,}", page)]
    browser = b"".join(u for u in unpacked if u)
    assert b"Bearer [redacted]" in browser and SECRET.encode() not in browser


def _gunzipped(blob: str) -> bytes | None:
    try:
        return gzip.decompress(base64.b64decode(blob))
    except (ValueError, OSError, EOFError):
        return None


@pytest.mark.parametrize("value", [SECRET + "\r", f"  {SECRET}\n"])
def test_a_key_read_with_a_line_ending_is_used_without_it(monkeypatch, value):
    monkeypatch.setenv("HOLISAFE_TEST_KEY", value)
    assert api_key(("HOLISAFE_TEST_KEY",), what="test") == SECRET


def test_a_key_with_a_space_inside_names_the_variable_not_the_key(monkeypatch):
    monkeypatch.setenv("HOLISAFE_TEST_KEY", "sk-abc def-0123456789")
    with pytest.raises(HolisafeError, match="HOLISAFE_TEST_KEY holds a space") as info:
        api_key(("HOLISAFE_TEST_KEY",), what="test")
    assert "abc" not in str(info.value)
