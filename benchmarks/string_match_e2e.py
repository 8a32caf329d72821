"""String matching end to end, as a user waits: `judge --judge string-match --all` and then
`leaderboard --format csv` over 21 models x 4,031 responses, each timed from process start
to exit through the CLI, beside a minimal reference loop written here (its own process:
read the JSON lines, lowercase, strip, prefix/substring test, count per model and type).

Targets (issue 15): the CLI pair within 2x of the reference loop, and at most half of the
5.3 s the authors' own script needed on this machine (measured once, by hand: their script
is not part of this repository). Peak memory of judging must stay flat in the number of
models: the script also judges 7 models and compares the peak resident sizes.

Both sides run with compiled bytecode, as an installed package does (pip compiles it, and
Python caches it on first import): with PYTHONDONTWRITEBYTECODE set, as on the development
machine, every CLI process would recompile its ~300 modules (about 0.5 s) while the reference
imports three; so the children get a bytecode cache of their own (PYTHONPYCACHEPREFIX in the
temporary folder), warmed by one untimed run. `--no-bytecode` measures without it.

Run: .venv/bin/python benchmarks/string_match_e2e.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord
from holisafe_bench.registry import registry_dir
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import CATEGORY_OF, SUBCATEGORIES, TYPES

MODELS, SAMPLES = 21, 4031
AUTHORS_SCRIPT_S = 5.3  # the measurement of the official script on this machine
CLI = [sys.executable, "-m", "holisafe_bench"]

REFERENCE = r"""
import json, sys, time, tomllib
from collections import Counter
from pathlib import Path
spec = tomllib.loads(Path(sys.argv[2]).read_text())
start, contain = tuple(spec["start_phrases"]), spec["contain_phrases"]
counts = Counter()
for path in sorted(Path(sys.argv[1]).glob("*/responses.jsonl")):
    for line in path.read_text().splitlines():
        r = json.loads(line)
        text = (r["text"] or "").lower().strip()
        refusal = text.startswith(start) or any(p in text for p in contain)
        counts[(path.parent.name, r["type"], refusal)] += 1
print(len(counts))
"""


# Runs a command and prints its peak resident size (KB) last on stderr: in this wrapper the
# only child is the command, so the children's maximum is its own.
PEAK = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(code)"
)


def _text(rng: random.Random, i: int) -> str:
    """Answers of realistic length; about a third are refusals of several kinds."""
    kind = rng.random()
    if kind < 0.2:
        return f"I'm sorry, but I can't help with that request ({i})."
    if kind < 0.35:
        return f"This image shows a scene. However, I cannot assist with item {i}. " * 3
    words = ["the", "picture", "shows", "a", "person", "holding", "an", "object", "near"]
    return " ".join(rng.choice(words) for _ in range(rng.randint(40, 160))) + f" ({i})."


def write_results(root: Path, models: int) -> None:
    layout, rng = ResultsLayout(root), random.Random(0)
    for m in range(models):
        store = RecordStore(layout.responses(f"model-{m:02d}"), ResponseRecord)
        with store.writer(fsync_every=10**9, fsync_seconds=1e9) as writer:
            for i in range(SAMPLES):
                sub = SUBCATEGORIES[i % len(SUBCATEGORIES)]
                writer.write(
                    ResponseRecord(
                        sample_id=i,
                        model=f"model-{m:02d}",
                        type=TYPES[i % 5],
                        category=CATEGORY_OF[sub],
                        subcategory=sub,
                        outcome="ok",
                        text=_text(rng, i),
                    )
                )


ENV = dict(os.environ)


def _timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds from process start to exit, and the child's peak RSS (KB)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True, env=ENV
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return elapsed, int(proc.stderr.strip().splitlines()[-1])


def measure(root: Path) -> dict[str, float]:
    phrases = registry_dir("judges") / "string_match.toml"
    reference, _ = _timed([sys.executable, "-c", REFERENCE, str(root), str(phrases)])
    judge, judge_rss = _timed(
        [*CLI, "judge", "--judge", "string-match", "--all", "--overwrite", "--results", str(root)]
    )
    board, _ = _timed([*CLI, "leaderboard", "--format", "csv", "--results", str(root)])
    return {"reference": reference, "judge": judge, "leaderboard": board, "rss": judge_rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-bytecode", action="store_true", help="compile on every start")
    args = parser.parse_args()
    assert tomllib  # the reference loop reads the phrase lists with it
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_bytecode:
            ENV.pop("PYTHONDONTWRITEBYTECODE", None)
            ENV["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        full, small = Path(tmp) / "full", Path(tmp) / "small"
        write_results(full, MODELS)
        write_results(small, 7)
        os.sync()
        measure(small)  # untimed: warms the bytecode cache and the page cache
        rounds = [measure(full) for _ in range(args.rounds)]  # interleaved: each round has all
        small_rss = measure(small)["rss"]
    ref = statistics.median(r["reference"] for r in rounds)
    ours = statistics.median(r["judge"] + r["leaderboard"] for r in rounds)
    judge = statistics.median(r["judge"] for r in rounds)
    board = statistics.median(r["leaderboard"] for r in rounds)
    rss = statistics.median(r["rss"] for r in rounds)
    print(f"{MODELS} models x {SAMPLES} responses, median of {args.rounds} interleaved rounds")
    print(f"  bytecode: {'compiled on every start' if args.no_bytecode else 'cached'}")
    print(f"  reference loop (read, lowercase, strip, match, count): {ref:6.2f} s")
    print(f"  holisafe-bench judge --all + leaderboard:              {ours:6.2f} s")
    print(f"    of which judge {judge:.2f} s, leaderboard {board:.2f} s")
    print("  per round (reference / judge / leaderboard):")
    for r in rounds:
        print(f"    {r['reference']:5.2f} / {r['judge']:5.2f} / {r['leaderboard']:5.2f} s")
    print(f"  ratio to the reference loop: {ours / ref:.2f}x (target <= 2.0x)")
    print(
        f"  vs the authors' script ({AUTHORS_SCRIPT_S} s, measured apart): "
        f"{ours / AUTHORS_SCRIPT_S:.2f}x (target <= 0.5x)"
    )
    print(f"  judge peak RSS: {rss / 1024:.0f} MB ({MODELS} models), {small_rss / 1024:.0f} MB (7)")
    met = ours / ref <= 2.0 and ours <= AUTHORS_SCRIPT_S / 2 and rss <= small_rss * 1.25
    print("targets met" if met else "targets NOT met")


if __name__ == "__main__":
    main()
