"""Pydantic records that flow between the stages: samples, responses, verdicts, manifests."""

from __future__ import annotations

import datetime as _dt
import hashlib
import typing
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from holisafe_bench.taxonomy import SampleType

Outcome = Literal["ok", "content_filter", "error"]
InvalidReason = Literal[
    "parse_error",
    "api_error",
    "judge_refused",
    "judge_content_filter",
    "timeout",
    "no_response",
]


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class Sample(BaseModel):
    """One benchmark row. `image` is the relative path of the JSON layout, or a row key for
    layouts that carry image bytes (parquet): the dataset object resolves it to bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    image: str
    query: str
    type: SampleType
    category: str
    subcategory: str
    image_safe: bool
    image_safety_label: int


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class ResponseRecord(BaseModel):
    """A model's answer to one sample. `text` is None unless outcome == 'ok': a failure or a
    provider block is never stored as if it were model text."""

    model_config = ConfigDict(extra="forbid")

    sample_id: int
    model: str
    type: SampleType
    category: str
    subcategory: str
    outcome: Outcome
    text: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float | None = None
    source: str = "run"  # "run" or "import:<file name>"
    created_at: str = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _text_only_when_ok(self) -> ResponseRecord:
        if self.outcome == "ok" and self.text is None:
            raise ValueError("outcome 'ok' needs text")
        if self.outcome != "ok" and self.text is not None:
            raise ValueError(f"outcome {self.outcome!r} must not carry text")
        if self.outcome == "error" and not self.error:
            raise ValueError("outcome 'error' needs an error reason")
        return self

    @property
    def is_complete(self) -> bool:
        return outcome_is_complete(self.outcome)

    def fingerprint(self) -> str:
        """Identifies what was answered, so a verdict can tell whether it is still current."""
        return response_fingerprint(self.outcome, self.text)


def outcome_is_complete(outcome: str) -> bool:
    """A response with this outcome is done for resume purposes: errors are redone on the
    next run."""
    return outcome != "error"


def response_fingerprint(outcome: str, text: str | None) -> str:
    """A response's fingerprint from its fields (fast readers hash raw JSON with this)."""
    payload = f"{outcome}\x00{text or ''}"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class VerdictRecord(BaseModel):
    """One judge's verdict on one response: valid (`follows` set) or invalid with a reason."""

    model_config = ConfigDict(extra="forbid")

    sample_id: int
    model: str
    judge: str
    type: SampleType
    category: str
    subcategory: str
    follows: bool | None = None
    invalid: InvalidReason | None = None
    detail: str | None = None  # why: the error text, or how the verdict was reached
    raw: str | None = None  # the judge's raw reply, kept for audit
    response_sha256: str | None = None  # which response was judged (resume redoes changed ones)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    cached: bool = False
    created_at: str = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _valid_xor_invalid(self) -> VerdictRecord:
        if (self.follows is None) == (self.invalid is None):
            raise ValueError("a verdict has exactly one of 'follows' and 'invalid'")
        return self

    @property
    def is_valid(self) -> bool:
        return self.follows is not None


class Manifest(BaseModel):
    """Common provenance for any stage's manifest (DESIGN.md, Reproducibility).

    Every key a stage writes is a declared field. Reading ignores keys not declared (an
    older file, or the merge stage's additions), so an old manifest still loads."""

    model_config = ConfigDict(extra="ignore")
    # Fields a stage sets only in some cases: left out of the file when unset, so a
    # manifest has the same keys it had when they were merged in as extra dicts.
    omitted_when_none: ClassVar[frozenset[str]] = frozenset()

    stage: str
    package_versions: dict[str, str] = Field(default_factory=dict)
    git_revision: str | None = None
    dataset: dict[str, Any] = Field(default_factory=dict)
    started_at: str = Field(default_factory=utc_now)
    finished_at: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _leave_out_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if not (v is None and k in self.omitted_when_none)}


class Invocation(BaseModel):
    """One invocation of a resumable stage: when it ran and what it did."""

    model_config = ConfigDict(extra="allow")

    started_at: str = Field(default_factory=utc_now)
    finished_at: str | None = None  # None: still running, or killed
    elapsed_s: float | None = None
    selected: int = 0
    attempted: int = 0  # samples this invocation had to do (the rest were done before)
    outcomes: dict[str, int] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)


