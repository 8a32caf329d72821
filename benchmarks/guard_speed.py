"""Guard classification speed (issue 13): a Safe-VLM's visual guard module read batched (one
forward pass with do_safety=True per batch, no generation) against one sample at a time,
on the same tiny random-weight SafeLLaVA-shaped checkpoint (remote code, llava_v1 prompt,
loaded as `guard` loads it), over the same samples, for a few rounds (which side goes
first alternates); wall time of each, the ratio, the time inside forward passes alone,
and how closely the two agree (largest difference of any probability, and the share of
samples whose argmax category is the same).

The batched side is the guard stage's own driver (`classify_pipelined`; on the CPU each
batch is prepared just before its forward pass, because a thread preparing the next one
made the forward passes slower than the preparing saved); the other side is the minimal
loop, `classify_batch` on one request at a time. Both include what a guard run pays per
sample besides the forward pass (decoding the image, padding it to a square,
CLIP preprocessing, tokenising the prompt). The tiny model runs in float32 by default:
half precision on a CPU has no fast matrix kernels, so every matrix product costs in
proportion to its size and batching saves little there; on a GPU the Safe-VLMs run in
float16, where a forward pass of one sample leaves the device mostly idle and batching
saves far more than here. Torch's own thread count by default, as `guard` runs (it sets
none); `--threads 1` shows the forward passes on one core.

Run: .venv/bin/python benchmarks/guard_speed.py [--n 256] [--batch-size 32] [--rounds 3]
     [--dtype float32] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _classifier(folder: Path, dtype: str, batch_size: int):
    from holisafe_bench.providers.safety_head import SafetyHeadClassifier
    from holisafe_bench.registry import EngineArgs, ModelSpec

    spec = ModelSpec(
        name="tiny-safellava",
        display_name="Tiny SafeLLaVA",
        group="safety-tuned",
        provider="transformers",
        checkpoint=str(folder),
        engine=EngineArgs(
            trust_remote_code=True,
            dtype=dtype,
            auto_class="AutoModelForCausalLM",
            conversation_template="llava_v1",
            mm_processor_kwargs={"image_aspect_ratio": "pad"},
        ),
    )
    return SafetyHeadClassifier(spec, batch_size=batch_size)


def _requests(root: Path, n: int):
    """n samples of the synthetic set (96x72 PNGs), each image with its query, as the
    `input` protocol sends them."""
    from holisafe_bench.dataset import load_benchmark
    from holisafe_bench.dataset.synthetic import write_synthetic
    from holisafe_bench.providers.types import ChatRequest

    bench = load_benchmark(str(write_synthetic(root, n_rows=n)))
    return [
        ChatRequest(id=str(s.id), text=s.query, images=(bench.image(s),)) for s in bench.samples[:n]
    ]


class ForwardClock:
    """Seconds spent inside the model's top-level forward passes, and how many there were."""

    def __init__(self, model) -> None:
        self.seconds, self.calls, self._started = 0.0, 0, 0.0
        model.register_forward_pre_hook(self._start)
        model.register_forward_hook(self._stop)

    def _start(self, *_) -> None:
        self._started = time.perf_counter()

    def _stop(self, *_) -> None:
        self.seconds += time.perf_counter() - self._started
        self.calls += 1


@dataclass
class Side:
    """One way of classifying, with its totals over a round."""

    label: str
    classify: Callable[[list], list]
    seconds: float = 0.0
    forward_seconds: float = 0.0
    forward_calls: int = 0
    results: list = field(default_factory=list)

    def run(self, chunk: list, clock: ForwardClock) -> None:
        seconds, calls = clock.seconds, clock.calls
        started = time.perf_counter()
        self.results += self.classify(chunk)
        self.seconds += time.perf_counter() - started
        self.forward_seconds += clock.seconds - seconds
        self.forward_calls += clock.calls - calls

    def report(self) -> None:
        n = len(self.results)
        ok = sum(r.probs is not None for r in self.results)
        print(
            f"  {self.label:<11} {self.seconds:7.3f} s ({self.seconds / n * 1000:6.2f} ms/sample, "
            f"{ok}/{n} ok; {self.forward_calls} forward passes, "
            f"{self.forward_seconds:.3f} s in them)"
        )


def _round(
    classifier, requests: list, size: int, clock: ForwardClock, first: int
) -> tuple[Side, Side]:
    """Both ways over the same samples, one after the other (which goes first alternates
    between rounds). Batched is what `guard` does: batches of `size` through
    stages/guard.py's classify_pipelined; one by one is the minimal loop, a forward pass
    per sample."""
    from holisafe_bench.stages.guard import classify_pipelined

    def batched_run(chunk: list) -> list:
        batches = ([(None, r) for r in chunk[i : i + size]] for i in range(0, len(chunk), size))
        return [res for _, results in classify_pipelined(classifier, batches) for res in results]

    batched = Side("batched", batched_run)
    single = Side("one by one", lambda chunk: [classifier.classify_batch([r])[0] for r in chunk])
    for side in (batched, single) if first == 0 else (single, batched):
        side.run(requests, clock)
    batched.report()
    single.report()
    return batched, single


def _agreement(batched: list, single: list) -> tuple[float, float]:
    """(largest |difference| of any probability, share of samples with the same argmax)."""
    worst, same = 0.0, 0
    for a, b in zip(batched, single, strict=True):
        worst = max(worst, *(abs(a.probs[k] - b.probs[k]) for k in a.probs))
        same += max(a.probs, key=a.probs.get) == max(b.probs, key=b.probs.get)
    return worst, same / len(batched)


def main() -> None:
    import torch

    from holisafe_bench.testing.tiny_safe_vlm import build_tiny_safellava

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own, as guard)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="guard-speed-"))
    classifier = _classifier(build_tiny_safellava(root / "tiny"), args.dtype, args.batch_size)
    requests = _requests(root / "data", args.n)
    print(
        f"{len(requests)} samples, batches of {args.batch_size}, {args.dtype}, "
        f"{torch.get_num_threads()} torch threads"
    )
    classifier.classify_batch(requests[: args.batch_size])  # warm-up
    for request in requests[:4]:
        classifier.classify_batch([request])
    clock = ForwardClock(classifier.model)
    rounds = []
    for n in range(args.rounds):
        print(f"round {n + 1}")
        rounds.append(_round(classifier, requests, args.batch_size, clock, n % 2))
    fast, slow = (statistics.median(r[i].seconds for r in rounds) for i in (0, 1))
    print(f"median: batched {fast:.3f} s, one by one {slow:.3f} s, speed-up {slow / fast:.2f}x")
    fast, slow = (statistics.median(r[i].forward_seconds for r in rounds) for i in (0, 1))
    print(
        f"forward passes alone: batched {fast:.3f} s, one by one {slow:.3f} s, "
        f"{slow / fast:.2f}x (the rest is per-sample work: image decoding, CLIP "
        "preprocessing, tokenising)"
    )
    batched, single = (side.results for side in rounds[-1])
    worst, same = _agreement(batched, single)
    print(f"agreement: largest probability difference {worst:.2e}, same argmax {same:.1%}")
    if worst > 1e-3:
        sys.exit(1)


if __name__ == "__main__":
    main()
