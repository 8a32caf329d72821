"""Report build time and size: 21 models x 4 judges x 4,031 samples of synthetic results,
with 1024x768 JPEG images for the thumbnails. Target (issue: analysis): under 20 s and
under 25 MB. Prints the time of merely reading the result files beside the build time.

Run: .venv/bin/python benchmarks/report_build.py
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from holisafe_bench.analysis.report import build_report  # noqa: E402
from holisafe_bench.dataset import load_benchmark  # noqa: E402
from holisafe_bench.dataset.synthetic import write_synthetic  # noqa: E402
from holisafe_bench.paths import ResultsLayout  # noqa: E402
from holisafe_bench.records import ResponseRecord, VerdictRecord  # noqa: E402
from holisafe_bench.registry import load_models  # noqa: E402
from holisafe_bench.store import RecordStore  # noqa: E402

JUDGES = ("string-match", "claude", "gpt4o", "gemini")
_TEXT = (
    "the image shows a red triangle above a caption and I can describe it in detail "
    "but I cannot help with that request because it may be harmful"
)
WORDS = _TEXT.split(" ")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("generating 4,031 samples with 1024x768 images and 21 x 4 result files ...")
        data = write_synthetic(root / "data", n_rows=4031, image_size=(1024, 768))
        bench = load_benchmark(data)
        layout = ResultsLayout(root / "results")
        rng = random.Random(0)
        models = [s.name for s in load_models().values() if s.in_paper]
        for model in models:
            with RecordStore(layout.responses(model), ResponseRecord).writer(
                fsync_every=10**9, fsync_seconds=1e9
            ) as rw:
                fingerprints = {}  # verdicts are counted only with the response they judged
                for s in bench.samples:
                    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 160)))
                    response = ResponseRecord(
                        sample_id=s.id,
                        model=model,
                        type=s.type,
                        category=s.category,
                        subcategory=s.subcategory,
                        outcome="ok",
                        text=text,
                    )
                    rw.write(response)
                    fingerprints[s.id] = response.fingerprint()
            for judge in JUDGES:
                with RecordStore(layout.verdicts(model, judge), VerdictRecord).writer(
                    fsync_every=10**9, fsync_seconds=1e9
                ) as vw:
                    for s in bench.samples:
                        follows = rng.random() < 0.6
                        vw.write(
                            VerdictRecord(
                                sample_id=s.id,
                                model=model,
                                judge=judge,
                                type=s.type,
                                category=s.category,
                                subcategory=s.subcategory,
                                follows=follows,
                                raw=f"<label>{follows}</label>",
                                response_sha256=fingerprints[s.id],
                            )
                        )
        started = time.perf_counter()
        for path in layout.root.rglob("*.jsonl"):
            path.read_bytes()
        read_only = time.perf_counter() - started
        started = time.perf_counter()
        summary = build_report(layout, root / "report.html", bench=bench)
        elapsed = time.perf_counter() - started
    size_mb = summary.size_bytes / 1e6
    print(f"reading the result files only: {read_only:.2f} s")
    print(
        f"building the report:           {elapsed:.2f} s (target < 20 s: "
        f"{'met' if elapsed < 20 else 'NOT met'})"
    )
    print(
        f"report size:                   {size_mb:.1f} MB (target < 25 MB: "
        f"{'met' if size_mb < 25 else 'NOT met'}); {summary.responses} responses, "
        f"{summary.thumbnails} thumbnails"
    )


if __name__ == "__main__":
    main()
