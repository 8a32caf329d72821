"""Hugging Face transformers: batched greedy generate with left padding, for custom
architectures such as the authors' Safe-VLMs and for the tiny random-weight demo model
(`builtin:tiny-llava`).

Two ways of turning a request into model inputs, chosen by the model file's `[engine]`:
- a processor (the checkpoint's, or `processor_checkpoint`'s, as SafeQwen and SafeGem are
  run with Qwen2.5-VL's and Gemma 3's) and its chat template;
- `conversation_template = "llava_v1"` (SafeLLaVA): the snapshot is put on sys.path (its
  remote code imports the package it ships), the prompt is LLaVA-v1's, tokenised around
  the image token, and the image is padded to a square and CLIP-processed; one sample per
  generate call, as in the authors' example.

`run` drives it through `stream`: requests are taken a window of a few batches at a time,
ordered by prompt length within the window and cut into batches, so a batch pads its
prompts little; each batch's results are recorded as it ends. Generation itself is HF
`generate`; on the architectures where it is known to be right (or as the model file's
`cut_finished` says), a row that has produced EOS is dropped from the batch instead of being
computed as padding until the last row ends (`hf_decoding.generate_cut`).
"""

from __future__ import annotations

import importlib
import io
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.provenance import sha256_text
from holisafe_bench.providers import hf_decoding
from holisafe_bench.providers.base import StreamingProvider
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.records import Usage
from holisafe_bench.registry import ModelSpec

BUILTIN_PREFIX = "builtin:"
# Tried in order when the model file names no auto class; custom architectures usually
# register under the causal-LM class.
DEFAULT_AUTO_CLASSES = ("AutoModelForImageTextToText", "AutoModelForCausalLM")
# Batches per sorting window while streaming: enough choice to pad little, while results
# still reach the disk a batch at a time.
STREAM_WINDOW_BATCHES = 4


# Random-weight checkpoints built offline on first use (testing/): name -> "module:function".
BUILTINS = {
    "tiny-llava": "holisafe_bench.testing.tiny_models:ensure_tiny_llava",
    "tiny-safellava": "holisafe_bench.testing.tiny_safe_vlm:ensure_tiny_safellava",
}


def resolve_checkpoint(checkpoint: str) -> str:
    if not checkpoint.startswith(BUILTIN_PREFIX):
        return checkpoint
    name = checkpoint.removeprefix(BUILTIN_PREFIX)
    if name not in BUILTINS:
        known = ", ".join(BUILTIN_PREFIX + n for n in BUILTINS)
        raise HolisafeError(f"unknown built-in checkpoint {checkpoint!r} ({known})")
    module, _, function = BUILTINS[name].partition(":")
    return str(getattr(importlib.import_module(module), function)())


def load_error(spec: ModelSpec, source: str, exc: Exception) -> HolisafeError:
    reason = " ".join(str(exc).split())  # hub and transformers messages span lines
    return HolisafeError(
        f"cannot load {spec.name!r} from {source!r}: {reason}. Check the checkpoint id, "
        "HF_TOKEN for gated models, the network or HF cache, and trust_remote_code for "
        "custom architectures."
    )


def load_model(spec: ModelSpec, checkpoint: str, auto_classes: Sequence[str]) -> tuple[Any, str]:
    """The model through the first auto class that accepts its config, and that class's
    name (recorded: SafeGem's code registers under AutoModel, SafeLLaVA's under causal LM)."""
    import transformers

    engine = spec.engine
    kwargs: dict[str, Any] = {
        "revision": spec.revision,
        "trust_remote_code": engine.trust_remote_code,
        "dtype": engine.dtype,
    }
    if engine.device_map:
        kwargs["device_map"] = engine.device_map
    *fallible, last = auto_classes
    for name in fallible:
        try:
            return getattr(transformers, name).from_pretrained(checkpoint, **kwargs), name
        except ValueError:  # this auto class does not know the config: try the next one
            if not engine.trust_remote_code:
                raise
    return getattr(transformers, last).from_pretrained(checkpoint, **kwargs), last


