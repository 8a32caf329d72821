"""Issue 10 item 3: a dataset row can only reach files inside the dataset folder (or the
Hugging Face cache), and an image that does not fully decode is never sent."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.testing.fake_vendors import openai_server

KEY = "sk-test-SECRET-0123456789"
SECRET = b"TOP-SECRET-CONTENT"
runner = CliRunner()


def _valid_jpeg(comment: bytes) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(buf, format="JPEG", comment=comment)
    return buf.getvalue()


def _rows(data):
    return json.loads((data / "holisafe_bench.json").read_text(encoding="utf-8"))


def _save_rows(data, rows) -> None:
    (data / "holisafe_bench.json").write_text(json.dumps(rows), encoding="utf-8")


@pytest.fixture()
def hostile(tmp_path):
    """A synthetic set whose rows 1-5 are hostile; returns (folder, {kind: sample id})."""
    data = write_synthetic(tmp_path / "data", per_cell=1)
    secret = tmp_path / "secret.jpg"  # outside the dataset folder
    secret.write_bytes(_valid_jpeg(comment=SECRET))  # decodes fine: only its place is wrong
    good = data / "images" / _rows(data)[0]["image"]
    truncated = data / "images" / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (data / "images" / "escape.jpg").symlink_to(secret)
    (data / "images" / "inside.jpg").symlink_to(good)  # a symlink that stays inside: fine
    rows = _rows(data)
    edits = {
        "absolute": str(secret),
        "dotdot": "../../secret.jpg",
        "symlink_out": "escape.jpg",
        "truncated": "truncated.jpg",
        "symlink_in": "inside.jpg",
    }
    ids = {}
    for row, (kind, image) in zip(rows[1:], edits.items(), strict=False):
        row["image"] = image
        ids[kind] = row["id"]
    _save_rows(data, rows)
    return data, ids


def test_verify_reports_outside_paths_and_truncated_images(hostile):
    data, ids = hostile
    res = runner.invoke(app, ["data", "verify", "-d", str(data)])
    assert res.exit_code == 1, res.output
    lines = res.output.splitlines()
    for kind in ("absolute", "dotdot", "symlink_out", "truncated"):
        hits = [x for x in lines if f"(id {ids[kind]})" in x]
        assert len(hits) == 1, (kind, res.output)
        assert "holisafe_bench.json row" in hits[0] and "field 'image'" in hits[0], hits[0]
    assert "absolute path" in _line(lines, ids["absolute"])
    assert "outside the dataset folder" in _line(lines, ids["dotdot"])
    assert "outside the dataset folder" in _line(lines, ids["symlink_out"])
    assert "truncated" in _line(lines, ids["truncated"])
    assert f"(id {ids['symlink_in']})" not in res.output
    assert "4 bad" in res.output


def _line(lines, sample_id) -> str:
    return next(x for x in lines if f"(id {sample_id})" in x)


def test_run_never_sends_outside_files_and_fails_only_the_bad_samples(
    hostile, tmp_path, monkeypatch
):
    data, ids = hostile
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server = openai_server().start()
    try:
        model = tmp_path / "api.toml"
        model.write_text(
            'name = "api-model"\ndisplay_name = "API"\ngroup = "closed"\nprovider = "openai"\n'
            'checkpoint = "gpt-x"\ncheckpoint_note = "test"\n[api]\nconcurrency = 4\n'
        )
        out = tmp_path / "results"
        args = ["run", "--model", str(model), "-d", str(data), "--out", str(out)]
        res = runner.invoke(app, [*args, "--base-url", server.base_url + "/v1"])
        assert res.exit_code == 0, res.output
        bodies = [r.body for r in server.log]
    finally:
        server.stop()
    import base64

    leaked = base64.b64encode((tmp_path / "secret.jpg").read_bytes())
    assert bodies and not any(leaked in b or SECRET in b for b in bodies)
    records = {
        r["sample_id"]: r
        for r in map(json.loads, (out / "api-model" / "responses.jsonl").read_text().splitlines())
    }
    # Outside paths are bad rows: skipped, listed in the manifest, never requested.
    for kind in ("absolute", "dotdot", "symlink_out"):
        assert ids[kind] not in records, kind
    manifest = json.loads((out / "api-model" / "run.json").read_text())
    skipped = {(s["id"], s["field"]) for s in manifest["skipped_rows"]}
    assert {(ids[k], "image") for k in ("absolute", "dotdot", "symlink_out")} <= skipped
    # The truncated JPEG is recorded as failed with its reason; every other sample succeeds.
    bad = records.pop(ids["truncated"])
    assert bad["outcome"] == "error" and "truncated" in bad["error"], bad
    assert len(records) == 95 - 4
    assert all(r["outcome"] == "ok" for r in records.values())
    assert len(bodies) == 95 - 4


def test_hub_cache_symlinks_into_blobs_are_allowed(tmp_path, monkeypatch):
    """The hub snapshot layout: snapshots/<rev>/... are symlinks into the cache's blobs/."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    repo = cache / "datasets--etri-vilab--holisafe-bench"
    snapshot = write_synthetic(repo / "snapshots" / "abc123", per_cell=1)
    blobs = repo / "blobs"
    blobs.mkdir()
    for n, image in enumerate(sorted((snapshot / "images").rglob("*.*"))):
        blob = blobs / f"blob{n}"
        image.rename(blob)
        image.symlink_to(os.path.relpath(blob, image.parent))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    res = runner.invoke(app, ["data", "verify", "-d", str(snapshot)])
    assert res.exit_code == 0, res.output
    assert "95 valid, 0 bad" in res.output


def test_each_distinct_image_is_decoded_once_per_process(tmp_path, monkeypatch):
    """The full decode costs milliseconds per photo: verify then run decode each content once."""
    import hashlib

    from holisafe_bench.dataset import validate

    data = write_synthetic(tmp_path / "data", per_cell=1)
    decoded: list[str] = []
    real = validate._full_decode_problem

    def counting(blob: bytes):
        decoded.append(hashlib.sha256(blob).hexdigest())
        return real(blob)

    monkeypatch.setattr(validate, "_DECODE_VERDICTS", {})
    monkeypatch.setattr(validate, "_full_decode_problem", counting)
    model = tmp_path / "kw.toml"
    model.write_text(
        'name = "kw"\ndisplay_name = "KW"\ngroup = "open-weight"\nprovider = "baseline"\n'
        'checkpoint = "baseline-keyword"\ncheckpoint_note = "test"\n'
    )
    assert runner.invoke(app, ["data", "verify", "-d", str(data)]).exit_code == 0
    after_verify = len(decoded)
    res = runner.invoke(
        app, ["run", "--model", str(model), "-d", str(data), "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 0, res.output
    contents = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (data / "images").rglob("*.*")}
    assert sorted(decoded) == sorted(contents)  # every content once, none twice
    assert after_verify == len(contents)  # run reused verify's verdicts
