"""`merge`: combine the shards of a data-parallel run into the model's responses.jsonl.

Merging never mixes two runs: the shards must agree on model, checkpoint, revision and
sampling, and answers already in responses.jsonl that were made with other settings are
replaced by the shards' (or, when they are newer than the shards, merge refuses). With the
same settings, a shard's newer answer replaces an older one, one sample at a time.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord, utc_now
from holisafe_bench.store import RecordStore, write_json_atomic

# The manifest fields that decide which run an answer belongs to (sampling: every key).
RUN_FIELDS = ("model", "model_id", "model_revision")


@dataclass
class MergeSummary:
    model: str
    shards: list[str] = field(default_factory=list)
    merged: int = 0
    kept_existing: int = 0
    # Answers of an earlier run with other settings, dropped for the shards' answers.
    replaced_earlier: int = 0
    replaced_because: str | None = None
    output: Path | None = None


@dataclass(frozen=True)
class _Shard:
    folder: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.folder.name


@dataclass
class MergePlan:
    """What a merge will write: the shards (checked to be one run), the records that win,
    and whether the stored file belongs to another run and is started afresh."""

    model: str
    shards: list[_Shard]
    new_records: list[ResponseRecord]
    start_afresh: bool
    summary: MergeSummary


def merge_shards(model: str, layout: ResultsLayout) -> MergeSummary:
    return execute_merge(plan_merge(model, layout), layout)


def plan_merge(model: str, layout: ResultsLayout) -> MergePlan:
    """The plan step: refuses incomplete splits and shards of different runs."""
    shards = [_load_shard(folder) for folder in _complete_split(model, layout)]
    _require_one_run(model, shards)
    target = RecordStore(layout.responses(model), ResponseRecord)
    existing = target.read()
    summary = MergeSummary(model=model, output=target.path, shards=[s.name for s in shards])
    mismatch = _earlier_run_mismatch(layout.run_manifest(model), existing, shards)
    if mismatch is not None:
        # Another run's answers cannot stay beside these: start the file from the shards.
        summary.replaced_earlier = len(existing)
        summary.replaced_because = mismatch
        existing = {}
    chosen = dict(existing)
    new_records = []
    for shard in shards:
        for sample_id, rec in (
            RecordStore(shard.folder / "responses.jsonl", ResponseRecord).read().items()
        ):
            if _shard_record_wins(chosen.get(sample_id), rec):
                chosen[sample_id] = rec
                new_records.append(rec)
            else:
                summary.kept_existing += 1
    return MergePlan(model, shards, new_records, mismatch is not None, summary)


def execute_merge(plan: MergePlan, layout: ResultsLayout) -> MergeSummary:
    """The execute step: append the winning records, then the merged manifest."""
    target = RecordStore(layout.responses(plan.model), ResponseRecord)
    with target.writer(overwrite=plan.start_afresh) as writer:
        for rec in plan.new_records:
            writer.write(rec)
    plan.summary.merged = len(plan.new_records)
    write_json_atomic(
        layout.run_manifest(plan.model), _merged_manifest(plan.shards, target.read(), plan.summary)
    )
    return plan.summary


def _complete_split(model: str, layout: ResultsLayout) -> list[Path]:
    """The shard folders of one split i-of-n, all n of them, or a clear refusal."""
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
    return shard_dirs


def _load_shard(folder: Path) -> _Shard:
    """A shard with its run manifest: without one nobody can tell which run made it."""
    path = folder / "run.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HolisafeError(
            f"{path}: missing or unreadable, so shard {folder.name} cannot be checked against "
            "the others; re-run that shard"
        ) from exc
    if not isinstance(manifest, dict):
        raise HolisafeError(f"{path}: not a run manifest; re-run shard {folder.name}")
    return _Shard(folder, manifest)


def _setting_differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, value in a, value in b) for every run-defining field that differs."""
    diffs = [(name, a.get(name), b.get(name)) for name in RUN_FIELDS if a.get(name) != b.get(name)]
    sampling_a, sampling_b = a.get("sampling") or {}, b.get("sampling") or {}
    for key in sorted(set(sampling_a) | set(sampling_b)):
        if sampling_a.get(key) != sampling_b.get(key):
            diffs.append((f"sampling.{key}", sampling_a.get(key), sampling_b.get(key)))
    return diffs


