"""Batched Hugging Face `generate` with finished rows cut out (issue 17, item 3).

Why: on a batch, `generate` decodes every row until the last one ends; a row that has
produced EOS goes on being computed (its tokens replaced by padding). Safety answers are
very uneven (a refusal ends after a dozen tokens, a compliance runs to the limit), so most of
a batch's decoding steps can go to rows that are done.

How: `generate` itself, called again each time rows end. A call stops as soon as a row has
produced EOS (once it has run `min_steps` tokens); the rows that ended are set aside, the
others' KV-cache rows are selected (`Cache.batch_select_indices`), and `generate` continues
from their ids so far, their attention mask extended and that cache, without the image
inputs (the image is already in the cache). Every call runs HF's own logits processing and
stopping (the checkpoint's generation_config, repetition penalty, ...), so greedy results are
those of one plain `generate` call; sampling draws from the same distributions, but not the
same draws (fewer rows share the random stream).

Only where that is known to be right: architectures that keep no per-batch state outside the
KV cache (`CUT_MODEL_TYPES`; Qwen2-VL / Qwen2.5-VL keep `rope_deltas` for the whole batch on
the model, which dropping rows would corrupt), and generation configs with nothing counted
from the start of a call or that conflicts with a cache passed in (`cut_blocker`).
"""

from __future__ import annotations

from typing import Any

# model_type values whose code was read for this: the generic prepare_inputs_for_generation,
# images used only at prefill, no state kept on the model between decoding steps.
CUT_MODEL_TYPES = frozenset({"llava"})

# generation_config fields a continued call would apply from its own start (not the
# prompt's), or that `generate` refuses alongside a cache passed in.
_CALL_RELATIVE = (
    "min_new_tokens",
    "exponential_decay_length_penalty",
    "begin_suppress_tokens",
    "max_time",
    "cache_implementation",
    "watermarking_config",
)


def cut_blocker(model: Any) -> str | None:
    """Why this model's generation cannot be cut per row (None: it can)."""
    config = getattr(model, "generation_config", None)
    if config is None or config.eos_token_id is None:
        return "the model has no generation_config with an eos_token_id"
    for name in _CALL_RELATIVE:
        if getattr(config, name, None) is not None:
            return f"its generation_config sets {name}"
    if (config.num_beams or 1) > 1 or (config.num_return_sequences or 1) > 1:
        return "its generation_config asks for beams or several sequences"
    if config.guidance_scale not in (None, 1, 1.0):
        return "its generation_config sets guidance_scale"
    return None


def cut_enabled(model: Any, setting: bool | None) -> bool:
    """Whether to cut finished rows: the model file's `cut_finished` when it says (True on a
    generation config that cannot be cut is an error), else by `CUT_MODEL_TYPES`."""
    if setting is False:
        return False
    blocker = cut_blocker(model)
    if setting is True and blocker:
        raise ValueError(f"cut_finished = true, but {blocker}")
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return blocker is None and (setting is True or model_type in CUT_MODEL_TYPES)


def _stop_when_a_row_ends(eos: Any, start: int, min_steps: int) -> Any:
    """A stopping criterion ending the whole call at the first step (after `min_steps` new
    tokens) where some row has produced EOS; it never changes a token."""
    from transformers import StoppingCriteria

    class StopWhenARowEnds(StoppingCriteria):
        def __init__(self) -> None:
            self.ended = None

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            last = torch.isin(input_ids[:, -1], eos)
            self.ended = last if self.ended is None else self.ended | last
            steps = input_ids.shape[1] - start
            return (self.ended.any() & (steps >= min_steps)).expand(input_ids.shape[0])

    return StopWhenARowEnds()


def generate_cut(
    model: Any,
    inputs: dict[str, Any],
    *,
    max_new_tokens: int,
    pad_token_id: int,
    min_steps: int = 1,
    **kwargs: Any,
) -> Any:
    """What `model.generate(**inputs, max_new_tokens=..., pad_token_id=..., **kwargs)`
    returns (prompt and new tokens, rows that ended padded with `pad_token_id`), computing
    each row only until it ends. `inputs` is a processor's batch (input_ids, attention_mask
    and the image inputs); `min_steps` new tokens at least per call."""
    import torch
    from transformers import StoppingCriteriaList

    eos_ids = kwargs.get("eos_token_id", model.generation_config.eos_token_id)
    prompt = inputs["input_ids"]
    if eos_ids is None or prompt.shape[0] == 1:
        return model.generate(
            **inputs, max_new_tokens=max_new_tokens, pad_token_id=pad_token_id, **kwargs
        )
    eos = torch.tensor(eos_ids if isinstance(eos_ids, list) else [eos_ids], device=prompt.device)
    width = prompt.shape[1]
    live = torch.arange(prompt.shape[0], device=prompt.device)  # each row's place in the batch
    mask = inputs["attention_mask"]
    call = dict(inputs)
    ended_rows: dict[int, Any] = {}
    while True:
        produced = call["input_ids"].shape[1] - width
        stop = _stop_when_a_row_ends(eos, call["input_ids"].shape[1], min_steps)
        out = model.generate(
            **call,
            max_new_tokens=max_new_tokens - produced,
            pad_token_id=pad_token_id,
            return_dict_in_generate=True,
            stopping_criteria=StoppingCriteriaList([stop]),
            **kwargs,
        )
        ids = out.sequences
        new = ids[:, width:]
        ended = torch.isin(new, eos).any(dim=1) | (new.shape[1] >= max_new_tokens)
        ended_rows.update(zip(live[ended].tolist(), new[ended], strict=True))
        if bool(ended.all()):
            return _assemble(prompt, ended_rows, pad_token_id)
        keep = (~ended).nonzero().squeeze(1)
        # transformers 5 names the cache `cache`; 4.x named it `past_key_values`
        cache_name = "cache" if out.get("cache") is not None else "past_key_values"
        cache = out[cache_name]
        cache.batch_select_indices(keep.cpu())  # CPU indices suit layers on any device
        grown = ids.shape[1] - mask.shape[1]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], grown))], dim=1)[keep]
        live = live[keep]
        call = {"input_ids": ids[keep], "attention_mask": mask, cache_name: cache}


def _assemble(prompt: Any, rows: dict[int, Any], pad_token_id: int) -> Any:
    """The batch as one `generate` call returns it: prompt, then each row's new tokens,
    padded to the longest."""
    longest = max(len(tokens) for tokens in rows.values())
    out = prompt.new_full((prompt.shape[0], prompt.shape[1] + longest), pad_token_id)
    out[:, : prompt.shape[1]] = prompt
    for row, tokens in rows.items():
        out[row, prompt.shape[1] : prompt.shape[1] + len(tokens)] = tokens
    return out
