"""The official prediction files: a JSON list of the original records plus `prediction`,
named `<model>_holisafe_bench.json`. Import turns them into responses; export writes them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from holisafe_bench.dataset.validate import RowIssue, surrogate_at, validate_fields
from holisafe_bench.errors import HolisafeError
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ImportManifest, ResponseRecord
from holisafe_bench.store import RecordStore, write_json_atomic

if TYPE_CHECKING:
    from holisafe_bench.dataset import Benchmark

OFFICIAL_FIELDS = (
    "id", "image", "query", "type", "category", "subcategory", "image_safe", "image_safety_label",
)  # fmt: skip
SUFFIX = "_holisafe_bench.json"


def source_records_path(layout: ResultsLayout, model: str) -> Path:
    """The original records of imported files, kept so `export` can write them back."""
    return layout.model_dir(model) / "source_records.jsonl"


@dataclass
class ImportSummary:
    model: str
    file: Path
    imported: int = 0
    failed_predictions: int = 0
    problems: list[RowIssue] = field(default_factory=list)
    checked_against_dataset: bool = False
    duplicates: int = 0  # later rows repeating an id (the first row is kept)
    skipped: int = 0  # rows left out
    kept_leniently: int = 0  # rows kept with problems (--lenient)
    lenient: bool = False

    def line(self) -> str:
        """The one-line summary the CLI prints after the per-row problems."""
        checked = (
            "checked against the dataset"
            if self.checked_against_dataset
            else "ids and types taken from the file (not checked: no --dataset)"
        )
        parts = [
            f"imported {self.imported} responses for {self.model} ({checked})",
            f"{self.failed_predictions} without a prediction",
            f"{self.duplicates} duplicate id(s) left out (the first row of each id is kept; "
            "the official scripts would count every row)"
            if self.duplicates
            else "no duplicate ids",
            f"{self.skipped} row(s) skipped",
        ]
        if self.lenient:
            parts.append(f"{self.kept_leniently} row(s) with problems kept for judging (--lenient)")
        elif self.skipped:
            parts.append(
                "--lenient keeps those the official string matching would count "
                "(a valid id, type and prediction)"
            )
        return "; ".join(parts)


# A row the official string-matching script can count needs a valid id and type (and the
# prediction); every other problem leaves it countable, so --lenient keeps it.
ESSENTIAL_FIELDS = frozenset({"(row)", "id", "type"})


def import_predictions(
    file: Path,
    model: str,
    layout: ResultsLayout,
    *,
    bench: Benchmark | None = None,
    overwrite: bool = False,
    lenient: bool = False,
) -> ImportSummary:
    """Turn an official prediction file into the model's responses. Refuses, writing
    nothing, a file without one usable prediction, and (unless `overwrite`) a model that
    already has responses: an import replaces the whole file, so it must never drop a run."""
    plan = plan_import(file, model, layout, bench=bench, overwrite=overwrite, lenient=lenient)
    return execute_import(plan, layout, bench=bench)


@dataclass
class ImportPlan:
    file: Path
    model: str
    records: list[ResponseRecord]
    originals: list[dict[str, Any]]
    summary: ImportSummary


def plan_import(
    file: Path,
    model: str,
    layout: ResultsLayout,
    *,
    bench: Benchmark | None = None,
    overwrite: bool = False,
    lenient: bool = False,
) -> ImportPlan:
    """The plan step: the records the file yields, every refusal made before a write."""
    responses_path = layout.responses(model)  # checks the name before anything is read
    rows = _read_rows(file)
    summary = ImportSummary(
        model=model, file=Path(file), checked_against_dataset=bench is not None, lenient=lenient
    )
    records, originals = _convert_rows(rows, file, model, bench, summary)
    _require_usable(file, rows, records, summary)
    if not overwrite:
        _refuse_to_replace(responses_path, model)
    return ImportPlan(Path(file), model, records, originals, summary)


def execute_import(
    plan: ImportPlan, layout: ResultsLayout, *, bench: Benchmark | None = None
) -> ImportSummary:
    """The execute step: responses, the side file of original records, the manifest."""
    summary = plan.summary
    # Side file and manifest are rewritten with the responses (under their writer lock), so
    # all three describe this import and nothing of what was replaced.
    store = RecordStore(layout.responses(plan.model), ResponseRecord)
    with store.replacing() as writer:  # a crash midway leaves the old responses whole
        for rec in plan.records:
            writer.write(rec)
        _write_lines_atomic(
            source_records_path(layout, plan.model),
            [json.dumps(o, ensure_ascii=False) for o in plan.originals],
        )
    summary.imported = len(plan.records)
    manifest = ImportManifest(
        model=plan.model,
        file=str(plan.file),
        imported=len(plan.records),
        failed_predictions=summary.failed_predictions,
        skipped_records=[str(p) for p in summary.problems if p.field != "prediction"],
        duplicates_left_out=summary.duplicates,
        lenient=summary.lenient,
        kept_leniently=summary.kept_leniently,
        checked_against_dataset=summary.checked_against_dataset,
        dataset=bench.manifest_info() if bench is not None else None,
    )
    write_json_atomic(layout.run_manifest(plan.model), manifest.model_dump(mode="json"))
    return summary


def _read_rows(file: Path) -> list[Any]:
    try:
        rows = json.loads(Path(file).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise HolisafeError(f"{file}: no such file") from exc
    except json.JSONDecodeError as exc:
        raise HolisafeError(f"{file}: not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    if not isinstance(rows, list):
        raise HolisafeError(f"{file}: expected a JSON list of records")
    return rows


def _convert_rows(
    rows: list[Any], file: Path, model: str, bench: Benchmark | None, summary: ImportSummary
) -> tuple[list[ResponseRecord], list[dict[str, Any]]]:
    """Responses and original records of the valid rows; problems go into `summary`."""
    source = str(file)
    records: list[ResponseRecord] = []
    originals: list[dict[str, Any]] = []
    first_row: dict[int, int] = {}  # id -> the row that holds it
    for index, raw in enumerate(rows, start=1):
        problems = validate_fields(raw, source=source, row=index)
        if not problems and bench is not None:
            problems = _against_dataset(raw, bench, source, index)
        summary.problems.extend(problems)
        if problems and not (summary.lenient and _countable(problems)):
            summary.skipped += 1
            continue
        if raw["id"] in first_row:
            summary.duplicates += 1
            summary.problems.append(
                RowIssue(
                    source,
                    index,
                    raw["id"],
                    "id",
                    f"duplicate of row {first_row[raw['id']]}; the first row is kept",
                )
            )
            continue
        first_row[raw["id"]] = index
        summary.kept_leniently += bool(problems)
        records.append(_response(raw, model, file, source, index, summary))
        originals.append({k: raw.get(k) for k in OFFICIAL_FIELDS})
    return records, originals


def _countable(problems: list[RowIssue]) -> bool:
    return all(p.field not in ESSENTIAL_FIELDS for p in problems)


def _response(
    raw: dict[str, Any], model: str, file: Path, source: str, row: int, summary: ImportSummary
) -> ResponseRecord:
    common = {
        "sample_id": raw["id"],
        "model": model,
        "type": raw["type"],
        # as given (a --lenient row may carry an unknown or missing one)
        "category": str(raw.get("category") or ""),
        "subcategory": str(raw.get("subcategory") or ""),
        "source": f"import:{Path(file).name}",
    }
    prediction = raw.get("prediction")
    if isinstance(prediction, str):
        broken = surrogate_at(prediction)
        if broken is None:
            return ResponseRecord(**common, outcome="ok", text=prediction)
        problem = f"a lone UTF-16 surrogate at character {broken} (not valid Unicode)"
    else:
        problem = "missing or not a string"
    summary.failed_predictions += 1
    summary.problems.append(RowIssue(source, row, raw["id"], "prediction", problem))
    return ResponseRecord(**common, outcome="error", error=f"prediction in file: {problem}")


def _require_usable(
    file: Path, rows: list[Any], records: list[ResponseRecord], summary: ImportSummary
) -> None:
    """A file without a single prediction would only replace responses by nothing."""
    if any(rec.outcome == "ok" for rec in records):
        return
    rejected = summary.skipped + summary.duplicates
    first = f"; first problem: {summary.problems[0]}" if summary.problems else ""
    raise HolisafeError(
        f"{file}: no usable record ({len(rows)} row(s): {rejected} rejected, "
        f"{summary.failed_predictions} without a prediction){first}; nothing imported"
    )


def _refuse_to_replace(responses_path: Path, model: str) -> None:
    if not responses_path.exists() or responses_path.stat().st_size == 0:
        return
    stored = len(RecordStore(responses_path, ResponseRecord).read())
    raise HolisafeError(
        f"{model} already has {stored} responses ({responses_path}); import replaces them "
        "all: pass --overwrite to replace them, or import under another --model"
    )


def _write_lines_atomic(path: Path, lines: list[str]) -> None:
    """Readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def _against_dataset(raw: dict, bench: Benchmark, source: str, row: int) -> list[RowIssue]:
    sample = bench.by_id.get(raw["id"])
    if sample is None:
        return [RowIssue(source, row, raw["id"], "id", "not in the dataset")]
    return [
        RowIssue(
            source,
            row,
            raw["id"],
            name,
            f"{raw[name]!r} differs from the dataset's {getattr(sample, name)!r}",
        )
        for name in ("type", "category", "subcategory", "query")
        if raw[name] != getattr(sample, name)
    ]


def export_predictions(
    model: str, layout: ResultsLayout, out_file: Path, *, bench: Benchmark | None = None
) -> int:
    """Write responses in the official format; returns how many records were written.
    Original records come from the dataset when given, else from the import side file.
    Only answered samples (outcome ok) are written: the format cannot express a failed call
    or a provider block, and an empty prediction would read back as a compliant answer."""
    responses = RecordStore(layout.responses(model), ResponseRecord).read()
    if not responses:
        raise HolisafeError(f"no responses for {model!r} at {layout.responses(model)}")
    originals: dict[int, dict[str, Any]] = {}
    if bench is not None:
        originals = {s.id: {k: getattr(s, k) for k in OFFICIAL_FIELDS} for s in bench.samples}
    else:
        side = source_records_path(layout, model)
        if not side.exists():
            raise HolisafeError(
                f"{model}: responses were not imported from an official file; pass --dataset "
                "so the original records can be written"
            )
        for line in side.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            originals[rec["id"]] = rec
    out = []
    for sample_id, resp in responses.items():
        if resp.outcome != "ok" or sample_id not in originals:
            continue
        out.append({**originals[sample_id], "prediction": resp.text})
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return len(out)
