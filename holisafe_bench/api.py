"""Results as pandas DataFrames, for analysts: `holisafe_bench.load(results_dir)`.

Nothing here computes a number of its own. Verdicts are the current ones exactly as
`score` counts them (`scoring.load_current_verdicts` against `scoring.CurrentResponses`:
a verdict whose judged response was replaced is left out), and the scores are
`scoring.score_model`'s cards flattened into rows, so a DataFrame and `score --json`
always agree. Rates are percentages as unrounded floats (NaN where undefined).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd

from holisafe_bench.errors import HolisafeError
from holisafe_bench.paths import DEFAULT_RESULTS_ROOT, ResultsLayout
from holisafe_bench.records import ResponseRecord
from holisafe_bench.scoring import (
    CurrentResponses,
    CurrentVerdicts,
    GroupScore,
    ScoreCard,
    VerdictRow,
    load_current_verdicts,
    score_model,
)
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import (
    CATEGORY_OF,
    SAFE_TYPE,
    TYPES,
    UNSAFE_TYPES,
    image_is_safe,
    safety_label,
)

TAXONOMY_COLUMNS = ["type", "category", "subcategory", "image_safe", "text_safe", "safety_label"]
RESPONSE_COLUMNS = [
    "model",
    "sample_id",
    *TAXONOMY_COLUMNS,
    "outcome",
    "text",
    "finish_reason",
    "error",
    "input_tokens",
    "output_tokens",
    "latency_s",
    "source",
    "created_at",
    "response_sha256",
]
VERDICT_COLUMNS = [
    "model",
    "judge",
    "sample_id",
    *TAXONOMY_COLUMNS,
    "follows",
    "violates",
    "invalid",
    "detail",
    "cached",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "response_sha256",
    "created_at",
]
SCORE_COLUMNS = [
    "model",
    "judge",
    "masr_definition",
    "masr",
    "rr",
    *(f"asr_{t}" for t in UNSAFE_TYPES),
    "masr_best",
    "masr_worst",
    "n",
    "valid",
    "invalid",
    "stale",
    "unreadable",
]
TYPE_COLUMNS = ["model", "judge", "type", "metric", "n", "valid", "invalid", "violations", "rate"]
GROUP_COLUMNS = ["model", "judge", "level", "category", "subcategory", "n", "invalid", "masr", "rr"]
GUARD_COLUMNS = [
    "guard",
    "protocol",
    "sample_id",
    *TAXONOMY_COLUMNS,
    "truth_unsafe",
    "truth_label",
    "outcome",
    "unsafe",
    "score",
    "category_raw",
    "predicted_label",
    "raw",
    "reason",
    "created_at",
]
_BOOLEAN_COLUMNS = (
    "image_safe",
    "text_safe",
    "follows",
    "violates",
    "cached",
    "truth_unsafe",
    "unsafe",
)


@dataclass(frozen=True)
class Results:
    """A results folder as DataFrames. `verdicts` has one row per model x sample x judge
    (current verdicts only); `scores` one per model x judge, `by_type` one per model x
    judge x type, `groups` one per model x judge x category and subcategory; `guards` one
    per guard x protocol x sample (`holisafe-bench guard`; `unsafe` is <NA> where the
    guard's output was invalid or the call failed)."""

    responses: pd.DataFrame
    verdicts: pd.DataFrame
    scores: pd.DataFrame
    by_type: pd.DataFrame
    groups: pd.DataFrame
    guards: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=GUARD_COLUMNS))

    @property
    def samples(self) -> pd.DataFrame:
        """The responses, one row per model x sample, with a `follows:<judge>` column per
        judge (True: the model behaved as expected; <NA>: invalid or not judged)."""
        if self.verdicts.empty:
            return self.responses.copy()
        wide = self.verdicts.pivot(index=["model", "sample_id"], columns="judge", values="follows")
        wide.columns = [f"follows:{judge}" for judge in wide.columns]
        merged = self.responses.merge(wide.reset_index(), on=["model", "sample_id"], how="left")
        return merged.astype({column: "boolean" for column in wide.columns})


