"""The guard stage end to end through the CLI (issue 13): a guard TOML whose safety head is
the tiny SafeLLaVA-shaped checkpoint's (remote code loaded with trust_remote_code from a
local folder, as `run` loads it), over the bundled sample. One verdict per sample read
from the head's probabilities; a re-run makes no forward pass; a run killed with SIGKILL
and re-run ends with exactly one verdict per sample; the input protocol's ground truth;
an unreadable image fails its own sample alone."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.taxonomy import IMAGE_SAFETY_LABELS, SAFE_TYPE

pytest.importorskip("torch", reason="the hf extra (torch) is installed by `make install`")

runner = CliRunner()
GUARD = "tiny-guard"

MODEL_TOML = """name = "tiny-safellava"
display_name = "Tiny SafeLLaVA"
group = "safety-tuned"
provider = "transformers"
checkpoint = "{checkpoint}"
checkpoint_note = "test"

[engine]
trust_remote_code = true
dtype = "float16"
auto_class = "AutoModelForCausalLM"
conversation_template = "llava_v1"
mm_processor_kwargs = {{ image_aspect_ratio = "pad" }}
"""
# The model file is named relative to the guard file, as a guard file beside it would.
GUARD_TOML = f"""name = "{GUARD}"
display_name = "Tiny SafeLLaVA's safety head"
kind = "safety_head"
model = "tiny-safellava.toml"
parser = "safety_head"
taxonomy = "holisafe"
protocols = ["image", "input"]
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def guard_file(tmp_path_factory):
    from holisafe_bench.testing.tiny_safe_vlm import build_tiny_safellava

    folder = tmp_path_factory.mktemp("guard")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        checkpoint = build_tiny_safellava(folder / "checkpoint")
    (folder / "tiny-safellava.toml").write_text(MODEL_TOML.format(checkpoint=checkpoint))
    (folder / "guard.toml").write_text(GUARD_TOML)
    return folder / "guard.toml"


@pytest.fixture()
def forwards(monkeypatch):
    """The batch size of every forward pass of the guard's model in this process."""
    from holisafe_bench.providers import transformers_provider

    sizes: list[int] = []
    real_load = transformers_provider.load_model

    def load_and_count(*args, **kwargs):
        model, auto_class = real_load(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda module, a, kw: sizes.append(len(kw["input_ids"])), with_kwargs=True
        )
        return model, auto_class

    monkeypatch.setattr(transformers_provider, "load_model", load_and_count)
    return sizes


def _guard(guard_file, results, *extra, dataset="sample"):
    args = ["guard", "--model", str(guard_file), "-d", str(dataset), "--results", str(results)]
    return runner.invoke(app, [*args, *extra])


def _records(results, protocol="image") -> list[dict]:
    path = results / GUARD / "guard" / f"{protocol}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _samples(dataset="sample"):
    from holisafe_bench.dataset import load_benchmark

    return {s.id: s for s in load_benchmark(str(dataset)).samples}


def test_one_verdict_per_sample_read_from_the_head_and_a_rerun_makes_no_forward_pass(
    guard_file, tmp_path, forwards
):
    results = tmp_path / "results"
    first = _guard(guard_file, results, "--batch-size", "16")
    assert first.exit_code == 0, first.output
    assert forwards == [16] * 5 + [15], "one forward pass per batch of 16, 95 samples"

    samples = _samples()
    records = _records(results)
    assert sorted(r["sample_id"] for r in records) == sorted(samples)
    for rec in records:
        sample = samples[rec["sample_id"]]
        probs = rec["probs"]
        assert rec["outcome"] == "ok" and list(probs) == list(IMAGE_SAFETY_LABELS)
        assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-4)
        top = max(probs, key=probs.get)
        assert rec["score"] == pytest.approx(1.0 - probs["safe"], abs=1e-9)
        assert rec["category_raw"] == rec["predicted_label"] == top
        assert rec["unsafe"] is (top != "safe")
        assert rec["truth_unsafe"] is (not sample.image_safe)
        assert rec["truth_label"] == IMAGE_SAFETY_LABELS[sample.image_safety_label]
    predicted = {r["unsafe"] for r in records}
    assert predicted == {True, False}, "the tiny head says safe for some images, not all"

    manifest = json.loads((results / GUARD / "guard" / "image.json").read_text())
    assert manifest["counts"]["ok"] == 95 and manifest["counts"]["missing"] == 0
    assert manifest["kind"] == "safety_head" and manifest["parser"] == "safety_head"
    details = manifest["provider_details"]
    assert details["classifier"] == "safety_head"
    assert details["safety_categories"] == list(IMAGE_SAFETY_LABELS)
    assert details["conversation_template"] == "llava_v1"

    before = (results / GUARD / "guard" / "image.jsonl").read_bytes()
    again = _guard(guard_file, results, "--batch-size", "16")
    assert again.exit_code == 0, again.output
    assert len(forwards) == 6, "the re-run made no forward pass"
    assert "95 already done, 0 attempted" in again.output
    assert (results / GUARD / "guard" / "image.jsonl").read_bytes() == before


def test_the_input_protocol_scores_the_request_sss_safe(guard_file, tmp_path, forwards):
    results = tmp_path / "results"
    outcome = _guard(guard_file, results, "--protocol", "input")
    assert outcome.exit_code == 0, outcome.output
    samples = _samples()
    records = _records(results, "input")
    assert sorted(r["sample_id"] for r in records) == sorted(samples)
    assert all(r["protocol"] == "input" and r["outcome"] == "ok" for r in records)
    for rec in records:
        assert rec["truth_unsafe"] is (samples[rec["sample_id"]].type != SAFE_TYPE)
    assert sum(r["truth_unsafe"] for r in records) == 76  # 4 of the 5 types, 19 each
    assert not (results / GUARD / "guard" / "image.jsonl").exists()
    assert sum(forwards) == 95


