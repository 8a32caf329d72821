"""Request and result types of the provider layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from holisafe_bench.media import ImageInput
from holisafe_bench.records import Outcome, Usage

# ImageInput lives in holisafe_bench.media (the dataset makes them too); re-exported here for
# the providers, which take it as part of a request.
__all__ = ["ChatRequest", "ChatResult", "ImageInput"]


@dataclass(frozen=True)
class ChatRequest:
    """One user turn: images first, then text (HOLISAFE.md order)."""

    id: str
    text: str
    images: tuple[ImageInput, ...] = ()
    system: str | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float | None = None  # None: the provider's default (nucleus sampling off)
    # Guards: how many top alternatives of the first generated token to return with the
    # result (engines that cannot give them return none).
    logprobs: int | None = None


@dataclass
class ChatResult:
    id: str
    outcome: Outcome
    text: str | None = None
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_s: float | None = None
    error: str | None = None
    attempts: int = 1
    error_kind: Literal["timeout", "api_error", None] = None
    # The first generated token's top alternatives (token text -> log-probability), when
    # the request asked for `logprobs` and the engine gave them.
    first_token_logprobs: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.outcome == "ok" and self.text is None:
            raise ValueError("an ok result needs text")
        if self.outcome != "ok" and self.text is not None:
            raise ValueError("a failed or blocked result must not carry text")
