"""`guard --ray`: a classifier guard (the tiny Safe-VLM's safety head) and a generative
zero-shot guard (a baseline) on a local Ray started by the command, against the same guard
run in one process: one verdict per sample, the same verdicts.

Ray listens on its nodes' addresses, so these run only in a private network namespace
(`unshare -n`, which `make test` uses as root); elsewhere they are skipped, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from holisafe_bench.testing.ray_testing import NOT_ISOLATED, loopback_only

pytestmark = pytest.mark.ray
pytest.importorskip("ray", reason="ray is an optional extra: pip install '.[ray]'")
pytest.importorskip("torch", reason="the hf extra (torch) is installed by `make install`")
if not loopback_only():
    pytest.skip(NOT_ISOLATED, allow_module_level=True)

from holisafe_bench.dataset.synthetic import write_synthetic  # noqa: E402
from holisafe_bench.guarding.records import GuardRecord  # noqa: E402
from holisafe_bench.store import RecordStore  # noqa: E402

KW = (
    'name = "kw"\ndisplay_name = "KW"\ngroup = "open-weight"\n'
    'provider = "baseline"\ncheckpoint = "baseline-keyword"\n'
)


def _guard(*args: str, env: dict[str, str] | None = None) -> None:
    cli = [sys.executable, "-c", "from holisafe_bench.cli.main import main; main()", "guard"]
    done = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def _verdicts(root: Path, guard: str, protocol: str) -> dict[int, GuardRecord]:
    path = root / guard / "guard" / f"{protocol}.jsonl"
    ids = [json.loads(line)["sample_id"] for line in path.read_text().splitlines()]
    assert len(ids) == len(set(ids)), "a sample was written twice"
    return RecordStore(path, GuardRecord).read()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("guard-ray") / "data", n_rows=40)


def test_a_safety_head_on_two_replicas_gives_the_verdicts_of_one_process(data, tmp_path):
    common = ["--model", "tiny-safellava-random", "-d", str(data), "--batch-size", "4"]
    _guard(*common, "--results", str(tmp_path / "here"))
    _guard(*common, "--results", str(tmp_path / "ray"), "--ray", "--max-replicas", "2")
    here = _verdicts(tmp_path / "here", "tiny-safellava-random", "image")
    there = _verdicts(tmp_path / "ray", "tiny-safellava-random", "image")
    assert set(here) == set(there) and len(here) == 40
    for sample_id, local in here.items():
        remote = there[sample_id]
        assert remote.outcome == local.outcome == "ok"
        assert (remote.unsafe, remote.predicted_label) == (local.unsafe, local.predicted_label)
        assert remote.score == pytest.approx(local.score, abs=1e-5)
    manifest = json.loads(
        (tmp_path / "ray" / "tiny-safellava-random" / "guard" / "image.json").read_text()
    )
    assert manifest["provider_details"]["ray"]["replicas"] == 2
    assert manifest["provider_details"]["ray"]["method"] == "classify_batch"


def test_a_zero_shot_guard_on_ray_answers_as_in_one_process(data, tmp_path):
    kw = tmp_path / "kw.toml"
    kw.write_text(KW)
    common = ["--model", str(kw), "-d", str(data), "--protocol", "input"]
    _guard(*common, "--results", str(tmp_path / "here"))
    # A bare --ray starts a Ray of its own, even where RAY_ADDRESS names another cluster
    # (here one that does not exist), which ray.init alone would try to join.
    elsewhere = {**os.environ, "RAY_ADDRESS": "127.0.0.1:9"}
    _guard(*common, "--results", str(tmp_path / "ray"), "--ray", env=elsewhere)
    here = _verdicts(tmp_path / "here", "kw", "input")
    there = _verdicts(tmp_path / "ray", "kw", "input")
    assert set(here) == set(there) and len(here) == 40
    assert {i: (r.outcome, r.raw) for i, r in there.items()} == {
        i: (r.outcome, r.raw) for i, r in here.items()
    }
