"""Issue 10, items 6, 8 and 9, through the CLI against fake servers on 127.0.0.1:

- killing the parent of a `--processes 2` run ends its workers, and a re-run resumes at once;
- a reply trickled a byte at a time is cut at the attempt deadline and the request budget;
- a connection reset mid-body is retried by every provider, and a persistent one ends as an
  error with a message that says what happened.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.providers import retry
from holisafe_bench.testing.fake_server import FakeResponse, FakeServer
from holisafe_bench.testing.fake_vendors import (
    anthropic_message,
    anthropic_server,
    gemini_reply,
    gemini_server,
    openai_completion,
    openai_server,
)

KEY = "sk-reliab-SECRET-0123456789"
runner = CliRunner()
VENDORS = {
    "openai": (openai_server, "OPENAI_API_KEY", "/v1"),
    "anthropic": (anthropic_server, "ANTHROPIC_API_KEY", ""),
    "gemini": (gemini_server, "GEMINI_API_KEY", ""),
}


def _valid_body(vendor: str) -> dict:
    if vendor == "openai":
        return openai_completion("m", "a complete answer")
    if vendor == "anthropic":
        return anthropic_message("m", "a complete answer")
    return gemini_reply("a complete answer")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("data"), per_cell=1)  # 95 samples


def _model(tmp_path: Path, vendor: str, server: FakeServer, **api: object) -> Path:
    settings = {"concurrency": 4, "timeout_s": 5.0, **api}
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    path = tmp_path / f"{vendor}.toml"
    path.write_text(
        f'name = "{vendor}-m"\ndisplay_name = "M"\ngroup = "closed"\nprovider = "{vendor}"\n'
        f'checkpoint = "model-x"\ncheckpoint_note = "test"\n[api]\n'
        f'base_url = "{server.base_url}{VENDORS[vendor][2]}"\n' + "\n".join(lines) + "\n"
    )
    return path


def _records(out: Path, vendor: str) -> list[dict]:
    text = (out / f"{vendor}-m" / "responses.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def _policy(monkeypatch, **fields: float) -> None:
    """Short back-off for these tests (the CLI builds the default policy per run)."""
    quick = {"initial_wait": 0.01, "max_wait": 0.05, **fields}
    monkeypatch.setattr(retry, "RetryPolicy", functools.partial(retry.RetryPolicy, **quick))


@pytest.fixture(params=sorted(VENDORS))
def vendor(request, monkeypatch):
    make, env, _ = VENDORS[request.param]
    monkeypatch.setenv(env, KEY)
    server = make().start()
    yield request.param, server
    server.stop()


def _run(model: Path, data: Path, out: Path, *extra: str):
    args = ["run", "--model", str(model), "-d", str(data), "--out", str(out), *extra]
    return runner.invoke(app, args)


# --- item 9: a connection reset mid-body ------------------------------------------------


@pytest.mark.parametrize("hard", [True, False], ids=["reset", "early-close"])
def test_a_reset_mid_body_is_retried_and_succeeds_with_every_provider(
    vendor, data, tmp_path, monkeypatch, hard
):
    name, server = vendor
    _policy(monkeypatch, max_attempts=3)
    # Headers and the first bytes of a good reply, then a RST (or a close short of the
    # content-length: the transport's "incomplete body" error).
    server.inject(FakeResponse(body=_valid_body(name), reset_after=20, hard_reset=hard))
    res = _run(_model(tmp_path, name, server), data, tmp_path / "out", "--limit", "1")
    assert res.exit_code == 0, res.output
    [record] = _records(tmp_path / "out", name)
    assert record["outcome"] == "ok", record["error"]
    assert record["text"].startswith("fake answer to:")
    assert server.count() == 2


def test_a_persistent_reset_ends_as_an_error_with_a_message(vendor, data, tmp_path, monkeypatch):
    name, server = vendor
    _policy(monkeypatch, max_attempts=3)
    server.inject(*[FakeResponse(body=_valid_body(name), reset_after=20)] * 3)
    res = _run(_model(tmp_path, name, server), data, tmp_path / "out", "--limit", "1")
    assert res.exit_code == 0, res.output
    [record] = _records(tmp_path / "out", name)
    assert record["outcome"] == "error" and "after 3 attempts" in record["error"]
    what = record["error"].rsplit("(after", 1)[0].strip()
    assert what and not what.endswith(":"), record["error"]  # never "ReadError: "
    assert "connection" in what.lower()  # says what happened
    assert KEY not in record["error"]
    assert server.count() == 3


# --- item 8: a request's time is bounded -----------------------------------------------


def test_a_trickled_reply_is_cut_at_the_attempt_deadline(vendor, data, tmp_path, monkeypatch):
    name, server = vendor
    _policy(monkeypatch, max_attempts=2)
    # One byte every 0.2 s: no single read waits past the 1 s timeout, the whole reply
    # would take a minute.
    server.inject(*[FakeResponse(body=_valid_body(name), trickle=0.2)] * 2)
    model = _model(tmp_path, name, server, timeout_s=1.0)
    started = time.monotonic()
    res = _run(model, data, tmp_path / "out", "--limit", "1")
    elapsed = time.monotonic() - started
    assert res.exit_code == 0, res.output
    [record] = _records(tmp_path / "out", name)
    assert record["outcome"] == "error" and "timeout" in record["error"].lower()
    assert "after 2 attempts" in record["error"]
    assert elapsed < 6, f"two 1 s attempts took {elapsed:.1f} s"
    assert server.count() == 2


def test_the_request_budget_caps_the_last_attempt(data, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    _policy(monkeypatch, max_attempts=6, max_total_seconds=1.5)
    server = openai_server().start()
    try:
        server.inject(*[FakeResponse(body=_valid_body("openai"), trickle=0.2)] * 6)
        model = _model(tmp_path, "openai", server, timeout_s=30.0)
        started = time.monotonic()
        res = _run(model, data, tmp_path / "out", "--limit", "1")
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert res.exit_code == 0, res.output
    [record] = _records(tmp_path / "out", "openai")
    assert record["outcome"] == "error" and "timeout" in record["error"].lower()
    assert elapsed < 5, f"a 1.5 s budget took {elapsed:.1f} s"


# --- item 6: workers die with their parent; the lock is the writer's alone --------------


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and fields[1] == str(pid):
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"  # a zombie has exited


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_killing_the_parent_ends_its_workers_and_a_rerun_resumes(data, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server = openai_server(latency=0.3).start()
    out = tmp_path / "out"
    model = _model(tmp_path, "openai", server)
    responses = out / "openai-m" / "responses.jsonl"
    args = ["run", "--model", str(model), "-d", str(data), "--out", str(out)]
    with (tmp_path / "stderr.txt").open("wb") as stderr:
        parent = subprocess.Popen(
            [sys.executable, "-m", "holisafe_bench", *args, "--processes", "2"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    workers: list[int] = []
    try:
        written = _wait_for(lambda: responses.exists() and responses.read_bytes().count(b"\n"), 30)
        assert written, (tmp_path / "stderr.txt").read_text()
        workers = _children(parent.pid)
        assert len(workers) >= 2
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_for(lambda: not any(map(_alive, workers)), 5), "workers outlived the parent"
        calls = server.count()
        time.sleep(1.0)
        assert server.count() == calls  # nobody is calling the API any more
        server.latency = 0.0
        res = _run(model, data, out)  # at once: the lock is free
        assert res.exit_code == 0, res.output
    finally:
        for pid in filter(_alive, workers):
            os.kill(pid, signal.SIGKILL)
        server.stop()
    ids = [r["sample_id"] for r in _records(out, "openai")]
    assert len(set(ids)) == 95
    assert {r["outcome"] for r in _records(out, "openai")} == {"ok"}


_FORKING_WRITER = """
import os, sys, time
from pathlib import Path
from holisafe_bench.records import ResponseRecord
from holisafe_bench.store import RecordStore

