"""Tiny random-weight VLMs built offline from a config, for the demo and the tests.

Their weights are random: what they say means nothing. They exist so the real model code
paths (processor, chat template, batched generate) run on a CPU in seconds, with no hub.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

TINY_LLAVA_VERSION = "3"  # 2: a fixed vocabulary (1 was trained); 3: system parts as text
_CORPUS_TEXT = (
    "what shape colour word picture describe this image the a is in on red green blue "
    "circle square triangle sorry cannot help here answer question please sure yes no "
    "i am can't will not provide how many shapes see you it that with of and to"
)
_CORPUS = _CORPUS_TEXT.split(" ")
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<image>")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}SYSTEM: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '\\n' }}"
    "{% else %}{{ message['role'].upper() }}: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{{ '\\n' }}{% elif part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}{% endif %}{{ '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def default_cache_dir() -> Path:
    root = os.environ.get("HOLISAFE_CACHE") or Path.home() / ".cache" / "holisafe-bench"
    return Path(root)


def tiny_llava_dir() -> Path:
    return default_cache_dir() / f"tiny-llava-v{TINY_LLAVA_VERSION}"


def ensure_tiny_llava(path: Path | None = None) -> Path:
    """Build the tiny LLaVA once and return it."""
    return ensure_built(Path(path) if path else tiny_llava_dir(), build_tiny_llava)


def ensure_built(target: Path, build: Callable[[Path], Path]) -> Path:
    """`build` into `target` once, atomically (aside, then renamed), and return it; a
    folder holding a config.json is taken as built."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").exists():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def corpus_tokenizer():
    """WordPiece over a fixed vocabulary: the special tokens, the corpus words, and single
    letters (word-initial and ##-continued) to spell any other word. Fixed, not trained:
    training breaks ties at random (Rust's hash seeds), so each build would number the
    tokens differently and a random-weight model would say something else every time."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted(set(_CORPUS) - set(SPECIAL_TOKENS))
    letters = [*_LETTERS, *(f"##{c}" for c in _LETTERS)]
    tokens = [*SPECIAL_TOKENS, *words, *(c for c in letters if c not in words)]
    vocab = {token: n for n, token in enumerate(tokens)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", max_input_chars_per_word=32))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return fast_tokenizer(tok)


def fast_tokenizer(tok):
    """A `tokenizers` WordPiece model as the transformers tokenizer the tiny models save:
    <s>, </s>, <pad>, <unk> and an <image> token, left padding."""
    from tokenizers import decoders
    from transformers import PreTrainedTokenizerFast

    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    fast.padding_side = "left"  # batched generation needs left padding
    return fast


def build_tiny_llava(out_dir: Path, *, seed: int = 0) -> Path:
    """A LLaVA with a 2-layer CLIP vision tower and a 2-layer Llama, saved with its
    tokenizer, image processor and chat template. About a second on a CPU."""
    # Long: the model's whole config, written out so every size is visible in one place.
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out_dir = Path(out_dir)
    tokenizer = corpus_tokenizer()
    image_size, patch = 32, 8
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def tiny_transformers_spec(folder: Path, **engine: object):
    """The model file of a tiny checkpoint at `folder` on the transformers provider, float32,
    with `engine` fields (batch_size, cut_finished, ...) on top."""
    from holisafe_bench.registry import EngineArgs, ModelSpec

    return ModelSpec(
        name="tiny",
        display_name="Tiny",
        group="open-weight",
        provider="transformers",
        checkpoint=str(folder),
        engine=EngineArgs(dtype="float32", **engine),
    )


def new_token_ids(provider, generate) -> dict[str, list[int]]:
    """Each request's new token ids as a TransformersProvider turns them into its result,
    while `generate(provider)` runs (e.g. `lambda p: p.generate_batch(requests)`)."""
    captured: dict[str, list[int]] = {}
    result = provider._result

    def spy(request, tokens, *args):
        captured[request.id] = tokens
        return result(request, tokens, *args)

    provider._result = spy
    try:
        generate(provider)
    finally:
        del provider._result
    return captured
