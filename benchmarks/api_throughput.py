"""`holisafe-bench run` end to end against a bare HTTP client, side by side (issue 15).

4,031 samples (each row its own JPEG file: 1024x768 ~280 KB, or 96x72), concurrency 64, a
fake OpenAI server with 200 ms latency in its own process. Each measurement is a whole
process, start to exit: `holisafe-bench run --model gpt-4o --base-url <fake>` (loading the
dataset, building requests, the OpenAI SDK, writing responses.jsonl and run.json; default
--processes: workers only if one process is found CPU-bound), and the bare client of
benchmarks/_e2e.py (same files, same JSON bodies, httpx2 at the same concurrency). The two
alternate, `--repeat` times; medians. CPU = user+sys of the whole process tree.
Targets: harness wall <= 1.15x the bare client's, CPU < 2 ms per request, both sizes.

Run: .venv/bin/python benchmarks/api_throughput.py [--n 4031] [--repeat 3]
     [--sizes 1024x768 96x72] [--keep DIR]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from _e2e import (
    CLI,
    SIZES,
    FakeOpenAI,
    bare_cmd,
    bench_env,
    mean_image_kb,
    summarize,
    timed,
    write_dataset,
)

CONCURRENCY, LATENCY = 64, 0.2


def measure(
    size: str, data: Path, work: Path, n: int, repeat: int, env: dict, extra: list[str]
) -> None:
    fake = FakeOpenAI(LATENCY, "I cannot help with that request.")
    harness: tuple[list[float], list[float]] = ([], [])
    bare: tuple[list[float], list[float]] = ([], [])
    run = [*CLI, "run", "--model", "gpt-4o", "--dataset", str(data), "--results", str(work)]
    run += ["--concurrency", str(CONCURRENCY), "--base-url", fake.url, "--overwrite", *extra]
    for _ in range(repeat):
        for sink, cmd in (
            (harness, run),
            (bare, bare_cmd("run", data, fake.url, CONCURRENCY, work / "bare.jsonl")),
        ):
            wall, cpu = timed(cmd, env)
            sink[0].append(wall)
            sink[1].append(cpu)
    calls = fake.finish()
    lines = (work / "gpt-4o" / "responses.jsonl").read_bytes().count(b"\n")
    floor = math.ceil(n / CONCURRENCY) * LATENCY
    print(f"{size} ({mean_image_kb(data):.0f} KB JPEGs), {n} requests, floor {floor:.2f} s:")
    h_wall, h_cpu = summarize("holisafe-bench", *harness, n)
    b_wall, _ = summarize("bare httpx2", *bare, n)
    ratio = h_wall / b_wall
    cpu_ms = h_cpu / n * 1000
    print(
        f"  ratio {ratio:.3f} (target <= 1.15: {'met' if ratio <= 1.15 else 'NOT met'}); "
        f"CPU {cpu_ms:.2f} ms/request (target < 2: {'met' if cpu_ms < 2 else 'NOT met'}); "
        f"vs floor {h_wall / floor:.2f}x / {b_wall / floor:.2f}x; "
        f"server answered {calls}, last run wrote {lines} responses"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4031)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument(
        "--harness-args", default="", help="extra `run` options, quoted (default: none)"
    )
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the datasets here")
    args = parser.parse_args()
    env = bench_env()
    # Once untimed: the bytecode cache and the page cache, as on any second run.
    timed([*CLI, "--help"], env)
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        for size in args.sizes:
            data = write_dataset(base / f"data-{size}-{args.n}", args.n, size)
            work = Path(tmp) / f"results-{size}"
            work.mkdir()
            measure(size, data, work, args.n, args.repeat, env, args.harness_args.split())


if __name__ == "__main__":
    main()
