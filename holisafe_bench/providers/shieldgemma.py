"""ShieldGemma 2 as a classifier: transformers' `ShieldGemma2ForImageClassification` and the
checkpoint's `ShieldGemma2Processor`, as the model card runs it.

The processor turns each image into one prompt per policy (its policy definitions, or the
keys chosen with `policies`, plus any `custom_policies`), ordered image 1 policy 1, ...,
image 1 policy P, image 2 policy 1, ...; one forward pass over all of a batch's prompts
gives `probabilities`, whose column 0 is P(Yes, the image violates the policy) (the model
takes the softmax over the Yes and No tokens' logits, in that order). The result per image
is {policy: P(Yes)}. Image-only: the request's text is not used.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.base import ClassifierProvider, ClassifyResult
from holisafe_bench.providers.safety_head import reject_unknown_options
from holisafe_bench.providers.types import ChatRequest
from holisafe_bench.registry import ModelSpec

MODEL_CLASS = "ShieldGemma2ForImageClassification"
YES = 0  # the column of P(Yes) in the model's `probabilities`
DEFAULT_BATCH_SIZE = 8  # images per forward pass (x policies prompts)
OPTIONS = ("policies", "custom_policies", "batch_size")


class ShieldGemmaClassifier(ClassifierProvider):
    provider_name = "transformers"

    def __init__(
        self,
        spec: ModelSpec,
        *,
        policies: Sequence[str] | None = None,
        custom_policies: dict[str, str] | None = None,
        batch_size: int | None = None,
        **unknown: Any,
    ) -> None:
        import torch

        from holisafe_bench.providers.transformers_provider import (
            ProcessorInputs,
            load_error,
            load_model,
            resolve_checkpoint,
        )

        reject_unknown_options("policy_probs", unknown, OPTIONS)
        self.spec = spec
        self.checkpoint = resolve_checkpoint(spec.checkpoint)
        # The processor first (as the transformers provider does): a missing one fails
        # before the weights load. A chat template named in [engine] replaces its own.
        self.processor_inputs = ProcessorInputs(spec, self.checkpoint)
        self.processor = self.processor_inputs.processor
        if self.processor_inputs.chat_template is not None:
            self.processor.chat_template = self.processor_inputs.chat_template
        self.custom_policies = dict(custom_policies or {})
        self.policies = _chosen_policies(self.processor, policies, self.custom_policies)
        try:
            self.model, _ = load_model(spec, self.checkpoint, (MODEL_CLASS,))
        except (OSError, ValueError, ImportError) as exc:
            raise load_error(spec, self.checkpoint, exc) from exc
        if not spec.engine.device_map:
            self.model.to("cuda" if torch.cuda.is_available() else "cpu")
        self.model.eval()
        self.batch_size = batch_size or spec.engine.batch_size or DEFAULT_BATCH_SIZE

    def describe(self) -> dict[str, Any]:
        definitions = self._definitions()
        return {
            "provider": self.provider_name,
            "checkpoint": self.checkpoint,
            "revision": self.spec.revision,
            "dtype": str(self.model.dtype),
            "model_class": MODEL_CLASS,
            **self.processor_inputs.describe(),
            "classifier": "policy_probs",
            "policies": list(self.policies),
            "policy_definitions": {p: definitions[p] for p in self.policies},
            "yes_token_index": getattr(self.model, "yes_token_index", None),
            "no_token_index": getattr(self.model, "no_token_index", None),
            "batch_size": self.batch_size,
        }

    def close(self) -> None:
        self.model = None

    def classify_batch(self, requests: Sequence[ChatRequest]) -> list[ClassifyResult]:
        """One forward pass for the batch's images x policies; if it fails, one image at a
        time, so a failing image fails alone."""
        from holisafe_bench.providers.transformers_provider import pil_images

        results: dict[str, ClassifyResult] = {}
        items = []
        for request in requests:
            try:
                images = pil_images(request)
                if len(images) != 1:
                    raise ValueError(f"ShieldGemma 2 takes one image, got {len(images)}")
                items.append((request, images[0]))
            except Exception as exc:  # one bad image fails one sample, not the batch
                error = f"input: {type(exc).__name__}: {exc}"
                results[request.id] = ClassifyResult(id=request.id, error=error)
        if items:
            try:
                results.update(self._classify(items))
            except Exception:  # find the culprit: one image at a time
                for item in items:
                    results.update(self._classify_alone(item))
        return [results[r.id] for r in requests]

    def _classify_alone(self, item: tuple) -> dict[str, ClassifyResult]:
        try:
            return self._classify([item])
        except Exception as exc:
            request_id = item[0].id
            error = f"forward: {type(exc).__name__}: {exc}"
            return {request_id: ClassifyResult(id=request_id, error=error)}

    def _classify(self, items: list) -> dict[str, ClassifyResult]:
        import torch

        started = time.monotonic()
        kwargs: dict[str, Any] = {"policies": list(self.policies)}
        if self.custom_policies:
            kwargs["custom_policies"] = self.custom_policies
        inputs = self.processor(
            images=[image for _, image in items], return_tensors="pt", **kwargs
        ).to(self.model.device)
        with torch.inference_mode():
            output = self.model(**inputs)
        yes = output.probabilities[:, YES].detach().float().cpu()
        expected = len(items) * len(self.policies)
        if tuple(yes.shape) != (expected,):
            raise ValueError(f"probabilities for {tuple(yes.shape)} prompts, not {expected}")
        per_image = yes.view(len(items), len(self.policies)).tolist()
        latency = (time.monotonic() - started) / len(items)
        return {
            request.id: ClassifyResult(
                id=request.id,
                probs=dict(zip(self.policies, row, strict=True)),
                latency_s=latency,
            )
            for (request, _), row in zip(items, per_image, strict=True)
        }

    def _definitions(self) -> dict[str, str]:
        return {**dict(self.processor.policy_definitions), **self.custom_policies}


def _chosen_policies(
    processor: Any, policies: Sequence[str] | None, custom: dict[str, str]
) -> tuple[str, ...]:
    """The policies asked for (all the processor's definitions plus the custom ones by
    default); a name with no definition is refused here, before any sample."""
    definitions = {**dict(getattr(processor, "policy_definitions", None) or {}), **custom}
    chosen = tuple(policies) if policies is not None else tuple(definitions)
    unknown = [p for p in chosen if p not in definitions]
    if unknown or not chosen:
        known = ", ".join(definitions) or "none"
        raise HolisafeError(
            f"guard classifier_options.policies: {', '.join(map(repr, unknown)) or 'none'} "
            f"not defined by the processor or custom_policies (defined: {known})"
        )
    return chosen
