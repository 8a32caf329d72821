"""`merge`: combine the shards of a data-parallel run into the model's responses.jsonl."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from holisafe_bench.errors import HolisafeError
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord, utc_now
from holisafe_bench.store import RecordStore, write_json_atomic


@dataclass
class MergeSummary:
    model: str
    shards: list[str] = field(default_factory=list)
    merged: int = 0
    kept_existing: int = 0
    output: Path | None = None


def merge_shards(model: str, layout: ResultsLayout) -> MergeSummary:
    shard_dirs = layout.shard_dirs(model)
    if not shard_dirs:
        raise HolisafeError(f"no shards under {layout.model_dir(model) / 'shards'}")
    counts = {d.name.split("-of-")[1] for d in shard_dirs}
    if len(counts) != 1:
        raise HolisafeError(
            f"shards of different splits under {layout.model_dir(model)}: "
            + ", ".join(d.name for d in shard_dirs)
        )
    count = int(counts.pop())
    present = {int(d.name.split("-of-")[0]) for d in shard_dirs}
    missing = sorted(set(range(count)) - present)
    if missing:
        raise HolisafeError(
            f"cannot merge {model}: shard(s) {', '.join(f'{i}/{count}' for i in missing)} "
            "not found; run them first"
        )

    target = RecordStore(layout.responses(model), ResponseRecord)
    existing = target.read()
    summary = MergeSummary(model=model, output=target.path)
    shard_manifests = []
    with target.writer() as writer:
        for folder in shard_dirs:
            summary.shards.append(folder.name)
            for sample_id, rec in (
                RecordStore(folder / "responses.jsonl", ResponseRecord).read().items()
            ):
                old = existing.get(sample_id)
                # A complete answer is never replaced by a failed one.
                if old is not None and (old.is_complete or not rec.is_complete):
                    summary.kept_existing += 1
                    continue
                writer.write(rec)
                summary.merged += 1
            manifest_path = folder / "run.json"
            if manifest_path.exists():
                shard_manifests.append(json.loads(manifest_path.read_text(encoding="utf-8")))

    if shard_manifests:
        merged = dict(shard_manifests[0])
        merged["shard"] = None
        merged["merged_from"] = [
            {
                "shard": m.get("shard"),
                "counts": m.get("counts"),
                "finished_at": m.get("finished_at"),
            }
            for m in shard_manifests
        ]
        final = target.read()
        merged["counts"] = {"records": len(final)}
        for rec in final.values():
            merged["counts"][rec.outcome] = merged["counts"].get(rec.outcome, 0) + 1
        merged["finished_at"] = utc_now()
        write_json_atomic(layout.run_manifest(model), merged)
    return summary