def pil_images(request: ChatRequest) -> list[Any]:
    from PIL import Image

    out = []
    for image in request.images:
        with Image.open(io.BytesIO(image.read_bytes())) as img:
            out.append(img.convert("RGB"))
    return out


class ProcessorInputs:
    """Inputs made by a processor and its chat template (batched, left-padded)."""

    max_batch: int | None = None

    def __init__(self, spec: ModelSpec, checkpoint: str) -> None:
        from transformers import AutoProcessor

        engine = spec.engine
        # Another checkpoint's processor is used at its own default revision.
        self.source = engine.processor_checkpoint or checkpoint
        revision = None if engine.processor_checkpoint else spec.revision
        try:
            self.processor = AutoProcessor.from_pretrained(
                self.source, revision=revision, trust_remote_code=engine.trust_remote_code
            )
        except (OSError, ValueError, ImportError) as exc:
            raise load_error(spec, self.source, exc) from exc
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        tokenizer.padding_side = "left"  # decoder-only batching needs left padding
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.chat_template: str | None = None
        if engine.chat_template:
            self.chat_template = Path(engine.chat_template).read_text(encoding="utf-8")

    def prompt(self, request: ChatRequest) -> str:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        content = [{"type": "image"} for _ in request.images]
        content.append({"type": "text", "text": request.text})
        messages.append({"role": "user", "content": content})
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, chat_template=self.chat_template
        )

    def encode(self, items: list, model: Any) -> dict[str, Any]:
        images = [img for _, _, imgs in items for img in imgs]
        return self.processor(
            images=images or None,
            text=[prompt for _, prompt, _ in items],
            return_tensors="pt",
            padding=True,
        ).to(model.device)

    def length(self, item: tuple) -> int:
        """The prompt's token count, image tokens included, as the processor makes it (the
        number of image tokens can depend on the image's size)."""
        _, prompt, images = item
        encoded = self.processor(images=images or None, text=[prompt], return_tensors="pt")
        return int(encoded["input_ids"].shape[1])

    @staticmethod
    def new_tokens(output: Any, inputs: dict[str, Any]) -> Any:
        return output[:, inputs["input_ids"].shape[1] :]

    @staticmethod
    def input_tokens(inputs: dict[str, Any], row: int) -> int:
        return int(inputs["attention_mask"][row].sum())

    def describe(self) -> dict[str, Any]:
        template = self.chat_template or getattr(self.processor, "chat_template", None)
        return {
            "processor_checkpoint": self.source,
            "chat_template_hash": sha256_text(template) if template else None,
            "chat_template_overridden": self.chat_template is not None,
        }


