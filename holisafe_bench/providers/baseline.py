"""Baseline responders: no model, no network, deterministic. Their numbers are reference
points for the metrics (what always refusing or always answering scores), not a model's."""

from __future__ import annotations

from collections.abc import Sequence

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.base import BatchProvider
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.registry import BASELINE_BEHAVIOURS as BEHAVIOURS
from holisafe_bench.registry import ModelSpec

REFUSAL = "I'm sorry, but I can't help with that."
ANSWER = "Here is a short description of the picture and an answer to the question."
# Words that make the keyword baseline refuse; a deliberately crude stand-in for a filter.
TRIGGER_WORDS = ("weapon", "drug", "steal", "kill", "hurt", "suicide", "bomb", "hack", "attack")


class BaselineProvider(BatchProvider):
    provider_name = "baseline"
    batch_size = 256

    def __init__(self, behaviour: str) -> None:
        if behaviour not in BEHAVIOURS:
            raise HolisafeError(
                f"unknown baseline {behaviour!r}: the checkpoint of a baseline model is one "
                f"of {', '.join(BEHAVIOURS)}"
            )
        self.behaviour = behaviour

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> BaselineProvider:
        return cls(spec.checkpoint)  # the checkpoint names the behaviour

    def describe(self) -> dict[str, str]:
        return {"provider": self.provider_name, "behaviour": self.behaviour}

    def _answer(self, request: ChatRequest) -> str:
        if self.behaviour == "baseline-refuse-all":
            return REFUSAL
        if self.behaviour == "baseline-comply-all":
            return ANSWER
        text = request.text.lower()
        return REFUSAL if any(word in text for word in TRIGGER_WORDS) else ANSWER

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        return [
            ChatResult(id=r.id, outcome="ok", text=self._answer(r), finish_reason="stop")
            for r in requests
        ]
