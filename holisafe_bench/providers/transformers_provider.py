"""Hugging Face transformers: AutoProcessor + AutoModelForImageTextToText, batched greedy
generate with left padding. Also serves custom architectures (`trust_remote_code`), such as
the authors' Safe-VLMs, and the tiny random-weight demo model (`builtin:tiny-llava`)."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.provenance import sha256_text
from holisafe_bench.providers.base import BatchProvider
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.records import Usage
from holisafe_bench.registry import ModelSpec

BUILTIN_PREFIX = "builtin:"


def resolve_checkpoint(checkpoint: str) -> str:
    if checkpoint == f"{BUILTIN_PREFIX}tiny-llava":
        from holisafe_bench.tiny_models import ensure_tiny_llava

        return str(ensure_tiny_llava())
    if checkpoint.startswith(BUILTIN_PREFIX):
        raise HolisafeError(f"unknown built-in checkpoint {checkpoint!r} (builtin:tiny-llava)")
    return checkpoint


class TransformersProvider(BatchProvider):
    provider_name = "transformers"

    def __init__(self, spec: ModelSpec) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.spec = spec
        engine = spec.engine
        self.checkpoint = resolve_checkpoint(spec.checkpoint)
        common: dict[str, Any] = {
            "revision": spec.revision,
            "trust_remote_code": engine.trust_remote_code,
        }
        try:
            self.processor = AutoProcessor.from_pretrained(self.checkpoint, **common)
            model_kwargs: dict[str, Any] = {"dtype": engine.dtype, **common}
            if engine.device_map:
                model_kwargs["device_map"] = engine.device_map
            try:
                self.model = AutoModelForImageTextToText.from_pretrained(
                    self.checkpoint, **model_kwargs
                )
            except ValueError:
                if not engine.trust_remote_code:
                    raise
                # Custom architectures register under the causal-LM auto class.
                from transformers import AutoModelForCausalLM

                self.model = AutoModelForCausalLM.from_pretrained(self.checkpoint, **model_kwargs)
        except (OSError, ValueError, ImportError) as exc:
            raise HolisafeError(
                f"cannot load {spec.name!r} from {self.checkpoint!r}: {exc}. Check the "
                "checkpoint id, HF_TOKEN for gated models, the network or HF cache, and "
                "trust_remote_code for custom architectures."
            ) from exc
        if not engine.device_map:
            self.model.to("cuda" if torch.cuda.is_available() else "cpu")
        self.model.eval()
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        tokenizer.padding_side = "left"  # decoder-only batching needs left padding
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.chat_template: str | None = None
        if engine.chat_template:
            self.chat_template = Path(engine.chat_template).read_text(encoding="utf-8")
        self.batch_size = engine.batch_size or 8

    def describe(self) -> dict[str, Any]:
        template = self.chat_template or getattr(self.processor, "chat_template", None)
        return {
            "provider": self.provider_name,
            "checkpoint": self.checkpoint,
            "revision": self.spec.revision,
            "dtype": str(self.model.dtype),
            "chat_template_hash": sha256_text(template) if template else None,
            "chat_template_overridden": self.chat_template is not None,
        }

    def close(self) -> None:
        del self.model

    def _prompt(self, request: ChatRequest) -> str:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        content = [{"type": "image"} for _ in request.images]
        content.append({"type": "text", "text": request.text})
        messages.append({"role": "user", "content": content})
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, chat_template=self.chat_template
        )

    @staticmethod
    def _images(request: ChatRequest) -> list[Any]:
        from PIL import Image

        out = []
        for image in request.images:
            with Image.open(io.BytesIO(image.read_bytes())) as img:
                out.append(img.convert("RGB"))
        return out

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        results: dict[str, ChatResult] = {}
        prepared = []
        for request in requests:
            try:
                prepared.append((request, self._prompt(request), self._images(request)))
            except Exception as exc:  # one bad image fails one sample, not the batch
                results[request.id] = ChatResult(
                    id=request.id, outcome="error", error=f"input: {type(exc).__name__}: {exc}"
                )
        groups: dict[tuple[int, float], list] = {}
        for item in prepared:
            groups.setdefault((item[0].max_tokens, item[0].temperature), []).append(item)
        for group in groups.values():
            try:
                for result in self._generate(group):
                    results[result.id] = result
            except Exception:
                # Find the culprit: fall back to one request at a time.
                for item in group:
                    try:
                        results[item[0].id] = self._generate([item])[0]
                    except Exception as exc:
                        results[item[0].id] = ChatResult(
                            id=item[0].id,
                            outcome="error",
                            error=f"generate: {type(exc).__name__}: {exc}",
                        )
        return [results[r.id] for r in requests]

    def _generate(self, items: list) -> list[ChatResult]:
        import torch

        first = items[0][0]
        started = time.monotonic()
        images = [img for _, _, imgs in items for img in imgs]
        inputs = self.processor(
            images=images or None,
            text=[prompt for _, prompt, _ in items],
            return_tensors="pt",
            padding=True,
        ).to(self.model.device)
        sampling: dict[str, Any] = {"do_sample": first.temperature > 0}
        if first.temperature > 0:
            sampling["temperature"] = first.temperature
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=first.max_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = output[:, prompt_len:]
        latency = (time.monotonic() - started) / len(items)
        eos = self.tokenizer.eos_token_id
        results = []
        for row, (request, _, _) in enumerate(items):
            tokens = new_tokens[row].tolist()
            ended = eos in tokens
            produced = (
                tokens.index(eos) + 1
                if ended
                else len([t for t in tokens if t != self.tokenizer.pad_token_id])
            )
            results.append(
                ChatResult(
                    id=request.id,
                    outcome="ok",
                    text=self.tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                    finish_reason="stop" if ended else "length",
                    usage=Usage(
                        input_tokens=int(inputs["attention_mask"][row].sum()),
                        output_tokens=produced,
                    ),
                    latency_s=latency,
                )
            )
        return results
