"""LLM-judge performance, measured through the real judge stage and OpenAI SDK against a
fake server in its own process (issue: LLM judges):

1. 4,031 judge calls at concurrency 64, 200 ms latency: within 1.15x the floor, with the
   default worker processes (one per 32 concurrent calls, up to the CPU count), and in one
   process (`judge --processes 1`) for comparison. The time covers the whole
   judge stage (reading responses, hashing images, the cache, writing verdicts) but not the
   one-off import of the openai SDK, which is printed separately.
2. A fake enforcing 600 requests per minute with 429s, time scaled by 1/10 (600 requests
   per 6 s window, so 4,031 calls have a floor of 40.3 s instead of 6.7 min): done within
   1.2x the floor, under 2% of requests rejected after the first (scaled) minute.
3. A fully cached re-run of 4,031 verdicts: 0 API calls, under 3 s.

Run: .venv/bin/python benchmarks/judge_perf.py
"""

from __future__ import annotations

import collections
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from holisafe_bench.dataset.synthetic import write_synthetic  # noqa: E402
from holisafe_bench.judging.options import JudgeOptions  # noqa: E402
from holisafe_bench.paths import ResultsLayout  # noqa: E402
from holisafe_bench.providers.process_runner import worker_count  # noqa: E402
from holisafe_bench.registry import get_judge, get_model  # noqa: E402
from holisafe_bench.stages.judge import judge_model  # noqa: E402
from holisafe_bench.stages.run import RunOptions, run_model  # noqa: E402
from holisafe_bench.testing.fake_server import FakeRequest, FakeResponse, FakeServer  # noqa: E402
from holisafe_bench.testing.fake_vendors import openai_completion  # noqa: E402

N, CONCURRENCY, LATENCY = 4031, 64, 0.2
WINDOW_S, WINDOW_LIMIT = 6.0, 600  # 600 per minute, time scaled by 1/10


def _serve(mode: str, conn) -> None:
    server = FakeServer(latency=LATENCY if mode == "latency" else 0.0)
    stamps: collections.deque[float] = collections.deque()
    lock = threading.Lock()
    counts = {"ok": 0, "rejected": 0, "rejected_late": 0}
    started = time.monotonic()

    @server.route("POST", r"/v1/chat/completions")
    def chat(req: FakeRequest) -> FakeResponse:
        if mode == "ratelimit":
            now = time.monotonic()
            with lock:
                while stamps and now - stamps[0] > WINDOW_S:
                    stamps.popleft()
                if len(stamps) >= WINDOW_LIMIT:
                    counts["rejected"] += 1
                    counts["rejected_late"] += now - started > WINDOW_S
                    wait = WINDOW_S - (now - stamps[0])
                    return FakeResponse(
                        429,
                        {"error": {"message": "rate limited"}},
                        headers={"retry-after": f"{wait:.3f}"},
                    )
                stamps.append(now)
        counts["ok"] += 1
        return FakeResponse(body=openai_completion("gpt-4o", "<label>True</label>"))

    server.start()
    conn.send(server.base_url)
    conn.recv()
    conn.send(counts)
    server.stop()


class Fake:
    def __init__(self, mode: str) -> None:
        self.parent, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(mode, child)
        )
        self.process.start()
        self.url = self.parent.recv() + "/v1"

    def finish(self) -> dict:
        self.parent.send("done")
        counts = self.parent.recv()
        self.process.join()
        return counts


def judge(layout: ResultsLayout, data: Path, url: str, **options) -> float:
    started = time.perf_counter()
    judge_model(
        "bench",
        get_judge("gpt4o"),
        layout,
        JudgeOptions(dataset=str(data), base_url=url, show_progress=False, **options),
    )
    return time.perf_counter() - started


def main() -> None:
    os.environ.setdefault("OPENAI_API_KEY", "bench-key-0000000000")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_synthetic(root / "data", n_rows=N)
        layout = ResultsLayout(root / "results")
        spec = get_model("tiny-llava-random").model_copy(
            update={"name": "bench", "provider": "baseline", "checkpoint": "baseline-keyword"}
        )
        from holisafe_bench.dataset import load_benchmark

        bench = load_benchmark(data)
        run_model(spec, bench, bench.samples, layout, RunOptions())

        floor = math.ceil(N / CONCURRENCY) * LATENCY
        started = time.perf_counter()
        import openai  # noqa: F401 - a one-off cost per process, kept out of the timings

        print(f"openai SDK import: {time.perf_counter() - started:.2f} s (one-off, not timed)")
        workers = worker_count(None, concurrency=CONCURRENCY, calls=N)
        for processes, label in ((None, f"default ({workers} processes)"), (1, "--processes 1")):
            if layout.judge_cache().exists():
                layout.judge_cache().unlink()  # measure real calls, not cache hits
            fake = Fake("latency")
            elapsed = judge(
                layout, data, fake.url, concurrency=CONCURRENCY, processes=processes, overwrite=True
            )
            counts = fake.finish()
            verdict = "met" if elapsed / floor <= 1.15 else "NOT met"
            print(
                f"1. {N} calls, concurrency {CONCURRENCY}, {LATENCY * 1000:.0f} ms latency, "
                f"{label}: {elapsed:.2f} s vs floor {floor:.2f} s -> ratio "
                f"{elapsed / floor:.3f} (target <= 1.15: {verdict}"
                f"{'' if processes is None else ', for comparison only'}"
                f"); server answered {counts['ok']}"
            )

        layout.judge_cache().unlink()  # measure real calls, not cache hits
        fake = Fake("ratelimit")
        rpm = WINDOW_LIMIT * 60 / WINDOW_S
        elapsed = judge(
            layout, data, fake.url, overwrite=True, concurrency=CONCURRENCY, requests_per_minute=rpm
        )
        counts = fake.finish()
        floor = N / WINDOW_LIMIT * WINDOW_S
        late_share = counts["rejected_late"] / N
        verdict = "met" if elapsed / floor <= 1.2 else "NOT met"
        print(
            f"2. {N} calls against {WINDOW_LIMIT} per {WINDOW_S:.0f} s (600/min time-scaled "
            f"1/10), --rpm {rpm:.0f}: {elapsed:.2f} s vs floor {floor:.2f} s -> ratio "
            f"{elapsed / floor:.3f} (target <= 1.2: {verdict}); "
            f"429s {counts['rejected']}, after the first window {counts['rejected_late']} "
            f"= {late_share:.2%} (target < 2%: {'met' if late_share < 0.02 else 'NOT met'})"
        )

        fake = Fake("latency")
        elapsed = judge(layout, data, fake.url, overwrite=True)
        counts = fake.finish()
        print(
            f"3. cached re-run of {N} verdicts: {elapsed:.2f} s, API calls {counts['ok']} "
            f"(target 0 calls and < 3 s: "
            f"{'met' if counts['ok'] == 0 and elapsed < 3 else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
