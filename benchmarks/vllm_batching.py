"""vLLM batching: the synthetic set through `VllmProvider.generate_batch` in whole batches
(one LLM.chat call each) against a one-prompt-at-a-time loop over the SAME engine.
Target (issue: vLLM provider): batched at least 5x faster.

A tiny random-weight checkpoint on the CPU, so this measures the provider and the engine's
scheduling, not a real model's compute. Needs the vLLM venv (`bash tests_vllm/run.sh` builds it):

Run: .venv-vllm/bin/python benchmarks/vllm_batching.py [--n 300] [--batch-size 64]
     [--max-tokens 16] [--model llava|qwen2_vl]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from holisafe_bench.testing.vllm_env import use_offline_cpu_env  # noqa: E402

use_offline_cpu_env()  # before vLLM is imported


def _requests(data_dir: Path, n: int, max_tokens: int, spec):
    from holisafe_bench.dataset import load_benchmark
    from holisafe_bench.dataset.synthetic import write_synthetic
    from holisafe_bench.stages.run import RunOptions, build_request

    bench = load_benchmark(write_synthetic(data_dir, n_rows=n, seed=11))
    options = RunOptions(max_tokens=max_tokens)
    return [build_request(s, bench, spec, options) for s in bench.samples]


def _timed(label: str, fn):
    started = time.perf_counter()
    results = fn()
    elapsed = time.perf_counter() - started
    ok = sum(r.outcome == "ok" for r in results)
    tokens = sum(r.usage.output_tokens for r in results)
    print(f"{label:<22} {elapsed:8.2f} s  {ok}/{len(results)} ok  {tokens} output tokens")
    return elapsed, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="samples (each with an image)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", choices=["llava", "qwen2_vl"], default="llava")
    args = parser.parse_args()

    from holisafe_bench.providers.vllm_provider import VllmProvider
    from holisafe_bench.registry import EngineArgs, ModelSpec
    from holisafe_bench.testing.vllm_checkpoints import build_tiny_qwen2_vl, build_vllm_llava

    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as tmp:
        root = Path(tmp)
        build = build_vllm_llava if args.model == "llava" else build_tiny_qwen2_vl
        checkpoint = build(root / "model")
        limits = {"image": 1} if args.model == "llava" else {"image": 1, "video": 0}
        spec = ModelSpec(
            name=f"tiny-{args.model}-vllm",
            display_name="tiny",
            group="open-weight",
            provider="vllm",
            checkpoint=str(checkpoint),
            engine=EngineArgs(
                dtype="float32",
                max_model_len=512,
                limit_mm_per_prompt=limits,
                batch_size=args.batch_size,
            ),
        )
        requests = _requests(root / "data", args.n, args.max_tokens, spec)
        started = time.perf_counter()
        provider = VllmProvider(spec, enforce_eager=True, seed=0)
        print(f"engine start           {time.perf_counter() - started:8.2f} s")
        try:
            provider.generate_batch(requests[:4])  # warm-up: first-call allocations

            def batched():
                out = []
                for i in range(0, len(requests), args.batch_size):
                    out += provider.generate_batch(requests[i : i + args.batch_size])
                return out

            def one_at_a_time():
                return [provider.generate_batch([r])[0] for r in requests]

            print(
                f"{len(requests)} samples with images, model {args.model}, "
                f"max_tokens {args.max_tokens}, batch size {args.batch_size}"
            )
            t_batch, res_batch = _timed("batched", batched)
            t_single, res_single = _timed("one prompt at a time", one_at_a_time)
        finally:
            provider.close()
    same = sum(a.text == b.text for a, b in zip(res_batch, res_single, strict=True))
    print(f"same text both ways    {same}/{len(requests)}")
    print(f"speed-up               {t_single / t_batch:8.1f}x  (target >= 5x)")


if __name__ == "__main__":
    main()