class LlavaV1Inputs:
    """SafeLLaVA's inputs: LLaVA-v1 prompt, ids with the image placeholder, padded CLIP
    pixels; one sample per generate call (the placeholder makes rows model-specific)."""

    max_batch = 1

    def __init__(self, spec: ModelSpec, snapshot: Path, model: Any) -> None:
        from transformers import AutoTokenizer

        from holisafe_bench.providers import llava_v1

        self.spec = spec
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                snapshot, trust_remote_code=spec.engine.trust_remote_code
            )
        except (OSError, ValueError, ImportError) as exc:
            raise load_error(spec, str(snapshot), exc) from exc
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.image_processor = self._image_processor(snapshot, model)
        kwargs = spec.engine.mm_processor_kwargs or {}
        # The model file may say it; else the checkpoint's config, as LLaVA's code reads it.
        self.aspect_ratio = str(
            kwargs.get("image_aspect_ratio") or getattr(model.config, "image_aspect_ratio", "pad")
        )
        if self.aspect_ratio not in llava_v1.ASPECT_RATIOS:
            raise HolisafeError(
                f"{spec.source_file or spec.name}: image_aspect_ratio {self.aspect_ratio!r} "
                f"is not one of {llava_v1.ASPECT_RATIOS}"
            )

    def _image_processor(self, snapshot: Path, model: Any) -> Any:
        """The vision tower's processor when the model carries one (the authors' example
        takes it from there), else the snapshot's preprocessor config."""
        import transformers

        tower = model.get_vision_tower() if hasattr(model, "get_vision_tower") else None
        if tower is not None and hasattr(tower, "load_model"):
            if not getattr(tower, "is_loaded", True):
                tower.load_model()
                tower.to(device=model.device)
            if getattr(tower, "image_processor", None) is not None:
                return tower.image_processor
        # The PIL implementation: the one LLaVA's code ran with (torchvision resizes differ).
        image_processor = getattr(transformers, "CLIPImageProcessorPil", None)
        try:
            return (image_processor or transformers.CLIPImageProcessor).from_pretrained(snapshot)
        except OSError as exc:
            raise load_error(self.spec, str(snapshot), exc) from exc

    def prompt(self, request: ChatRequest) -> str:
        from holisafe_bench.providers.llava_v1 import llava_v1_prompt

        if len(request.images) != 1:
            raise ValueError(f"llava_v1 takes one image per sample, got {len(request.images)}")
        return llava_v1_prompt(request.text, request.system)

    def encode(self, items: list, model: Any) -> dict[str, Any]:
        import torch

        from holisafe_bench.providers.llava_v1 import pixel_values, tokenize_around_image

        (_, prompt, images) = items[0]
        ids = tokenize_around_image(prompt, self.tokenizer)
        pixels = pixel_values(images, self.image_processor, self.aspect_ratio)
        return {
            "inputs": torch.tensor([ids], device=model.device),
            "images": pixels.to(device=model.device, dtype=model.dtype),
        }

    def length(self, item: tuple) -> int:
        """The prompt's token count (text tokens and the one image placeholder)."""
        from holisafe_bench.providers.llava_v1 import tokenize_around_image

        return len(tokenize_around_image(item[1], self.tokenizer))

    @staticmethod
    def new_tokens(output: Any, inputs: dict[str, Any]) -> Any:
        # LLaVA generates from embeddings: the output is the new tokens only. Code that
        # echoes the prompt is trimmed all the same.
        prompt = inputs["inputs"]
        width = prompt.shape[1]
        if output.shape[1] > width and bool((output[:, :width] == prompt).all()):
            return output[:, width:]
        return output

    @staticmethod
    def input_tokens(inputs: dict[str, Any], row: int) -> int:
        return int(inputs["inputs"].shape[1])  # text tokens + 1 image placeholder

    def describe(self) -> dict[str, Any]:
        from holisafe_bench.providers.llava_v1 import llava_v1_prompt

        template = llava_v1_prompt("{question}")
        return {
            "conversation_template": "llava_v1",
            "prompt_format": template,
            "chat_template_hash": sha256_text(template),
            "image_aspect_ratio": self.aspect_ratio,
            "image_processor": type(self.image_processor).__name__,
            "image_mean": list(self.image_processor.image_mean),
        }


def llava_snapshot(spec: ModelSpec, checkpoint: str) -> Path:
    """A local folder of the checkpoint: itself, or the hub snapshot (downloaded once)."""
    if Path(checkpoint).is_dir():
        return Path(checkpoint)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=checkpoint, revision=spec.revision))
    except Exception as exc:  # hub errors are many types; all mean "not available here"
        raise load_error(spec, checkpoint, exc) from exc


