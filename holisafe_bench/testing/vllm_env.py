"""The environment the vLLM tests and benchmarks set before vLLM (or transformers) is
imported: no hub, no telemetry, a small KV cache on the CPU, a spawned engine process.
Variables already set win. Kept free of heavy imports, so it can run first."""

from __future__ import annotations

import os

OFFLINE_CPU = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
    "TOKENIZERS_PARALLELISM": "false",
}


def use_offline_cpu_env() -> None:
    for key, value in OFFLINE_CPU.items():
        os.environ.setdefault(key, value)