def load(
    results_dir: str | Path = DEFAULT_RESULTS_ROOT,
    *,
    models: Sequence[str] | None = None,
    judges: Sequence[str] | None = None,
    pooled: bool = False,
) -> Results:
    """Read a results folder (what `run`, `judge` and `import` wrote) into DataFrames.
    `models` / `judges` narrow it (default: all found); `pooled` scores mASR as `score
    --pooled` does."""
    layout = ResultsLayout(Path(results_dir))
    if not layout.root.is_dir():
        raise HolisafeError(f"no results folder at {layout.root}: run `holisafe-bench run` first")
    found_models = sorted(
        set(layout.models_with_responses()) | set(layout.models_with_any_verdicts())
    )
    chosen_models = _choose(models, found_models, "model", layout.root)
    chosen_judges = _choose(judges, layout.judges_with_verdicts(), "judge", layout.root)
    current = CurrentResponses(layout)
    responses: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    cards: list[ScoreCard] = []
    for model in chosen_models:
        responses += _response_rows(layout, model, current.of(model))
        for judge in chosen_judges:
            path = layout.verdicts(model, judge)
            if not path.exists():
                continue
            verdicts += _verdict_rows(load_current_verdicts(path, current.of(model)), model, judge)
            card = score_model(layout, model, judge, pooled=pooled, responses=current)
            if not card.skipped.no_verdicts:  # as `score`: an empty file has no score
                cards.append(card)
    return Results(
        responses=_frame(responses, RESPONSE_COLUMNS),
        verdicts=_frame(verdicts, VERDICT_COLUMNS),
        scores=_frame([_score_row(card) for card in cards], SCORE_COLUMNS),
        by_type=_frame([row for card in cards for row in _type_rows(card)], TYPE_COLUMNS),
        groups=_frame([row for card in cards for row in _group_rows(card)], GROUP_COLUMNS),
        guards=_frame(_guard_rows(layout), GUARD_COLUMNS),
    )


def _guard_rows(layout: ResultsLayout) -> list[dict[str, Any]]:
    from holisafe_bench.analysis.guard_metrics import guards_with_verdicts, load_guard_records
    from holisafe_bench.guarding.verdict import PROTOCOLS

    rows = []
    for protocol in PROTOCOLS:
        for guard in guards_with_verdicts(layout, protocol):
            for record in load_guard_records(layout, guard, protocol)[0]:
                data = record.model_dump(exclude={"usage", "latency_s", "probs", "type"})
                taxonomy = _taxonomy(record.type, record.category, record.subcategory)
                rows.append({**data, **taxonomy})
    return rows


def _choose(wanted: Sequence[str] | None, found: list[str], what: str, root: Path) -> list[str]:
    """The names asked for (all found if none), refusing one that has no results: a typo
    must not look like a model or judge without data."""
    if wanted is None:
        return found
    missing = [name for name in wanted if name not in found]
    if missing:
        raise HolisafeError(
            f"no results for {what}(s) {', '.join(missing)} under {root}; "
            f"found: {', '.join(found) or 'none'}"
        )
    return list(dict.fromkeys(wanted))


def _taxonomy(sample_type: str, category: str, subcategory: str) -> dict[str, Any]:
    # A type code reads image / text / the pair (HOLISAFE.md): its second letter is the text.
    return {
        "type": sample_type,
        "category": category,
        "subcategory": subcategory,
        "image_safe": image_is_safe(sample_type),
        "text_safe": sample_type[1] == "S",
        "safety_label": safety_label(sample_type),
    }


