"""The parts of `run --ray` that need no Ray cluster: the optional-value option, addresses,
replica sizing, refusals and their one-line errors, the missing-package hint, what a
replica is sent, and several --model values without Ray. (The cluster runs are in
test_ray_run.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from holisafe_bench.cli.run_cmds import bare_ray_flag
from holisafe_bench.distributed.ray_cluster import import_ray, parse_address
from holisafe_bench.distributed.ray_pool import forwarded_env, portable
from holisafe_bench.distributed.sizing import plan_replicas
from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.types import ChatRequest, ImageInput
from holisafe_bench.registry import EngineArgs, ModelSpec

BASELINE = (
    'name = "{name}"\ndisplay_name = "KW"\ngroup = "open-weight"\nprovider = "baseline"\n'
    'checkpoint = "baseline-keyword"\n'
)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "holisafe_bench", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def _spec(provider: str = "transformers", tp: int = 1) -> ModelSpec:
    return ModelSpec(
        name="m",
        display_name="M",
        group="open-weight",
        provider=provider,
        checkpoint="org/m" if provider != "baseline" else "baseline-refuse-all",
        engine=EngineArgs(tensor_parallel_size=tp),
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--ray"], ["--ray=local"]),
        (["--ray", "-m", "x"], ["--ray=local", "-m", "x"]),
        (["--ray", "auto", "-m", "x"], ["--ray", "auto", "-m", "x"]),
        (["-m", "x", "--ray", "ray://h:10001"], ["-m", "x", "--ray", "ray://h:10001"]),
        (["--ray=10.0.0.5:6379"], ["--ray=10.0.0.5:6379"]),
        (["--ray-x"], ["--ray-x"]),
    ],
)
def test_a_bare_ray_option_means_a_local_ray(args, expected):
    assert bare_ray_flag(args) == expected


def test_addresses():
    assert parse_address("local") is None and parse_address(None) is None
    assert parse_address("auto") == "auto"
    assert parse_address("ray://head:10001") == "ray://head:10001"
    assert parse_address("10.1.2.3:6379") == "10.1.2.3:6379"
    with pytest.raises(HolisafeError, match="expected no value.*'auto'"):
        parse_address("head")


def test_replicas_on_gpus_reserve_the_tensor_parallel_size():
    nodes = [{"CPU": 32, "GPU": 8}, {"CPU": 32, "GPU": 4}]
    shape = plan_replicas(_spec(tp=4), nodes)
    assert (shape.replicas, shape.num_gpus, shape.num_cpus) == (3, 4, 1)
    assert plan_replicas(_spec(tp=4), nodes, share=2).replicas == 1
    assert plan_replicas(_spec(tp=1), nodes, max_replicas=5).replicas == 5
    assert shape.actor_options()["scheduling_strategy"] == "SPREAD"
    with pytest.raises(HolisafeError, match="tensor_parallel_size 16 needs 16 GPUs on one node"):
        plan_replicas(_spec(tp=16), nodes)


def test_replicas_without_gpus_share_the_cpus():
    nodes = [{"CPU": 2}, {"CPU": 2}]
    assert plan_replicas(_spec(), nodes).replicas == 4
    one = plan_replicas(_spec(), nodes, max_replicas=1)
    assert (one.replicas, one.num_cpus, one.num_gpus) == (1, 2, 0)  # a node's 2 CPUs, not 4
    two_models = plan_replicas(_spec(), nodes, share=2)
    assert (two_models.replicas, two_models.num_cpus) == (2, 1)
    # A baseline needs no GPU, even on a GPU cluster.
    assert plan_replicas(_spec("baseline"), [{"CPU": 4, "GPU": 8}]).num_gpus == 0


def test_api_models_are_refused_in_one_line_before_anything_loads():
    res = _cli("run", "-m", "gpt-4o", "--ray", "-d", "/nonexistent")
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("error: gpt-4o (openai) is an API model")
    assert "rate limit" in line


def test_max_replicas_needs_ray():
    res = _cli("run", "-m", "gpt-4o", "--max-replicas", "2")
    assert res.returncode == 2 and res.stderr.strip() == "error: --max-replicas needs --ray"


def test_help_says_api_models_do_not_run_on_ray_and_imports_no_ray():
    code = (
        "import sys\nfrom holisafe_bench.cli.main import app\n"
        "try:\n    app(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    text = " ".join(out.stdout.split())
    assert "--ray [ADDRESS]" in text and "--max-replicas" in text
    assert "API models are not run on Ray" in text
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_missing_ray_is_a_one_line_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ModuleNotFoundError
    with pytest.raises(HolisafeError) as caught:
        import_ray()
    assert str(caught.value) == "--ray needs the package 'ray': pip install 'holisafe-bench[ray]'"


def test_replicas_get_image_bytes_and_no_secrets(tmp_path, monkeypatch):
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG-bytes")
    request = ChatRequest(
        id="1", text="q", images=(ImageInput(path=image, media_type="image/png"),)
    )
    sent = portable(request)
    assert sent.images[0].data == b"\x89PNG-bytes" and sent.images[0].path is None
    assert sent.images[0].media_type == "image/png" and sent.text == "q"
    monkeypatch.setenv("HOLISAFE_VLLM_MODE", "batch")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOLISAFE_HF_TOKEN", "hf_secret")
    monkeypatch.setenv("VLLM_API_KEY", "secret")
    env = forwarded_env()
    assert env["HOLISAFE_VLLM_MODE"] == "batch" and env["HF_HUB_OFFLINE"] == "1"
    assert "HOLISAFE_HF_TOKEN" not in env and "VLLM_API_KEY" not in env


def test_several_models_without_ray_run_one_after_another(tmp_path):
    for name in ("kw1", "kw2"):
        (tmp_path / f"{name}.toml").write_text(BASELINE.format(name=name))
    out = tmp_path / "results"
    models = ["-m", str(tmp_path / "kw1.toml"), "-m", str(tmp_path / "kw2.toml")]
    res = _cli("run", *models, "-d", "sample", "--results", str(out), "--limit", "7")
    assert res.returncode == 0, res.stderr
    for name in ("kw1", "kw2"):
        lines = (out / name / "responses.jsonl").read_text().splitlines()
        assert len(lines) == 7
        assert json.loads((out / name / "run.json").read_text())["counts"]["selected"] == 7
    twice = _cli("run", *models[:2], *models[:2], "-d", "sample", "--results", str(out))
    assert twice.returncode == 2 and "'kw1' is given twice" in twice.stderr
