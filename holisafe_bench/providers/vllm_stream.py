"""One `vllm.LLM`'s engine driven request by request: no batch barrier.

`LLM.chat` renders every conversation, adds them all to the engine, then steps the engine
until the LAST of them finishes. `EngineFeed` does the same two things one request at a
time, through the same code: `submit` renders a conversation with the LLM's own chat
preprocessing (`_preprocess_chat_one`, what `LLM.chat` calls for each conversation, so the
prompt tokens are the same) and adds it with `llm_engine.add_request` exactly as `LLM.chat`
does (final output only, the multimodal LoRA resolution, priority 0); `step` runs one engine
step and returns the requests that finished in it. The caller keeps the engine's queue full
by submitting whenever a request finishes, and records each result as it comes.

Request ids are this feed's own (`holisafe-<n>`), so they never collide with the ids
`LLM.chat` draws from the LLM's counter when the caller falls back to it.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Generic, TypeVar

Tag = TypeVar("Tag")

# The LLM's private chat path this module relies on (vLLM 0.32); without it, batch mode.
REQUIRED_LLM_METHODS = ("_preprocess_chat_one", "_resolve_mm_lora")


def supports_streaming(llm: Any) -> bool:
    """True when this vLLM offers the request-level path `EngineFeed` uses."""
    engine = getattr(llm, "llm_engine", None)
    return (
        all(callable(getattr(llm, name, None)) for name in REQUIRED_LLM_METHODS)
        and callable(getattr(engine, "add_request", None))
        and callable(getattr(engine, "step", None))
    )


class EngineFeed(Generic[Tag]):
    """The requests in flight in one engine, each with the caller's tag."""

    _ids = itertools.count()  # unique across feeds sharing one engine

    def __init__(self, llm: Any, chat_template: str | None) -> None:
        self.llm = llm
        self.chat_template = chat_template
        self._live: dict[str, Tag] = {}

    def __len__(self) -> int:
        return len(self._live)

    def submit(self, tag: Tag, conversation: list[dict[str, Any]], params: Any) -> None:
        """Render and add one request; an exception means this request was not added."""
        from vllm.sampling_params import RequestOutputKind

        llm = self.llm
        engine_input = llm._preprocess_chat_one(
            conversation, chat_template=self.chat_template, add_generation_prompt=True
        )
        params.output_kind = RequestOutputKind.FINAL_ONLY  # as LLM.chat: the final output only
        request_id = f"holisafe-{next(self._ids)}"
        llm.llm_engine.add_request(
            request_id,
            engine_input,
            params,
            lora_request=llm._resolve_mm_lora(engine_input, None),
            priority=0,
        )
        self._live[request_id] = tag

    def step(self) -> list[tuple[Tag, Any]]:
        """One engine step (it blocks until the engine has output): the requests that
        finished in it, as (tag, RequestOutput)."""
        finished = []
        for output in self.llm.llm_engine.step():
            if output.finished and output.request_id in self._live:
                finished.append((self._live.pop(output.request_id), output))
        return finished

    def abort_all(self) -> list[Tag]:
        """Drop every request in flight (best effort: the engine may be broken); their tags."""
        ids, tags = list(self._live), list(self._live.values())
        self._live.clear()
        with contextlib.suppress(Exception):
            self.llm.llm_engine.abort_request(ids)
        return tags
