"""What a guard said about one sample, as read by its parser: the one shape every guard's
output is turned into, whatever the guard's own format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Protocol = Literal["image", "input"]
PROTOCOLS: tuple[str, ...] = ("image", "input")
# A guard's own category with no HoliSafe counterpart: counted as such, never dropped.
OTHER = "other"


@dataclass(frozen=True)
class GuardOutput:
    """A guard's raw output for one sample, as its provider returned it: generated text
    (with the first generated token's top log-probabilities when the engine gave them), or
    a classifier's probabilities by name (a safety head's categories, ShieldGemma's
    policies)."""

    text: str | None = None
    first_token_logprobs: dict[str, float] | None = None
    probs: dict[str, float] | None = None


@dataclass(frozen=True)
class GuardVerdict:
    """`unsafe` is None exactly when the output could not be read; `invalid` then says why.
    `score` is the guard's P(unsafe) in [0, 1] when it gives one; `category_raw` is the
    category in the guard's own taxonomy (e.g. "S1,S10", "O2"), `category` the HoliSafe
    image label it maps to (one of taxonomy.IMAGE_SAFETY_LABELS, or "other")."""

    unsafe: bool | None
    score: float | None = None
    category_raw: str | None = None
    category: str | None = None
    invalid: str | None = None

    def __post_init__(self) -> None:
        if (self.unsafe is None) == (self.invalid is None):
            raise ValueError("a guard verdict has exactly one of 'unsafe' and 'invalid'")
        if self.score is not None and not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score {self.score} is not in [0, 1]")

    @classmethod
    def unreadable(cls, reason: str) -> GuardVerdict:
        return cls(unsafe=None, invalid=reason)
