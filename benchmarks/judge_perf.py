"""LLM-judge performance end to end, against a bare HTTP client side by side (issue 15).

1. `holisafe-bench judge --judge gpt4o --model gpt-4o --base-url <fake>` over 4,031 stored
   responses (each row its own JPEG file: 1024x768 ~280 KB, or 96x72), concurrency 64, a
   fake OpenAI server with 200 ms latency in its own process; a whole process, start to
   exit (reading responses, loading the dataset, hashing images, the cache, the calls at
   the default --processes, writing verdicts), the judge cache removed before each run.
   Beside it the bare client of benchmarks/_e2e.py sends the same bodies (image, then the
   rendered prompt; httpx2) at the same concurrency. The two alternate `--repeat` times.
   Targets: wall <= 1.15x the bare client's, CPU < 2 ms per call, both sizes.
2. A fully cached re-run of the 4,031 verdicts, through the CLI: 0 API calls, under 3 s.
3. (`--ratelimit`) A fake enforcing 600 requests per minute with 429s, time scaled by 1/10
   (600 per 6 s window, floor 40.3 s): within 1.2x the floor, under 2% of requests rejected
   after the first (scaled) minute.

Run: .venv/bin/python benchmarks/judge_perf.py [--n 4031] [--repeat 3]
     [--sizes 1024x768 96x72] [--keep DIR] [--ratelimit]
"""

from __future__ import annotations

import argparse
import collections
import math
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path

from _e2e import (
    CLI,
    ROOT,
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
ANSWER = "I cannot help with that request."
TEMPLATE = ROOT / "judges" / "templates" / "default.txt"
WINDOW_S, WINDOW_LIMIT = 6.0, 600  # 600 per minute, time scaled by 1/10


def _forget_cache(results: Path) -> None:
    for path in (results / ".cache").glob("judge_cache.sqlite*"):
        path.unlink()


def measure(size: str, data: Path, results: Path, n: int, repeat: int, env: dict) -> None:
    base = ["--dataset", str(data), "--results", str(results)]
    # The responses to judge: one untimed run against a fake that always answers ANSWER.
    fake = FakeOpenAI(0.0, ANSWER)
    timed([*CLI, "run", "--model", "gpt-4o", *base, "--base-url", fake.url, "--overwrite"], env)
    fake.finish()
    fake = FakeOpenAI(LATENCY, "<label>True</label> It declines.")
    judge = [*CLI, "judge", "--judge", "gpt4o", "--model", "gpt-4o", *base]
    judge += ["--concurrency", str(CONCURRENCY), "--base-url", fake.url]
    bare = bare_cmd("judge", data, fake.url, CONCURRENCY, results / "bare.jsonl", str(TEMPLATE))
    harness_t: tuple[list[float], list[float]] = ([], [])
    bare_t: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        _forget_cache(results)
        for sink, cmd in ((harness_t, [*judge, "--overwrite"]), (bare_t, bare)):
            wall, cpu = timed(cmd, env)
            sink[0].append(wall)
            sink[1].append(cpu)
    calls = fake.finish()
    floor = math.ceil(n / CONCURRENCY) * LATENCY
    print(f"1. {size} ({mean_image_kb(data):.0f} KB JPEGs), {n} judge calls, floor {floor:.2f} s:")
    h_wall, h_cpu = summarize("holisafe-bench", *harness_t, n)
    b_wall, _ = summarize("bare httpx2", *bare_t, n)
    ratio, cpu_ms = h_wall / b_wall, h_cpu / n * 1000
    print(
        f"  ratio {ratio:.3f} (target <= 1.15: {'met' if ratio <= 1.15 else 'NOT met'}); "
        f"CPU {cpu_ms:.2f} ms/call (target < 2: {'met' if cpu_ms < 2 else 'NOT met'}); "
        f"vs floor {h_wall / floor:.2f}x / {b_wall / floor:.2f}x; server answered {calls}"
    )
    fake = FakeOpenAI(LATENCY, "<label>True</label>")
    wall, _ = timed([*judge[:-2], "--base-url", fake.url, "--overwrite"], env)
    calls = fake.finish()
    verdict = "met" if calls == 0 and wall < 3 else "NOT met"
    print(f"2. cached re-run: {wall:.2f} s, API calls {calls} (target 0 and < 3 s: {verdict})")


def _serve_ratelimited(conn) -> None:
    from holisafe_bench.testing.fake_server import FakeRequest, FakeResponse, FakeServer
    from holisafe_bench.testing.fake_vendors import openai_completion

    server = FakeServer()
    stamps: collections.deque[float] = collections.deque()
    lock = threading.Lock()
    counts = {"ok": 0, "rejected": 0, "rejected_late": 0}
    started = time.monotonic()

    @server.route("POST", r"/v1/chat/completions")
    def chat(req: FakeRequest) -> FakeResponse:
        now = time.monotonic()
        with lock:
            while stamps and now - stamps[0] > WINDOW_S:
                stamps.popleft()
            if len(stamps) >= WINDOW_LIMIT:
                counts["rejected"] += 1
                counts["rejected_late"] += now - started > WINDOW_S
                wait = WINDOW_S - (now - stamps[0])
                headers = {"retry-after": f"{wait:.3f}"}
                return FakeResponse(429, {"error": {"message": "rate limited"}}, headers=headers)
            stamps.append(now)
            counts["ok"] += 1
        return FakeResponse(body=openai_completion("gpt-4o", "<label>True</label>"))

    server.start()
    conn.send(server.base_url + "/v1")
    conn.recv()
    conn.send(counts)
    server.stop()


def ratelimited(data: Path, results: Path, n: int, env: dict) -> None:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=_serve_ratelimited, args=(child,))
    process.start()
    url = parent.recv()
    _forget_cache(results)
    rpm = WINDOW_LIMIT * 60 / WINDOW_S
    cmd = [*CLI, "judge", "--judge", "gpt4o", "--model", "gpt-4o", "--dataset", str(data)]
    cmd += ["--results", str(results), "--base-url", url, "--overwrite", "--rpm", str(rpm)]
    wall, _ = timed([*cmd, "--concurrency", str(CONCURRENCY)], env)
    parent.send("done")
    counts = parent.recv()
    process.join()
    floor = n / WINDOW_LIMIT * WINDOW_S
    late = counts["rejected_late"] / n
    print(
        f"3. {n} calls against {WINDOW_LIMIT} per {WINDOW_S:.0f} s, --rpm {rpm:.0f}: {wall:.2f} s "
        f"vs floor {floor:.2f} s -> ratio {wall / floor:.3f} (target <= 1.2: "
        f"{'met' if wall / floor <= 1.2 else 'NOT met'}); 429s {counts['rejected']}, after the "
        f"first window {counts['rejected_late']} = {late:.2%} (target < 2%: "
        f"{'met' if late < 0.02 else 'NOT met'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4031)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the datasets here")
    parser.add_argument("--ratelimit", action="store_true", help="also run part 3")
    args = parser.parse_args()
    env = bench_env()
    timed([*CLI, "--help"], env)  # once untimed: the bytecode cache, as on any second run
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        for size in args.sizes:
            data = write_dataset(base / f"data-{size}-{args.n}", args.n, size)
            results = Path(tmp) / f"results-{size}"
            measure(size, data, results, args.n, args.repeat, env)
            if args.ratelimit:
                ratelimited(data, results, args.n, env)


if __name__ == "__main__":
    main()