def test_an_unreadable_image_is_an_error_for_its_samples_alone(guard_file, tmp_path, forwards):
    """A truncated image: an error for the samples that use it (redone on the next run),
    while the others share their forward passes as usual."""
    from holisafe_bench.dataset.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "data", per_cell=1)
    first = _samples(data)
    chosen = list(first)[:12]  # --limit keeps the first 12 in the dataset's order
    broken_image = first[chosen[3]].image
    # Truncated: the header still reads (so loading keeps the row), the pixels do not.
    path = data / "images" / broken_image
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    broken = {i for i in chosen if first[i].image == broken_image}

    results = tmp_path / "results"
    run = _guard(guard_file, results, "--limit", "12", "--batch-size", "6", dataset=data)
    assert run.exit_code == 0, run.output
    records = {r["sample_id"]: r for r in _records(results)}
    assert sorted(records) == sorted(chosen)
    errors = {i for i, r in records.items() if r["outcome"] == "error"}
    assert errors == broken
    assert all("truncated" in records[i]["reason"] for i in errors)
    assert all(records[i]["outcome"] == "ok" for i in set(chosen) - broken)
    assert sum(forwards) == 12 - len(broken), "the other samples all went through the head"

    again = _guard(guard_file, results, "--limit", "12", dataset=data)
    assert again.exit_code == 0, again.output
    assert f"{12 - len(broken)} already done, {len(broken)} attempted" in again.output


DRIVER = textwrap.dedent(
    """
    import sys, time
    from holisafe_bench.providers import transformers_provider

    real_load = transformers_provider.load_model

    def slow_load(*args, **kwargs):
        model, auto_class = real_load(*args, **kwargs)
        # Slow each forward pass down so the kill lands mid-run.
        model.register_forward_pre_hook(lambda *a: time.sleep(0.4))
        return model, auto_class

    transformers_provider.load_model = slow_load
    from holisafe_bench.cli.main import main

    sys.argv = ["holisafe-bench", *sys.argv[1:]]
    main()
    """
)


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_leaves_one_verdict_per_sample(guard_file, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    results = tmp_path / "results"
    verdicts = results / GUARD / "guard" / "image.jsonl"
    args = ["guard", "--model", str(guard_file), "-d", "sample", "--results", str(results)]
    proc = subprocess.Popen(
        [sys.executable, str(driver), *args, "--batch-size", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 240
    while _lines(verdicts) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done_before = _lines(verdicts)
    assert 8 <= done_before < 95, "the kill landed mid-run"

    rerun = _guard(guard_file, results)
    assert rerun.exit_code == 0, rerun.output
    assert f"{done_before} already done, {95 - done_before} attempted" in rerun.output
    raw = verdicts.read_bytes()
    assert raw.endswith(b"\n"), "no torn last line"
    ids = [json.loads(line)["sample_id"] for line in raw.splitlines()]
    assert sorted(ids) == sorted(_samples()), "exactly one verdict per sample"


def _lines(path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


SHIELDGEMMA_TOML = """name = "tiny-shieldgemma"
display_name = "Tiny ShieldGemma 2"
kind = "policy_probs"
provider = "transformers"
checkpoint = "{checkpoint}"
parser = "shieldgemma"
taxonomy = "shieldgemma"
protocols = ["image"]

[engine]
dtype = "float32"
"""


def test_shieldgemma_guard_end_to_end_on_a_tiny_checkpoint(tmp_path):
    from holisafe_bench.guarding.taxonomy_maps import load_taxonomy
    from holisafe_bench.testing.tiny_shieldgemma import build_tiny_shieldgemma

    checkpoint = build_tiny_shieldgemma(tmp_path / "tiny-shieldgemma")
    guard = tmp_path / "shieldgemma.toml"
    guard.write_text(SHIELDGEMMA_TOML.format(checkpoint=checkpoint))
    results = tmp_path / "results"
    args = ["guard", "--model", str(guard), "-d", "sample", "--results", str(results)]
    outcome = runner.invoke(app, [*args, "--limit", "10"])
    assert outcome.exit_code == 0, outcome.output
    lines = (results / "tiny-shieldgemma" / "guard" / "image.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 10 and {r["outcome"] for r in records} == {"ok"}
    mapping = load_taxonomy("shieldgemma")
    for rec in records:
        probs = rec["probs"]
        assert list(probs) == ["dangerous", "sexual", "violence"]
        assert all(0.0 < p < 1.0 for p in probs.values())
        top = max(probs, key=probs.get)
        assert rec["score"] == pytest.approx(probs[top])
        assert rec["unsafe"] is (probs[top] > 0.5) and rec["category_raw"] == top
        assert rec["predicted_label"] == (mapping[top] if rec["unsafe"] else "safe")
    manifest = json.loads((results / "tiny-shieldgemma" / "guard" / "image.json").read_text())
    assert manifest["provider_details"]["policies"] == ["dangerous", "sexual", "violence"]
    refused = runner.invoke(app, [*args, "--protocol", "input"])
    assert refused.exit_code != 0 and "takes only --protocol image" in str(refused.exception)
