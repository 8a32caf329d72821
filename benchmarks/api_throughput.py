"""API provider throughput: 4,031 requests at concurrency 64 against a fake server with
200 ms latency, through the real SDKs and the shared runner, next to the floor
ceil(4031/64) x 0.2 s, in one process and spread over worker processes (`--processes`).
Target (issue: model adapters): within 1.15x the floor. The clock starts after the SDK is
imported (a one-off cost per process, printed separately); worker processes are forked
from the measuring process, so they inherit the import.

Run: .venv/bin/python benchmarks/api_throughput.py [openai anthropic gemini] [--n 4031]
     [--processes 1 2]
"""

from __future__ import annotations

import argparse
import io
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from holisafe_bench.providers.factory import create_chat_provider  # noqa: E402
from holisafe_bench.providers.process_runner import send_all  # noqa: E402
from holisafe_bench.providers.types import ChatRequest, ImageInput  # noqa: E402
from holisafe_bench.registry import ApiSettings  # noqa: E402
from holisafe_bench.testing.fake_vendors import anthropic_server, gemini_server, openai_server  # noqa: E402

SERVERS = {"openai": openai_server, "anthropic": anthropic_server, "gemini": gemini_server}
LATENCY, CONCURRENCY = 0.2, 64
SDK_MODULES = {"openai": "openai", "anthropic": "anthropic", "gemini": "google.genai"}


def import_sdk(vendor: str) -> float:
    """Import the vendor's SDK before the clock starts: a one-off cost per process (about a
    second for openai), printed on its own rather than folded into request throughput."""
    import importlib

    started = time.perf_counter()
    importlib.import_module(SDK_MODULES[vendor])
    return time.perf_counter() - started


def _serve(vendor: str, conn) -> None:
    server = SERVERS[vendor](latency=LATENCY).start()
    conn.send(server.base_url)
    conn.recv()  # until the parent is done
    server.stop()


def measure(vendor: str, n: int, processes: int = 1) -> tuple[float, int]:
    os.environ.setdefault(f"{vendor.upper()}_API_KEY", "bench-key-000000000")
    # The fake runs in its own process, so it does not compete with the client for the GIL.
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(vendor, child))
    process.start()
    base_url = parent.recv()
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "blue").save(buf, format="JPEG")
    image = ImageInput(data=buf.getvalue(), media_type="image/jpeg")
    base = base_url + ("/v1" if vendor == "openai" else "")
    api = ApiSettings(base_url=base, concurrency=CONCURRENCY)
    provider = create_chat_provider(vendor, "bench-model", api=api)
    ok = 0

    def count(result) -> None:
        nonlocal ok
        ok += result.outcome == "ok"

    requests = (ChatRequest(id=str(i), text=f"q{i}", images=(image,)) for i in range(n))

    started = time.perf_counter()
    send_all(provider, requests, processes=processes, concurrency=CONCURRENCY, on_result=count)
    elapsed = time.perf_counter() - started
    parent.send("done")
    process.join()
    return elapsed, ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("vendors", nargs="*", default=["openai", "anthropic", "gemini"])
    parser.add_argument("--n", type=int, default=4031)
    parser.add_argument(
        "--processes", type=int, nargs="+", default=[1, 2], help="worker processes to compare"
    )
    args = parser.parse_args()
    floor = math.ceil(args.n / CONCURRENCY) * LATENCY
    print(
        f"{args.n} requests, concurrency {CONCURRENCY}, latency {LATENCY * 1000:.0f} ms: "
        f"floor {floor:.2f} s"
    )
    for vendor in args.vendors:
        print(f"{vendor}: SDK import {import_sdk(vendor):.2f} s (one-off, not in the times below)")
        for processes in args.processes:
            elapsed, ok = measure(vendor, args.n, processes)
            ratio = elapsed / floor
            print(
                f"{vendor:10s} --processes {processes}: {elapsed:6.2f} s  ratio {ratio:.3f}  "
                f"ok {ok}/{args.n}  (target <= 1.15: {'met' if ratio <= 1.15 else 'NOT met'})"
            )


if __name__ == "__main__":
    main()