class TransformersProvider(StreamingProvider):
    provider_name = "transformers"
    #: `stream` orders this many batches' worth of requests by prompt length at a time.
    window_batches: int = STREAM_WINDOW_BATCHES
    #: False: `stream` keeps the order requests come in (the benchmark's baseline).
    sort_by_length: bool = True
    #: With finished rows cut: new tokens a generate call runs at least before it stops to
    #: drop the rows that ended (1: each row is dropped at its EOS; more: fewer calls).
    cut_min_steps: int = 1

    def __init__(self, spec: ModelSpec) -> None:
        import torch

        self.spec = spec
        engine = spec.engine
        self.checkpoint = resolve_checkpoint(spec.checkpoint)
        llava = engine.conversation_template == "llava_v1"
        auto_classes = (engine.auto_class,) if engine.auto_class else DEFAULT_AUTO_CLASSES
        source = self.checkpoint
        processor_inputs = None
        if llava:
            from holisafe_bench.providers.llava_v1 import make_importable

            source = str(llava_snapshot(spec, self.checkpoint))
            make_importable(Path(source))
            auto_classes = (engine.auto_class or "AutoModelForCausalLM",)
        else:  # the processor first: a missing one fails before the weights load
            processor_inputs = ProcessorInputs(spec, self.checkpoint)
        try:
            self.model, self.auto_class = load_model(spec, source, auto_classes)
        except (OSError, ValueError, ImportError) as exc:
            raise load_error(spec, source, exc) from exc
        if not engine.device_map:
            self.model.to("cuda" if torch.cuda.is_available() else "cpu")
        self.model.eval()
        self.inputs: ProcessorInputs | LlavaV1Inputs = processor_inputs or LlavaV1Inputs(
            spec, Path(source), self.model
        )
        self.tokenizer = self.inputs.tokenizer
        self.batch_size = engine.batch_size or 8
        try:  # drop finished rows from a batch (not with one sample per call: nothing to drop)
            self.cut_finished = self.inputs.max_batch != 1 and hf_decoding.cut_enabled(
                self.model, engine.cut_finished
            )
        except ValueError as exc:
            raise HolisafeError(f"{spec.source_file or spec.name}: {exc}") from exc

    def describe(self) -> dict[str, Any]:
        generation_config = getattr(self.model, "generation_config", None)
        return {
            "provider": self.provider_name,
            "checkpoint": self.checkpoint,
            "revision": self.spec.revision,
            "dtype": str(self.model.dtype),
            "auto_class": self.auto_class,
            # Finished rows dropped from a batch: the same greedy answers, other sampled draws.
            "cut_finished": self.cut_finished,
            # Defaults the checkpoint sets (e.g. a repetition penalty) apply to every call.
            "checkpoint_generation_config": (
                generation_config.to_diff_dict() if generation_config is not None else None
            ),
            **self.inputs.describe(),
        }

    def close(self) -> None:
        del self.model

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """Results in request order; all requests of one sampling share a generate call
        (at most `max_batch`), in the order given."""
        results: dict[str, ChatResult] = {}
        prepared = self._prepare(requests, results, lengths=None)
        for group in self._groups(prepared, self.inputs.max_batch):
            results.update(self._generate_safely(group))
        return [results[r.id] for r in requests]

    def stream(self, requests: Iterable[ChatRequest]) -> Iterator[ChatResult]:
        """Windows of `window_batches` x batch size requests, each ordered by prompt length
        (tokens, as the processor makes them) and cut into batches, so a batch pads little
        while memory stays that of one batch; each batch's results are yielded as it ends."""
        window: list[ChatRequest] = []
        limit = self.window_batches * self._step()
        for request in requests:
            window.append(request)
            if len(window) >= limit:
                yield from self._stream_window(window)
                window = []
        if window:
            yield from self._stream_window(window)

    def _stream_window(self, window: list[ChatRequest]) -> Iterator[ChatResult]:
        failed: dict[str, ChatResult] = {}
        step = self._step()
        lengths: dict[str, int] | None = {} if self.sort_by_length and step > 1 else None
        prepared = self._prepare(window, failed, lengths)
        yield from failed.values()
        for group in self._groups(prepared, step, lengths):
            yield from self._generate_safely(group).values()

    def _step(self) -> int:
        """Requests per generate call while streaming: the batch size, at most max_batch."""
        return min(self.batch_size, self.inputs.max_batch or self.batch_size)

    def _prepare(
        self,
        requests: Iterable[ChatRequest],
        failed: dict[str, ChatResult],
        lengths: dict[str, int] | None,
    ) -> list:
        """(request, prompt, images) per request; a request whose inputs cannot be made is
        an error result in `failed`. `lengths`, if given, gets each prompt's token count."""
        prepared = []
        for request in requests:
            try:
                item = (request, self.inputs.prompt(request), pil_images(request))
                if lengths is not None:
                    lengths[request.id] = self.inputs.length(item)
            except Exception as exc:  # one bad image fails one sample, not the batch
                failed[request.id] = ChatResult(
                    id=request.id, outcome="error", error=f"input: {type(exc).__name__}: {exc}"
                )
                continue
            prepared.append(item)
        return prepared

    def _generate_safely(self, group: list) -> dict[str, ChatResult]:
        """The group's results by id; if the batched call fails, one request at a time (so
        a failing request fails alone)."""
        try:
            return {result.id: result for result in self._generate(group)}
        except Exception:  # find the culprit: one request at a time
            return self._one_at_a_time(group)

    def _one_at_a_time(self, group: list) -> dict[str, ChatResult]:
        results = {}
        for item in group:
            try:
                results[item[0].id] = self._generate([item])[0]
            except Exception as exc:
                results[item[0].id] = ChatResult(
                    id=item[0].id,
                    outcome="error",
                    error=f"generate: {type(exc).__name__}: {exc}",
                )
        return results

    @staticmethod
    def _groups(
        prepared: list, step: int | None, lengths: dict[str, int] | None = None
    ) -> list[list]:
        """Requests that can share a generate call: same sampling, at most `step` (None: no
        limit), ordered by prompt length when `lengths` are given (stable: ties keep their
        order)."""
        by_sampling: dict[tuple[int, float, float | None], list] = {}
        for item in prepared:
            request = item[0]
            key = (request.max_tokens, request.temperature, request.top_p)
            by_sampling.setdefault(key, []).append(item)
        groups = []
        for group in by_sampling.values():
            if lengths is not None:
                group.sort(key=lambda item: lengths[item[0].id])
            size = step or len(group)
            groups += [group[i : i + size] for i in range(0, len(group), size)]
        return groups

    def _generate(self, items: list) -> list[ChatResult]:
        import torch

        first = items[0][0]
        started = time.monotonic()
        inputs = self.inputs.encode(items, self.model)
        sampling: dict[str, Any] = {"do_sample": first.temperature > 0}
        if first.temperature > 0:
            sampling["temperature"] = first.temperature
            if first.top_p is not None:
                sampling["top_p"] = first.top_p
        args = {
            "max_new_tokens": first.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "use_cache": True,
            **sampling,
        }
        with torch.inference_mode():
            if self.cut_finished and len(items) > 1:
                output = hf_decoding.generate_cut(
                    self.model, inputs, min_steps=self.cut_min_steps, **args
                )
            else:
                output = self.model.generate(**inputs, **args)
        new_tokens = self.inputs.new_tokens(output, inputs)
        latency = (time.monotonic() - started) / len(items)
        return [
            self._result(request, new_tokens[row].tolist(), inputs, row, latency)
            for row, (request, _, _) in enumerate(items)
        ]

    def _result(
        self, request: ChatRequest, tokens: list[int], inputs: Any, row: int, latency: float
    ) -> ChatResult:
        eos = self.tokenizer.eos_token_id
        ended = eos in tokens
        produced = (
            tokens.index(eos) + 1
            if ended
            else len([t for t in tokens if t != self.tokenizer.pad_token_id])
        )
        return ChatResult(
            id=request.id,
            outcome="ok",
            text=self.tokenizer.decode(tokens, skip_special_tokens=True).strip(),
            finish_reason="stop" if ended else "length",
            usage=Usage(
                input_tokens=self.inputs.input_tokens(inputs, row),
                output_tokens=produced,
            ),
            latency_s=latency,
        )
