"""Tiny random-weight checkpoints that vLLM loads on a CPU, built offline from configs.

- LLaVA: holisafe_bench.testing.tiny_models builds it (the one the transformers tests use);
  vLLM 0.32 reads the CLIP tower under `vision_tower.vision_model.*`, which transformers 5 no longer
  writes, so the safetensors keys are renamed here.
- Qwen2-VL: a 2-layer vision tower and a 2-layer Qwen2 text model with M-RoPE, the tokenizer
  over a fixed vocabulary (tiny_models) plus Qwen's special tokens, and a small ChatML template.

Attention heads are 32 wide: vLLM's CPU attention kernels only take head sizes of 32, 64, ...
Their answers are noise; they exist to run vLLM's real code paths in seconds.
"""

from __future__ import annotations

from pathlib import Path

from holisafe_bench.testing.tiny_models import build_tiny_llava, corpus_tokenizer

QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen2-VL turns every 28x28 pixels into one image token (14-pixel patches, 2x2 merge).
QWEN_PIXELS_PER_TOKEN = 28 * 28


def rename_llava_vision_keys(folder: Path) -> int:
    """Move the CLIP tower's weights under `vision_tower.vision_model.`; returns how many."""
    from safetensors.torch import load_file, save_file

    path = Path(folder) / "model.safetensors"
    tensors = load_file(str(path))
    renamed: dict = {}
    moved = 0
    for key, tensor in tensors.items():
        if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
            key = "vision_tower.vision_model." + key.removeprefix("vision_tower.")
            moved += 1
        renamed[key] = tensor
    save_file(renamed, str(path), metadata={"format": "pt"})
    return moved


def build_vllm_llava(out_dir: Path) -> Path:
    """tiny_models' LLaVA (32x32 CLIP input: 16 image tokens), with vLLM's key names."""
    folder = build_tiny_llava(Path(out_dir))
    if rename_llava_vision_keys(folder) == 0:
        raise RuntimeError(f"{folder}: no vision tower weights found to rename")
    return folder


def _qwen_tokenizer():
    from transformers import PreTrainedTokenizerFast

    base = corpus_tokenizer().backend_tokenizer
    base.add_special_tokens(list(QWEN_SPECIALS))
    return PreTrainedTokenizerFast(
        tokenizer_object=base,
        unk_token="<unk>",
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )


def build_tiny_qwen2_vl(out_dir: Path, *, seed: int = 0) -> Path:
    """A Qwen2-VL with random weights; images of 56x56 to 224x224 pixels (4-64 tokens)."""
    # Long: the model's whole config, written out so every size is visible in one place.
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    out_dir = Path(out_dir)
    tokenizer = _qwen_tokenizer()
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIALS}
    head_dim = 32
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            # M-RoPE: temporal, height and width sections add up to head_dim / 2.
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [4, 6, 6],
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": 2 * head_dim,
            "hidden_size": 64,  # the text model's width: the merger projects into it
            "mlp_ratio": 2,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    pixels = {
        "shortest_edge": 4 * QWEN_PIXELS_PER_TOKEN,
        "longest_edge": 64 * QWEN_PIXELS_PER_TOKEN,
    }
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=pixels),
        video_processor=Qwen2VLVideoProcessor(size=pixels),
        tokenizer=tokenizer,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
