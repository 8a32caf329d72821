"""Scoring speed and memory: 21 models x 4,031 samples x 4 judges of synthetic verdicts.

Target (issue: foundation): under 5 s and under 1 GB. Prints the load+score time next to
the time of merely reading the same files, and the peak resident memory. The files are
written here, not by `judge`, so there is no fingerprint sidecar at first (every response
is decoded and hashed); the one-judge leaderboard is then timed again with the sidecars
`judge` writes (issue 15: the responses' bytes hashed instead of decoded).
Run: .venv/bin/python benchmarks/scoring_speed.py
"""

from __future__ import annotations

import random
import resource
import tempfile
import time
from pathlib import Path

from holisafe_bench.fingerprints import digest_bytes, write_sidecar
from holisafe_bench.leaderboard import build_leaderboard, to_csv
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord, VerdictRecord
from holisafe_bench.registry import load_models
from holisafe_bench.scoring import CurrentResponses
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import CATEGORY_OF, SUBCATEGORIES, TYPES

SAMPLES, JUDGES = 4031, ("string-match", "claude", "gpt4o", "gemini")
# About 200 words, as long as a typical answer: scoring reads every response to check that
# each verdict judged the current one.
ANSWER = "Here is what the picture shows and an answer to the question. " * 20


def write_responses(layout: ResultsLayout, model: str) -> dict[int, str]:
    """One response per sample; their fingerprints by sample id."""
    fingerprints = {}
    with RecordStore(layout.responses(model), ResponseRecord).writer(
        fsync_every=10**9, fsync_seconds=1e9
    ) as writer:
        for i in range(SAMPLES):
            sub = SUBCATEGORIES[i % len(SUBCATEGORIES)]
            response = ResponseRecord(
                sample_id=i,
                model=model,
                type=TYPES[i % 5],
                category=CATEGORY_OF[sub],
                subcategory=sub,
                outcome="ok",
                text=f"{i}: {ANSWER}",
            )
            writer.write(response)
            fingerprints[i] = response.fingerprint()
    return fingerprints


def write_sidecars(layout: ResultsLayout, prints: dict[str, dict[int, str]]) -> None:
    """What `judge` leaves beside each responses file."""
    for model, fingerprints in prints.items():
        digest = digest_bytes(layout.responses(model).read_bytes())
        write_sidecar(layout.response_fingerprints(model), digest, fingerprints)


def write_verdicts(layout: ResultsLayout, models: list[str]) -> dict[str, dict[int, str]]:
    """Responses and verdicts of every judge; each model's response fingerprints."""
    rng = random.Random(0)
    prints = {}
    for model in models:
        fingerprints = prints[model] = write_responses(layout, model)
        for judge in JUDGES:
            with RecordStore(layout.verdicts(model, judge), VerdictRecord).writer(
                fsync_every=10**9, fsync_seconds=1e9
            ) as writer:
                for i in range(SAMPLES):
                    sub = SUBCATEGORIES[i % len(SUBCATEGORIES)]
                    invalid = rng.random() < 0.01
                    writer.write(
                        VerdictRecord(
                            sample_id=i,
                            model=model,
                            judge=judge,
                            type=TYPES[i % 5],
                            category=CATEGORY_OF[sub],
                            subcategory=sub,
                            follows=None if invalid else rng.random() < 0.6,
                            invalid="parse_error" if invalid else None,
                            raw="<label>True</label>",
                            detail="synthetic",
                            response_sha256=fingerprints[i],
                        )
                    )
    return prints


def main() -> None:
    models = [s.name for s in load_models().values() if s.in_paper]
    with tempfile.TemporaryDirectory() as tmp:
        layout = ResultsLayout(Path(tmp))
        prints = write_verdicts(layout, models)
        count = len(models) * SAMPLES * len(JUDGES)
        start = time.perf_counter()
        for model in models:
            layout.responses(model).read_bytes()
            for judge in JUDGES:
                layout.verdicts(model, judge).read_bytes()
        read_only = time.perf_counter() - start
        start = time.perf_counter()
        to_csv(build_leaderboard(layout, JUDGES[0]))
        one_judge = time.perf_counter() - start
        start = time.perf_counter()
        # As report and agreement do: each model's responses read once for all judges.
        responses = CurrentResponses(layout)
        tables = [to_csv(build_leaderboard(layout, j, responses=responses)) for j in JUDGES]
        elapsed = time.perf_counter() - start
        write_sidecars(layout, prints)
        start = time.perf_counter()
        with_sidecars = to_csv(build_leaderboard(layout, JUDGES[0]))
        one_judge_sidecars = time.perf_counter() - start
    assert with_sidecars == tables[0]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert all(len(t.splitlines()) == len(models) + 1 for t in tables)
    assert not any("n/a" in t for t in tables)  # every verdict is current: all were scored
    print(f"{len(models)} models x {SAMPLES} samples x {len(JUDGES)} judges = {count} verdicts")
    print(f"reading the files only:     {read_only:.2f} s")
    print(f"one judge (a `leaderboard`): {one_judge:.2f} s (responses and verdicts of 21 models)")
    print(f"  the same with sidecars:   {one_judge_sidecars:.2f} s (responses hashed, not decoded)")
    print(
        f"load + validate + score:    {elapsed:.2f} s  (target < 5 s: "
        f"{'met' if elapsed < 5 else 'NOT met'}; {elapsed / read_only:.0f}x raw reading)"
    )
    print(
        f"peak resident memory:       {peak_mb:.0f} MB (target < 1024 MB: "
        f"{'met' if peak_mb < 1024 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
