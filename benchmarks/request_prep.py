"""Request preparation speed and memory (issue: model adapters): 4,031 samples, each with
its own 1024x768 JPEG file, turned into the exact request bodies the OpenAI, Anthropic and
Gemini providers send (image bytes base64-encoded as they are, never re-encoded).
Target: at least 200 samples/s on 2 cores, memory flat in the number of samples.

Memory is the tracemalloc peak (best of two runs) while preparing the first 500 samples and
while preparing all 4,031: flat means the two peaks are about equal (one request is alive
at a time, whatever the number of samples).

Run: .venv/bin/python benchmarks/request_prep.py
"""

from __future__ import annotations

import base64
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _e2e import with_comment  # noqa: E402

from holisafe_bench.dataset import load_benchmark  # noqa: E402
from holisafe_bench.dataset.synthetic import synthetic_rows  # noqa: E402
from holisafe_bench.registry import ApiSettings, get_model  # noqa: E402
from holisafe_bench.stages.run import RunOptions, build_request  # noqa: E402

N, DISTINCT_PHOTOS = 4031, 40


def _photo(rng: random.Random) -> bytes:
    """A 1024x768 JPEG with photo-like entropy (noise over gradients): about 200 KB."""
    import io

    from PIL import Image

    noise = Image.effect_noise((1024, 768), rng.uniform(30, 60)).convert("RGB")
    gradient = Image.linear_gradient("L").resize((1024, 768)).convert("RGB")
    img = Image.blend(noise, gradient, rng.uniform(0.3, 0.7))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_photo_set(root: Path) -> Path:
    rows, _ = synthetic_rows(n_rows=N)
    rng = random.Random(0)
    photos = [_photo(rng) for _ in range(DISTINCT_PHOTOS)]
    for n, row in enumerate(rows):  # one file and content per sample, as in the real data
        row["image"] = f"photos/{row['id']}.jpg"
        path = root / "images" / row["image"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(with_comment(photos[n % DISTINCT_PHOTOS], f"row {row['id']}"))
    (root / "holisafe_bench.json").write_text(json.dumps(rows), encoding="utf-8")
    return root


def preparers():
    from holisafe_bench.providers.anthropic_provider import AnthropicProvider
    from holisafe_bench.providers.gemini_provider import GeminiProvider
    from holisafe_bench.providers.openai_provider import OpenAIProvider

    api = ApiSettings()
    openai = OpenAIProvider("gpt-4o", api)
    anthropic = AnthropicProvider("claude-sonnet-4-5", api)
    gemini = GeminiProvider("gemini-2.5-flash", api)

    return {
        "openai": lambda r: json.dumps(openai.payload(r)),
        "anthropic": lambda r: json.dumps(anthropic.payload(r)),
        "gemini": lambda r: json.dumps(gemini.rest_body(r)),
    }


def measure(bench, samples, prepare) -> tuple[float, int, int]:
    spec = get_model("gpt-4o")
    options = RunOptions()
    tracemalloc.start()
    started = time.perf_counter()
    total_bytes = 0
    for sample in samples:
        body = prepare(build_request(sample, bench, spec, options))
        total_bytes += len(body)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak, total_bytes


def main() -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        os.environ.setdefault(name, "bench-key-0000000000")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"writing {N} samples with 1024x768 JPEG files ...")
        bench = load_benchmark(write_photo_set(Path(tmp)))
        first = bench.samples[0]
        size = len(bench.image_bytes(first))
        print(f"{len(bench.samples)} samples, JPEG size about {size / 1000:.0f} KB")
        for vendor, prepare in preparers().items():
            body = prepare(build_request(first, bench, get_model("gpt-4o"), RunOptions()))
            assert base64.b64encode(bench.image_bytes(first)).decode() in body, (
                f"{vendor}: the image was re-encoded"
            )
            measure(bench, bench.samples[:50], prepare)  # warm the file cache
            # Best of two: a collector pass landing late can keep one extra body alive.
            small_peak = min(measure(bench, bench.samples[:500], prepare)[1] for _ in range(2))
            runs = [measure(bench, bench.samples, prepare) for _ in range(2)]
            elapsed, sent = min(r[0] for r in runs), runs[0][2]
            peak = min(r[1] for r in runs)
            rate = len(bench.samples) / elapsed
            print(
                f"{vendor:9s}: {rate:7.0f} samples/s (target >= 200: "
                f"{'met' if rate >= 200 else 'NOT met'}); {sent / 1e6:.0f} MB of bodies; "
                f"peak traced memory {small_peak / 1e6:.1f} MB for 500 samples, "
                f"{peak / 1e6:.1f} MB for {len(bench.samples)} -> ratio {peak / small_peak:.2f} "
                f"(flat: {'yes' if peak / small_peak < 1.2 else 'NO'})"
            )


if __name__ == "__main__":
    main()
