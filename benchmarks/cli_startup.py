"""How long `holisafe-bench --help` takes, side by side with a bare interpreter start.

Target (issue: foundation): under 0.5 s on a 2-core machine.
Run: .venv/bin/python benchmarks/cli_startup.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 7


def median_seconds(cmd: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    bare = median_seconds([sys.executable, "-c", "pass"])
    cli = median_seconds([sys.executable, "-m", "holisafe_bench", "--help"])
    print(f"python -c pass             median of {RUNS}: {bare:.3f} s")
    print(f"holisafe-bench --help      median of {RUNS}: {cli:.3f} s")
    print(f"ratio --help / bare start: {cli / bare:.1f}x")
    print(f"target < 0.5 s: {'met' if cli < 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
