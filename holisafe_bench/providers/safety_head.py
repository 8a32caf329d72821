"""A Safe-VLM's visual guard module as a classifier: one forward pass per batch with
`do_safety=True` (no generation), read from `img_safety_probs`, the softmax over the
categories the checkpoint names in `config.safety_categories` (the authors' interface).

The checkpoint is loaded exactly as `run` loads it for generation (the transformers
provider: remote code, the snapshot's package on sys.path, llava_v1 or the processor's chat
template, dtype, device), and each request becomes the prompt generation would get: the
image and the request's text through the same template. A batch of prompts of different
lengths is left-padded with an attention mask (the processor's own padding for processor
models; for llava_v1, the ids padded here), which LLaVA-style remote code uses to drop
the padding before splicing the image in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.base import ClassifierProvider, ClassifyResult
from holisafe_bench.providers.types import ChatRequest
from holisafe_bench.registry import ModelSpec

PROBS_FIELD = "img_safety_probs"
# What the authors' SafeLLaVA example passes beside do_safety=True (its head may read the
# hidden states); their SafeQwen and SafeGem examples pass do_safety=True alone.
LLAVA_SAFETY_KWARGS = {"output_hidden_states": True, "return_dict": True}
DEFAULT_BATCH_SIZE = 16
# Half-precision softmax may stray this far outside [0, 1]; such values are clamped, larger
# excursions (or NaN) make the row an error.
PROB_TOLERANCE = 1e-3


@dataclass
class _Prepared:
    """A batch ready for its forward pass: the requests, results already known (inputs that
    could not be read), the items to classify, and their encoded batch (None: encoding
    failed, so each is encoded alone)."""

    requests: list[ChatRequest]
    results: dict[str, ClassifyResult] = field(default_factory=dict)
    items: list = field(default_factory=list)
    batch: dict[str, Any] | None = None


class SafetyHeadClassifier(ClassifierProvider):
    provider_name = "transformers"

    def __init__(self, spec: ModelSpec, *, batch_size: int | None = None, **unknown: Any) -> None:
        from holisafe_bench.providers.transformers_provider import TransformersProvider

        reject_unknown_options("safety_head", unknown, ("batch_size",))
        self.spec = spec
        self.engine = TransformersProvider(spec)  # the loading `run` does, unchanged
        self.model = self.engine.model
        self.inputs = self.engine.inputs
        self.categories = _categories(self.model.config, spec)
        self.batch_size = batch_size or spec.engine.batch_size or DEFAULT_BATCH_SIZE

    def describe(self) -> dict[str, Any]:
        details = self.engine.describe()
        details.pop("checkpoint_generation_config", None)  # nothing is generated
        return {
            **details,
            "classifier": "safety_head",
            "output_field": PROBS_FIELD,
            "safety_categories": list(self.categories),
            "batch_size": self.batch_size,
        }

    @property
    def prepares_ahead(self) -> bool:
        # benchmarks/guard_speed.py on the CPU: a thread preparing ahead made batched
        # classification 10-40% slower than preparing each batch before its forward pass.
        return self.model is not None and self.model.device.type != "cpu"

    def close(self) -> None:
        self.model = None
        self.engine.close()

    def classify_batch(self, requests: Sequence[ChatRequest]) -> list[ClassifyResult]:
        """One forward pass for the batch; if it fails, one request at a time, so a
        failing request fails alone."""
        return self.classify_prepared(self.prepare(requests))

    def prepare(self, requests: Sequence[ChatRequest]) -> _Prepared:
        """Images read, prompts built and the batch encoded, with no model call."""
        prepared = _Prepared(list(requests))
        prepared.items = self._prepare(requests, prepared.results)
        if prepared.items:
            try:
                prepared.batch = self._encode(prepared.items)
            except Exception:  # noqa: BLE001 - encoded one by one in classify_prepared
                prepared.batch = None
        return prepared

    def classify_prepared(self, prepared: _Prepared) -> list[ClassifyResult]:
        results, items = prepared.results, prepared.items
        if items:
            try:
                if prepared.batch is None:
                    raise ValueError("the batch did not encode")
                results.update(self._forward(items, prepared.batch))
            except Exception:  # find the culprit: one request at a time
                for item in items:
                    results.update(self._classify_alone(item))
        return [results[r.id] for r in prepared.requests]

    def _prepare(self, requests: Sequence[ChatRequest], failed: dict[str, ClassifyResult]) -> list:
        """(request, prompt, images) per request, as generation makes them; a request whose
        image cannot be read is an error result in `failed`."""
        from holisafe_bench.providers.transformers_provider import pil_images

        items = []
        for request in requests:
            try:
                items.append((request, self.inputs.prompt(request), pil_images(request)))
            except Exception as exc:  # one bad image fails one sample, not the batch
                failed[request.id] = ClassifyResult(
                    id=request.id, error=f"input: {type(exc).__name__}: {exc}"
                )
        return items

    def _classify_alone(self, item: tuple) -> dict[str, ClassifyResult]:
        try:
            return self._classify([item])
        except Exception as exc:
            request_id = item[0].id
            error = f"forward: {type(exc).__name__}: {exc}"
            return {request_id: ClassifyResult(id=request_id, error=error)}

    def _classify(self, items: list) -> dict[str, ClassifyResult]:
        return self._forward(items, self._encode(items))

    def _forward(self, items: list, batch: dict[str, Any]) -> dict[str, ClassifyResult]:
        import torch

        started = time.monotonic()
        with torch.inference_mode():
            output = self.model(**batch, do_safety=True)
        probs = getattr(output, PROBS_FIELD, None)
        if probs is None:
            raise ValueError(f"the forward pass with do_safety=True returned no {PROBS_FIELD}")
        probs = probs.detach().float().cpu()
        expected = (len(items), len(self.categories))
        if tuple(probs.shape) != expected:
            raise ValueError(f"{PROBS_FIELD} has shape {tuple(probs.shape)}, not {expected}")
        latency = (time.monotonic() - started) / len(items)
        return {
            request.id: self._result(request.id, row, latency)
            for (request, _, _), row in zip(items, probs, strict=True)
        }

    def _result(self, request_id: str, row: Any, latency: float) -> ClassifyResult:
        values = row.tolist()
        if not all(-PROB_TOLERANCE <= v <= 1.0 + PROB_TOLERANCE for v in values):  # NaN too
            return ClassifyResult(id=request_id, error=f"{PROBS_FIELD} out of [0, 1]: {values}")
        clamped = (min(max(v, 0.0), 1.0) for v in values)
        probs = dict(zip(self.categories, clamped, strict=True))
        return ClassifyResult(id=request_id, probs=probs, latency_s=latency)

    def _encode(self, items: list) -> dict[str, Any]:
        from holisafe_bench.providers.transformers_provider import LlavaV1Inputs

        if isinstance(self.inputs, LlavaV1Inputs):
            return self._encode_llava(items)
        return dict(self.inputs.encode(items, self.model))  # left-padded by the processor

    def _encode_llava(self, items: list) -> dict[str, Any]:
        """The prompts encoded as generation encodes each (ids around the image placeholder,
        padded CLIP pixels; the pixels of the whole batch in one processor call), the ids
        left-padded into one batch with a mask."""
        import torch

        from holisafe_bench.providers.llava_v1 import pixel_values

        inputs, device = self.inputs, self.model.device
        rows = token_rows([prompt for _, prompt, _ in items], inputs.tokenizer)
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), inputs.tokenizer.pad_token_id)
        attention_mask = torch.zeros_like(input_ids)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row) :] = torch.tensor(row)
            attention_mask[i, width - len(row) :] = 1
        images = [image for _, _, item_images in items for image in item_images]
        pixels = pixel_values(images, inputs.image_processor, inputs.aspect_ratio)
        return {
            "input_ids": input_ids.to(device),
            "attention_mask": attention_mask.to(device),
            "images": pixels.to(device=device, dtype=self.model.dtype),
            **LLAVA_SAFETY_KWARGS,
        }


def token_rows(prompts: list[str], tokenizer: Any) -> list[list[int]]:
    """`llava_v1.tokenize_around_image` of each prompt, with the text chunks of all prompts
    tokenised in one tokenizer call (each chunk on its own still, so the ids are the same;
    one call per chunk costs as much as a batch's forward pass on a small model)."""
    from holisafe_bench.providers.llava_v1 import IMAGE_TOKEN, IMAGE_TOKEN_INDEX

    chunked = [prompt.split(IMAGE_TOKEN) for prompt in prompts]
    encoded = iter(tokenizer([chunk for chunks in chunked for chunk in chunks]).input_ids)
    bos = tokenizer.bos_token_id
    rows = []
    for chunks in chunked:
        row: list[int] = []
        for n in range(len(chunks)):
            chunk_ids = list(next(encoded))
            if n > 0:  # the image goes between chunks; BOS is kept once, at the start
                row.append(IMAGE_TOKEN_INDEX)
                if chunk_ids[:1] == [bos]:
                    chunk_ids = chunk_ids[1:]
            row.extend(chunk_ids)
        rows.append(row)
    return rows


def reject_unknown_options(kind: str, unknown: dict[str, Any], known: Sequence[str]) -> None:
    """A guard's `classifier_options` the classifier does not take, as one line."""
    if unknown:
        names = ", ".join(repr(name) for name in sorted(unknown))
        raise HolisafeError(
            f"guard classifier_options: {names} not known to a {kind} guard; "
            f"known: {', '.join(known)}"
        )


def _categories(config: Any, spec: ModelSpec) -> tuple[str, ...]:
    categories = getattr(config, "safety_categories", None)
    if not categories or not all(isinstance(c, str) for c in categories):
        raise HolisafeError(
            f"{spec.source_file or spec.name}: checkpoint {spec.checkpoint!r} has no safety "
            "head: its config names no 'safety_categories' (a safety_head guard needs a "
            "Safe-VLM whose forward pass takes do_safety=True)"
        )
    return tuple(categories)