def _describe(diffs: list[tuple[str, Any, Any]], label_a: str, label_b: str) -> str:
    return "; ".join(f"{name} {va!r} ({label_a}) vs {vb!r} ({label_b})" for name, va, vb in diffs)


def _require_one_run(model: str, shards: list[_Shard]) -> None:
    first = shards[0]
    for other in shards[1:]:
        diffs = _setting_differences(first.manifest, other.manifest)
        if diffs:
            raise HolisafeError(
                f"cannot merge {model}: the shards come from different runs: "
                f"{_describe(diffs, f'shard {first.name}', f'shard {other.name}')}; re-run the "
                "odd shard(s) with the same settings (run --shard i/n --overwrite)"
            )


def _earlier_run_mismatch(
    manifest_path: Path, existing: dict[int, ResponseRecord], shards: list[_Shard]
) -> str | None:
    """Why the stored answers belong to another run than the shards (None: same run).
    Refuses when that other run is newer than the shards: merging would replace newer
    answers with older ones."""
    if not existing:
        return None
    try:
        previous = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = None
    if not isinstance(previous, dict):
        return f"{manifest_path} is missing or unreadable: the stored answers' run is unknown"
    diffs = _setting_differences(previous, shards[0].manifest)
    if not diffs:
        return None
    reason = _describe(diffs, "stored", "shards")
    stored_at = _ran_at(previous)
    shards_at = max((t for s in shards if (t := _ran_at(s.manifest))), default=None)
    if stored_at is not None and shards_at is not None and stored_at > shards_at:
        raise HolisafeError(
            f"cannot merge into {manifest_path.parent}: its {len(existing)} responses are "
            f"newer ({stored_at.isoformat()}) than the shards ({shards_at.isoformat()}) and "
            f"come from another run ({reason}); merging would replace newer answers with "
            "older ones: re-run the shards with the current settings, or remove them"
        )
    return reason


def _shard_record_wins(old: ResponseRecord | None, new: ResponseRecord) -> bool:
    """Within one run: an answer beats a failure, otherwise the newer record wins (an equal
    one is the same record merged before, so re-merging writes nothing)."""
    if old is None:
        return True
    if old.is_complete != new.is_complete:
        return new.is_complete
    new_at, old_at = _when(new.created_at), _when(old.created_at)
    return new_at is not None and (old_at is None or new_at > old_at)


def _ran_at(manifest: dict[str, Any]) -> _dt.datetime | None:
    """When a run's answers were made: its end, or its start if it never finished."""
    return _when(manifest.get("finished_at") or manifest.get("started_at"))


def _when(text: Any) -> _dt.datetime | None:
    """An ISO timestamp of a record or manifest, comparable across time zones."""
    if not isinstance(text, str):
        return None
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.UTC)


def _merged_manifest(
    shards: list[_Shard], final: dict[int, ResponseRecord], summary: MergeSummary
) -> dict[str, Any]:
    """The shards' run manifest (they agree on the run), with the merged file's counts."""
    merged = dict(shards[0].manifest)
    merged["shard"] = None
    merged["merged_from"] = [
        {
            "shard": s.manifest.get("shard"),
            "counts": s.manifest.get("counts"),
            "finished_at": s.manifest.get("finished_at"),
        }
        for s in shards
    ]
    if summary.replaced_earlier:
        merged["replaced_earlier_run"] = {
            "responses": summary.replaced_earlier,
            "because": summary.replaced_because,
        }
    # Every shard's invocations and tokens, not shard 0's alone.
    merged["invocations"] = [
        {**invocation, "shard": s.manifest.get("shard")}
        for s in shards
        for invocation in s.manifest.get("invocations") or []
        if isinstance(invocation, dict)
    ]
    merged["usage"] = {
        key: sum(int((s.manifest.get("usage") or {}).get(key) or 0) for s in shards)
        for key in ("input_tokens", "output_tokens")
    }
    merged["counts"] = {"records": len(final)}
    for rec in final.values():
        merged["counts"][rec.outcome] = merged["counts"].get(rec.outcome, 0) + 1
    merged["finished_at"] = utc_now()
    return merged