with RecordStore(Path(sys.argv[1]), ResponseRecord).writer():
    child = os.fork()
    if child == 0:  # a forked helper that outlives its parent
        time.sleep(60)
        os._exit(0)
    print(child, flush=True)
    time.sleep(60)
"""


def test_a_forked_child_never_holds_the_writer_lock(tmp_path, monkeypatch):
    data = write_synthetic(tmp_path / "data", per_cell=1)
    model = tmp_path / "kw.toml"
    model.write_text(
        'name = "kw"\ndisplay_name = "KW"\ngroup = "open-weight"\nprovider = "baseline"\n'
        'checkpoint = "baseline-keyword"\ncheckpoint_note = "test"\n'
    )
    out = tmp_path / "out"
    script = tmp_path / "writer.py"
    script.write_text(_FORKING_WRITER)
    writer = subprocess.Popen(
        [sys.executable, str(script), str(out / "kw" / "responses.jsonl")],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(writer.stdout.readline())
    try:
        res = _run(model, data, out)
        assert res.exit_code != 0 and "being written by process" in str(res.exception)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert _alive(child)  # the forked child lives on...
        res = _run(model, data, out)  # ...and does not hold the writer's lock
        assert res.exit_code == 0, res.output
    finally:
        writer.kill()
        writer.wait()
        if _alive(child):
            os.kill(child, signal.SIGKILL)
    assert len(_records_of(out / "kw")) == 95


def _records_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "responses.jsonl").read_text().splitlines()]
