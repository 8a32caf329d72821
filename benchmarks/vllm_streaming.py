"""vLLM streaming against batch barriers (issue 17): uneven answer lengths through the SAME
engine, once in whole batches (`generate_batch` per 64 requests, each waiting for its
longest answer: today's batch mode) and once streamed (`VllmProvider.stream`: requests
submitted as the engine has room, results as they finish). Interleaved 3x.

Answer lengths are set by max_tokens, drawn per request with a fixed seed: most requests
stop after a few tokens (a refusal), a few run long (a compliance). The tiny checkpoint has
random weights, so it almost never stops on its own: the length is max_tokens.
Target: streaming >= 1.3x the generated tokens per second of batch mode; identical texts.

A tiny random-weight checkpoint on the CPU, so this measures scheduling, not a real model's
compute. Needs the vLLM venv (`bash tests_vllm/run.sh` builds it):

Run: .venv-vllm/bin/python benchmarks/vllm_streaming.py [--n 400] [--batch-size 64]
     [--rounds 3] [--long-share 0.1] [--seed 17]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from holisafe_bench.testing.vllm_env import use_offline_cpu_env  # noqa: E402

use_offline_cpu_env()  # before vLLM is imported


def _requests(data_dir: Path, n: int, spec, long_share: float, seed: int):
    """n requests with images; max_tokens: most 2-12, a `long_share` of them 96-192."""
    from dataclasses import replace

    from holisafe_bench.dataset import load_benchmark
    from holisafe_bench.dataset.synthetic import write_synthetic
    from holisafe_bench.stages.run import RunOptions, build_request

    bench = load_benchmark(write_synthetic(data_dir, n_rows=n, seed=11))
    rng = random.Random(seed)
    out = []
    for sample in bench.samples[:n]:
        request = build_request(sample, bench, spec, RunOptions())
        long = rng.random() < long_share
        max_tokens = rng.randint(96, 192) if long else rng.randint(2, 12)
        out.append(replace(request, max_tokens=max_tokens))
    return out


def _measure(label: str, fn) -> tuple[float, float, dict]:
    started = time.perf_counter()
    results = fn()
    elapsed = time.perf_counter() - started
    ok = sum(r.outcome == "ok" for r in results)
    tokens = sum(r.usage.output_tokens for r in results)
    print(
        f"  {label:<16} {elapsed:7.2f} s  {tokens / elapsed:8.1f} generated tok/s"
        f"  ({tokens} tokens, {ok}/{len(results)} ok)"
    )
    return elapsed, tokens / elapsed, {r.id: r.text for r in results}


def _spec(checkpoint: Path, batch_size: int):
    from holisafe_bench.registry import EngineArgs, ModelSpec

    return ModelSpec(
        name="tiny-llava-vllm",
        display_name="tiny",
        group="open-weight",
        provider="vllm",
        checkpoint=str(checkpoint),
        engine=EngineArgs(
            dtype="float32",
            max_model_len=512,
            limit_mm_per_prompt={"image": 1},
            batch_size=batch_size,
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()

    from holisafe_bench.providers.vllm_provider import VllmProvider
    from holisafe_bench.testing.vllm_checkpoints import build_vllm_llava

    with tempfile.TemporaryDirectory(prefix="vllm-stream-bench-") as tmp:
        root = Path(tmp)
        spec = _spec(build_vllm_llava(root / "model"), args.batch_size)
        requests = _requests(root / "data", args.n, spec, args.long_share, args.seed)
        provider = VllmProvider(spec, enforce_eager=True, seed=0)
        try:
            provider.generate_batch(requests[:4])  # warm-up: first-call allocations
            lengths = sorted(r.max_tokens for r in requests)
            print(
                f"{len(requests)} requests with images; max_tokens median "
                f"{statistics.median(lengths):g}, max {lengths[-1]}, "
                f"{sum(m >= 96 for m in lengths)} long; batch size {args.batch_size}; "
                f"stream window {provider.window} (max_num_seqs "
                f"{provider.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs})"
            )

            def batched():
                out = []
                for i in range(0, len(requests), args.batch_size):
                    out += provider.generate_batch(requests[i : i + args.batch_size])
                return out

            rates: dict[str, list[float]] = {"batch": [], "stream": []}
            walls: dict[str, list[float]] = {"batch": [], "stream": []}
            texts: dict[str, dict] = {}
            for round_no in range(args.rounds):
                print(f"round {round_no + 1}")
                order = ["batch", "stream"] if round_no % 2 == 0 else ["stream", "batch"]
                for mode in order:
                    fn = batched if mode == "batch" else lambda: list(provider.stream(requests))
                    label = "batch-barrier" if mode == "batch" else "streaming"
                    wall, rate, texts[mode] = _measure(label, fn)
                    walls[mode].append(wall)
                    rates[mode].append(rate)
        finally:
            provider.close()
    same = sum(texts["batch"][rid] == text for rid, text in texts["stream"].items())
    ratio = statistics.median(rates["stream"]) / statistics.median(rates["batch"])
    print(
        f"median wall time       batch {statistics.median(walls['batch']):.2f} s, "
        f"streaming {statistics.median(walls['stream']):.2f} s"
    )
    print(f"identical texts        {same}/{len(requests)}")
    print(f"tokens/s ratio         {ratio:8.2f}x  (streaming / batch; target >= 1.3x)")


if __name__ == "__main__":
    main()
