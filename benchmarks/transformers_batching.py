"""Transformers batching (issue 17, item 3): requests with very uneven prompt lengths to the
tiny random-weight LLaVA, in today's order (`generate_batch` per batch, in request order:
each batch padded to its longest prompt) and through `TransformersProvider.stream` (a
window of 4 batches ordered by prompt length, then cut into batches). Same batch size,
same max_tokens, greedy, interleaved 3x; wall time, the ratio, prompt padding tokens, and
a check that every request's text is identical in both orders.

The tiny model has random weights and almost never stops on its own, so every answer runs
to max_tokens: this measures what ordering by prompt length saves (prefill and attention
over padding), not early stopping. A CPU run; on a GPU the saving scales with how much of
a batch's compute is padding (prefill of long padded prompts, attention over them at every
decoding step).

Run: .venv/bin/python benchmarks/transformers_batching.py [--n 128] [--batch-size 16]
     [--max-tokens 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS_TEXT = (
    "what shape colour word picture describe this image the a is in on red green blue "
    "circle square triangle answer question please how many shapes see you it that with"
)
WORDS = WORDS_TEXT.split(" ")


def _requests(n: int, max_tokens: int):
    """n requests, prompts of 1 to ~300 words in a shuffled (seeded) order, each with an
    image."""
    import random

    from PIL import Image

    from holisafe_bench.providers.types import ChatRequest, ImageInput

    rng = random.Random(17)
    out = []
    for i in range(n):
        words = rng.choice((rng.randint(1, 20), rng.randint(1, 300)))
        text = " ".join(rng.choice(WORDS) for _ in range(words))
        buf = io.BytesIO()
        Image.new("RGB", (48 + i % 5 * 8, 40), ("red", "blue", "green")[i % 3]).save(buf, "PNG")
        image = ImageInput(data=buf.getvalue(), media_type="image/png")
        out.append(ChatRequest(id=f"r{i}", text=text, images=(image,), max_tokens=max_tokens))
    return out


def _provider(batch_size: int):
    from holisafe_bench.providers.transformers_provider import TransformersProvider
    from holisafe_bench.testing.tiny_models import build_tiny_llava, tiny_transformers_spec

    folder = build_tiny_llava(Path(tempfile.mkdtemp(prefix="tiny-llava-")) / "m")
    return TransformersProvider(tiny_transformers_spec(folder, batch_size=batch_size))


def _padding(provider, requests, batch_size: int, sort: bool) -> tuple[int, int]:
    """(prompt padding tokens, prompt tokens) over the batches that order makes."""
    from holisafe_bench.providers.transformers_provider import pil_images

    lengths = [
        provider.inputs.length((r, provider.inputs.prompt(r), pil_images(r))) for r in requests
    ]
    window = provider.window_batches * batch_size
    batches = []
    for start in range(0, len(lengths), window):
        chunk = lengths[start : start + window]
        chunk = sorted(chunk) if sort else chunk
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return sum(max(b) * len(b) - sum(b) for b in batches), sum(lengths)


def _old_order(provider, requests, batch_size: int):
    out = []
    for i in range(0, len(requests), batch_size):
        out += provider.generate_batch(requests[i : i + batch_size])
    return out


def _measure(label: str, fn) -> tuple[float, dict]:
    started = time.perf_counter()
    results = fn()
    elapsed = time.perf_counter() - started
    ok = sum(r.outcome == "ok" for r in results)
    tokens = sum(r.usage.output_tokens for r in results)
    print(f"  {label:<12} {elapsed:7.2f} s  ({tokens} generated tokens, {ok}/{len(results)} ok)")
    return elapsed, {r.id: r.text for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    provider = _provider(args.batch_size)
    requests = _requests(args.n, args.max_tokens)
    for sort in (False, True):
        pad, total = _padding(provider, requests, args.batch_size, sort)
        print(f"{'sorted' if sort else 'old order'}: {pad} prompt padding tokens ({total} real)")
    _old_order(provider, requests, args.batch_size)  # warm-up: first-call allocations
    list(provider.stream(requests))
    times: dict[str, list[float]] = {"old order": [], "sorted": []}
    texts: dict[str, dict] = {}
    for n in range(args.rounds):
        print(f"round {n + 1}")
        elapsed, texts["old order"] = _measure(
            "old order", lambda: _old_order(provider, requests, args.batch_size)
        )
        times["old order"].append(elapsed)
        elapsed, texts["sorted"] = _measure("sorted", lambda: list(provider.stream(requests)))
        times["sorted"].append(elapsed)
    old, new = (statistics.median(times[k]) for k in ("old order", "sorted"))
    print(f"median: old order {old:.2f} s, sorted {new:.2f} s, speed-up {old / new:.2f}x")
    same = texts["old order"] == texts["sorted"]
    print(f"identical texts for all {len(requests)} requests: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
