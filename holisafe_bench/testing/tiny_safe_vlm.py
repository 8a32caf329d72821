"""TEST SCAFFOLDING: a tiny random-weight checkpoint shaped like the authors' SafeLLaVA.

What it says is noise. It exists so the path SafeLLaVA takes through the transformers
provider runs for real on a CPU, with no hub: a folder holding remote code
(`config.json` with `auto_map` pointing at `modeling_tiny_safellava.py`, which imports a
package shipped beside it, as the authors' `safellava` package is), a LLaVA-1.5-shaped
model (CLIP vision tower, MLP projector, Llama LM; a few layers of width 32-64), a
tokenizer that puts BOS first as Llama's does, a CLIP image processor config, and a
generation config whose length penalty ends answers within a few dozen tokens. Its remote
code carries a visual guard module shaped like the authors' (`config.safety_categories`,
HoliSafe's 20 image labels; `model(..., do_safety=True).img_safety_probs`), registered
last and drawn from a random generator of its own, so the rest of the checkpoint (and
every generated text) is what it was before the head existed.
Built in about a second; `AutoModelForCausalLM.from_pretrained(folder,
trust_remote_code=True)` then runs the code in the folder.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from holisafe_bench.providers.llava_v1 import LLAVA_V1_SYSTEM, make_importable
from holisafe_bench.taxonomy import IMAGE_SAFETY_LABELS
from holisafe_bench.testing.tiny_models import _CORPUS, SPECIAL_TOKENS, fast_tokenizer

REMOTE_CODE = Path(__file__).resolve().parent / "tiny_safellava_remote"
IMAGE_SIZE, PATCH = 32, 8
# The llava_v1 prompt's words and punctuation and the synthetic questions' words get
# whole-word ids (a prompt of <unk>s would show little); other words are spelt in letters.
_EXTRA_WORDS = (
    "USER ASSISTANT Describe What Which How picture sentence one word written under colour "
    "large drawn many here sample . , : ? ( ) ' 0 1 2 3 4 5 6 7 8 9"
)
_PROMPT_WORDS = (
    *LLAVA_V1_SYSTEM.replace(".", " ").replace(",", " ").split(),
    *_EXTRA_WORDS.split(),
)
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# The safety head's classes, spelt as the authors' config spells them (HoliSafe's labels).
SAFETY_CATEGORIES: tuple[str, ...] = IMAGE_SAFETY_LABELS
# The head's weights: std = gain / sqrt(fan_in) per layer, the last gain large enough that
# its probabilities are far from uniform (a near-uniform head would hide a wrong row or a
# padding mistake inside any tolerance).
HEAD_GAINS = (1.0, 4.0)
# Added to the "safe" class's bias: drawn at random, the head put P(safe) 5 to 8 nats below
# its top class on every image of the bundled sample, so it never said "safe"; with this,
# about half of the sample's images come out safe and half unsafe.
SAFE_BIAS = 6.75


def _vocabulary() -> dict[str, int]:
    """A fixed WordPiece vocabulary (not trained: training breaks ties at random, and the
    tests assert token ids literally)."""
    words = sorted({*_CORPUS, *_PROMPT_WORDS} - set(SPECIAL_TOKENS))
    letters = [*_LETTERS, *(f"##{c}" for c in _LETTERS)]
    tokens = [*SPECIAL_TOKENS, *words, *(c for c in letters if c not in words)]
    return {token: n for n, token in enumerate(tokens)}


def _tokenizer():
    """WordPiece over the fixed vocabulary, adding BOS first as Llama's tokenizer does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece(_vocabulary(), unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = fast_tokenizer(tok)
    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    return tokenizer


def _config(tokenizer, safety_head: bool) -> dict:
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH,
        "projection_dim": 32,
    }
    return {
        "model_type": "tiny_safellava",
        "architectures": ["TinySafeLlavaForCausalLM"],
        "auto_map": {
            "AutoConfig": "modeling_tiny_safellava.TinySafeLlavaConfig",
            "AutoModelForCausalLM": "modeling_tiny_safellava.TinySafeLlavaForCausalLM",
        },
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "max_position_embeddings": 1024,  # prompt + 16 image tokens + 512 new tokens
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "vision_config": vision,
        "image_aspect_ratio": "pad",
        "mm_vision_select_layer": -2,
        "safety_categories": list(SAFETY_CATEGORIES) if safety_head else None,
    }


@contextmanager
def _importable(folder: Path) -> Iterator[None]:
    """The folder's package importable while building only: whoever loads the checkpoint
    later must put the snapshot on sys.path itself, as the provider does."""
    before = list(sys.path)
    make_importable(folder)
    try:
        yield
    finally:
        sys.path[:] = before
        for name in [m for m in sys.modules if m.split(".")[0] == "tiny_safellava"]:
            del sys.modules[name]


def build_tiny_safellava(out_dir: Path, *, seed: int = 0, safety_head: bool = True) -> Path:
    """Write the tiny SafeLLaVA-shaped checkpoint into `out_dir` and return it;
    `safety_head=False`: without the visual guard module (a chat VLM with no head)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, CLIPImageProcessor

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        REMOTE_CODE, out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    tokenizer = _tokenizer()
    tokenizer.save_pretrained(out_dir)
    CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    ).save_pretrained(out_dir)
    config_json = json.dumps(_config(tokenizer, safety_head), indent=2)
    (out_dir / "config.json").write_text(config_json, "utf-8")
    with _importable(out_dir):  # the modeling file imports the package shipped beside it
        config = AutoConfig.from_pretrained(out_dir, trust_remote_code=True)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=True).eval()
    if model.img_safety_head is not None:
        _draw_safety_head(model.img_safety_head, seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    # Random weights rarely pick EOS: a length penalty in the checkpoint's own generation
    # config ends answers within a few dozen tokens, so a 512-token greedy run stays fast.
    model.generation_config.exponential_decay_length_penalty = (8, 1.5)
    model.save_pretrained(out_dir)
    return out_dir


def _draw_safety_head(head, seed: int) -> None:
    """The head's weights from a generator of its own (the global one, which drew every
    other weight, is left alone)."""
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    linears = [layer for layer in head if isinstance(layer, torch.nn.Linear)]
    with torch.no_grad():
        for layer, gain in zip(linears, HEAD_GAINS, strict=True):
            std = gain / layer.in_features**0.5
            layer.weight.normal_(0.0, std, generator=generator)
            layer.bias.normal_(0.0, std, generator=generator)
        linears[-1].bias[SAFETY_CATEGORIES.index("safe")] += SAFE_BIAS


TINY_SAFELLAVA_VERSION = "1"


def ensure_tiny_safellava() -> Path:
    """The tiny Safe-VLM (with its safety head), built once in the cache folder: what the
    registered `tiny-safellava-random` model and guard load (`builtin:tiny-safellava`)."""
    from holisafe_bench.testing.tiny_models import default_cache_dir, ensure_built

    target = default_cache_dir() / f"tiny-safellava-v{TINY_SAFELLAVA_VERSION}"
    return ensure_built(target, build_tiny_safellava)