def _response_rows(
    layout: ResultsLayout, model: str, fingerprints: dict[int, str]
) -> list[dict[str, Any]]:
    """The latest stored response per sample, with the fingerprint verdicts are checked
    against (from `CurrentResponses`, the same map `score` uses)."""
    records = RecordStore(layout.responses(model), ResponseRecord).read()
    return [
        {
            "model": model,
            "sample_id": rec.sample_id,
            **_taxonomy(rec.type, rec.category, rec.subcategory),
            "outcome": rec.outcome,
            "text": rec.text,
            "finish_reason": rec.finish_reason,
            "error": rec.error,
            "input_tokens": rec.usage.input_tokens,
            "output_tokens": rec.usage.output_tokens,
            "latency_s": rec.latency_s,
            "source": rec.source,
            "created_at": rec.created_at,
            "response_sha256": fingerprints.get(rec.sample_id),
        }
        for rec in sorted(records.values(), key=lambda r: r.sample_id)
    ]


def _verdict_rows(found: CurrentVerdicts, model: str, judge: str) -> list[dict[str, Any]]:
    """One row per current verdict: the checked fields scoring used, plus the audit fields
    of the decoded line they came from."""
    return [
        _verdict_row(row, found.records[row.sample_id], model, judge)
        for row in sorted(found.rows, key=lambda r: r.sample_id)
    ]


def _verdict_row(row: VerdictRow, data: dict[str, Any], model: str, judge: str) -> dict[str, Any]:
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return {
        "model": model,
        "judge": judge,
        "sample_id": row.sample_id,
        **_taxonomy(row.type, row.category, row.subcategory),
        "follows": row.follows,
        "violates": None if row.follows is None else not row.follows,
        "invalid": row.invalid,
        "detail": data.get("detail"),
        "cached": bool(data.get("cached", False)),
        "cost_usd": data.get("cost_usd", 0.0),
        "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
        "response_sha256": row.response_sha256,
        "created_at": data.get("created_at"),
    }


def _percent(rate: Fraction | None) -> float:
    return float("nan") if rate is None else float(rate * 100)


def _score_row(card: ScoreCard) -> dict[str, Any]:
    overall = card.overall
    best, worst = overall.masr_bounds()
    return {
        "model": card.model,
        "judge": card.judge,
        "masr_definition": "pooled" if card.pooled else "macro",
        "masr": _percent(overall.masr),
        "rr": _percent(overall.rr),
        **{f"asr_{t}": _percent(rate) for t, rate in overall.asr.items()},
        "masr_best": _percent(best),
        "masr_worst": _percent(worst),
        "n": overall.n,
        "valid": overall.n - overall.invalid,
        "invalid": overall.invalid,
        "stale": card.skipped.stale,
        "unreadable": card.skipped.unreadable,
    }


def _type_rows(card: ScoreCard) -> Iterable[dict[str, Any]]:
    for sample_type in TYPES:
        stats = card.overall.per_type[sample_type]
        yield {
            "model": card.model,
            "judge": card.judge,
            "type": sample_type,
            "metric": "RR" if sample_type == SAFE_TYPE else "ASR",
            "n": stats.n,
            "valid": stats.valid,
            "invalid": stats.invalid,
            "violations": stats.violations,
            "rate": _percent(stats.rate),
        }


def _group_rows(card: ScoreCard) -> Iterable[dict[str, Any]]:
    def row(level: str, category: str, subcategory: str | None, group: GroupScore) -> dict:
        return {
            "model": card.model,
            "judge": card.judge,
            "level": level,
            "category": category,
            "subcategory": subcategory,
            "n": group.n,
            "invalid": group.invalid,
            "masr": _percent(group.masr),
            "rr": _percent(group.rr),
        }

    for category, group in card.per_category.items():
        yield row("category", category, None, group)
    for subcategory, group in card.per_subcategory.items():
        # Scoring keys subcategories alone; the taxonomy names their category.
        yield row("subcategory", CATEGORY_OF.get(subcategory), subcategory, group)


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """A DataFrame with the declared columns even when empty; yes/no columns as pandas'
    nullable boolean (an invalid verdict's `follows` is <NA>, not a float NaN)."""
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({c: "boolean" for c in _BOOLEAN_COLUMNS if c in frame.columns})
