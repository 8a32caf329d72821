"""The guard stage's files: one `GuardRecord` per sample in
results/<guard>/guard/<protocol>.jsonl, and a `GuardManifest` beside it."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from holisafe_bench.guarding.verdict import GuardVerdict, Protocol
from holisafe_bench.records import Invocation, Manifest, Sample, Usage, utc_now
from holisafe_bench.taxonomy import IMAGE_SAFETY_LABELS, SAFE_TYPE, SampleType

GuardOutcome = Literal["ok", "invalid", "error"]


def truth_unsafe(sample: Sample, protocol: str) -> bool:
    """The ground truth a protocol scores against: the image's harmfulness (`image`), or
    the request's, where only SSS is safe (`input`)."""
    return not sample.image_safe if protocol == "image" else sample.type != SAFE_TYPE


class GuardRecord(BaseModel):
    """A guard's verdict on one sample, with the ground truth it is scored against.

    outcome `ok`: `unsafe` is set; `invalid`: the guard answered but its output could not be
    read (`reason` says why, `raw` keeps it; never counted as safe or unsafe); `error`: no
    output (redone on the next run)."""

    model_config = ConfigDict(extra="forbid")

    sample_id: int
    guard: str
    protocol: Protocol
    type: SampleType
    category: str
    subcategory: str
    truth_unsafe: bool
    truth_label: str  # the image's HoliSafe label ("safe" or one of the 19 harms)
    outcome: GuardOutcome
    unsafe: bool | None = None
    score: float | None = None  # P(unsafe) when the guard gives one
    category_raw: str | None = None  # in the guard's own taxonomy
    predicted_label: str | None = None  # mapped onto HoliSafe's image labels, or "other"
    probs: dict[str, float] | None = None  # a classifier's probabilities by name
    raw: str | None = None  # the guard's output as it came
    reason: str | None = None  # why invalid or error
    usage: Usage = Field(default_factory=Usage)
    latency_s: float | None = None
    created_at: str = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _outcome_consistent(self) -> GuardRecord:
        if (self.outcome == "ok") != (self.unsafe is not None):
            raise ValueError("'unsafe' is set exactly when outcome is 'ok'")
        if self.outcome != "ok" and not self.reason:
            raise ValueError(f"outcome {self.outcome!r} needs a reason")
        return self

    @property
    def is_complete(self) -> bool:
        """Done for resume purposes: errors are redone, invalid outputs are results."""
        return self.outcome != "error"

    @classmethod
    def for_sample(cls, sample: Sample, guard: str, protocol: str, **fields: Any) -> GuardRecord:
        return cls(
            sample_id=sample.id,
            guard=guard,
            protocol=protocol,
            type=sample.type,
            category=sample.category,
            subcategory=sample.subcategory,
            truth_unsafe=truth_unsafe(sample, protocol),
            truth_label=IMAGE_SAFETY_LABELS[sample.image_safety_label],
            **fields,
        )

    @classmethod
    def from_verdict(
        cls, sample: Sample, guard: str, protocol: str, verdict: GuardVerdict, **fields: Any
    ) -> GuardRecord:
        return cls.for_sample(
            sample,
            guard,
            protocol,
            outcome="ok" if verdict.invalid is None else "invalid",
            unsafe=verdict.unsafe,
            score=verdict.score,
            category_raw=verdict.category_raw,
            predicted_label=verdict.category,
            reason=verdict.invalid,
            **fields,
        )


class GuardManifest(Manifest):
    omitted_when_none: ClassVar[frozenset[str]] = frozenset({"provider_details"})

    stage: str = "guard"
    guard: str
    display_name: str | None = None
    protocol: Protocol
    kind: str
    model_id: str | None = None
    model_revision: str | None = None
    provider: str | None = None
    parser: str
    taxonomy: str | None = None
    prompt_sha256: str | None = None  # of the prompt template this protocol used
    max_tokens: int | None = None
    usage: Usage = Field(default_factory=Usage)
    invocations: list[Invocation] = Field(default_factory=list)
    skipped_rows: list[dict[str, Any]] = Field(default_factory=list)
    shard: str | None = None
    provider_details: dict[str, Any] | None = None