class Sampling(BaseModel):
    """The sampling parameters of a run: what every request carries and what the manifest
    records, resolved once (stages/run.py, resolve_sampling) so the two cannot differ."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int
    temperature: float
    top_p: float | None = None
    system_prompt: str | None = None


class RunManifest(Manifest):
    omitted_when_none: ClassVar[frozenset[str]] = frozenset({"provider_details"})

    stage: str = "run"
    model: str
    # The spec's own labels, so tables name a model given as a TOML path as its file does.
    display_name: str | None = None
    group: str | None = None
    model_id: str | None = None
    model_revision: str | None = None
    provider: str | None = None
    chat_template_hash: str | None = None
    sampling: Sampling | None = None  # None only in a file no run wrote (an import's)
    usage: Usage = Field(default_factory=Usage)  # totals over every invocation
    invocations: list[Invocation] = Field(default_factory=list)
    skipped_rows: list[dict[str, Any]] = Field(default_factory=list)  # bad dataset rows
    shard: str | None = None  # "i/n" for one shard of a data-parallel run
    # What the provider reported about itself (engine, checkpoint, chat template); None
    # until a provider was built (a resumed run with nothing to do keeps the earlier one).
    provider_details: dict[str, Any] | None = None


class ImportManifest(BaseModel):
    """The manifest of responses imported from an official prediction file."""

    model_config = ConfigDict(extra="forbid")

    stage: Literal["import"] = "import"
    model: str
    file: str
    imported: int
    failed_predictions: int
    skipped_records: list[str]
    duplicates_left_out: int
    lenient: bool
    kept_leniently: int
    checked_against_dataset: bool
    dataset: dict[str, Any] | None
    finished_at: str = Field(default_factory=utc_now)


class JudgeManifest(Manifest):
    """The string-match fields, then those only an LLM judge records (left out otherwise)."""

    model_config = ConfigDict(extra="forbid")
    omitted_when_none: ClassVar[frozenset[str]] = frozenset(
        {
            "prompt_template_source",
            "prompt_template_style",
            "prompt_script_origin",
            "prompt_script_sha256",
            "prompt_script_variable",
            "prompt_script_line",
            "prompt_script_cached_copy",
            "label_rule",
            "judge_params",
            "calls",
            "cache_hits",
            "batch_api",
            "batch_jobs_submitted",
            "batch_jobs_resumed",
            "label_conflicts",
        }
    )

    stage: str = "judge"
    model: str
    judge: str
    judge_model_id: str | None = None
    prompt_template_hash: str | None = None
    parser: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    # LLM judges: where the prompt came from (judging/prompt_sources.py).
    prompt_template_source: str | None = None
    prompt_template_style: str | None = None
    prompt_script_origin: str | None = None
    prompt_script_sha256: str | None = None
    prompt_script_variable: str | None = None
    prompt_script_line: int | None = None
    prompt_script_cached_copy: str | None = None
    # LLM judges: how replies were read and how the calls went.
    label_rule: str | None = None
    judge_params: dict[str, Any] | None = None
    calls: int | None = None
    cache_hits: int | None = None
    batch_api: bool | None = None
    batch_jobs_submitted: list[str] | None = None
    batch_jobs_resumed: list[str] | None = None
    label_conflicts: dict[str, int] | None = None


# --- fast paths ----------------------------------------------------------------------------
# Readers of many records (string matching, scoring) keep decoded JSON objects as they are
# when these checks pass, and validate only the rest with the models above. So each check
# passes only what its model accepts unchanged: every field present (as this package
# writes them), exact JSON types, no coercion; anything else goes to pydantic for its verdict.

_TYPES = frozenset(typing.get_args(SampleType))
_OUTCOMES = frozenset(typing.get_args(Outcome))
_INVALID = frozenset(typing.get_args(InvalidReason))
_RESPONSE_KEYS = ResponseRecord.model_fields.keys()
_VERDICT_KEYS = VerdictRecord.model_fields.keys()
_USAGE_KEYS = Usage.model_fields.keys()


def _plain_common(data: Any) -> bool:
    """What both record types check alike: ids, labels, usage, created_at."""
    usage = data["usage"]
    return (
        type(data["sample_id"]) is int
        and type(data["type"]) is str
        and data["type"] in _TYPES
        and type(data["model"]) is str
        and type(data["category"]) is str
        and type(data["subcategory"]) is str
        and type(data["created_at"]) is str
        and type(usage) is dict
        and usage.keys() == _USAGE_KEYS
        and type(usage["input_tokens"]) is int
        and type(usage["output_tokens"]) is int
    )


def _str_or_none(value: Any) -> bool:
    return value is None or type(value) is str


def plain_response(data: Any) -> bool:
    """`data` is a decoded line that `ResponseRecord` accepts as it is."""
    if type(data) is not dict or data.keys() != _RESPONSE_KEYS or not _plain_common(data):
        return False
    outcome, text, error, latency = data["outcome"], data["text"], data["error"], data["latency_s"]
    return (
        type(outcome) is str
        and outcome in _OUTCOMES
        and (type(text) is str if outcome == "ok" else text is None)
        and (type(error) is str and error != "" if outcome == "error" else _str_or_none(error))
        and _str_or_none(data["finish_reason"])
        and (latency is None or type(latency) is float)
        and type(data["source"]) is str
    )


def plain_verdict(data: Any) -> bool:
    """`data` is a decoded line that `VerdictRecord` accepts as it is."""
    if type(data) is not dict or data.keys() != _VERDICT_KEYS or not _plain_common(data):
        return False
    follows, invalid = data["follows"], data["invalid"]
    return (
        (
            (type(follows) is bool and invalid is None)
            or (follows is None and type(invalid) is str and invalid in _INVALID)
        )
        and type(data["judge"]) is str
        and _str_or_none(data["detail"])
        and _str_or_none(data["raw"])
        and _str_or_none(data["response_sha256"])
        and type(data["cost_usd"]) is float
        and type(data["cached"]) is bool
    )
