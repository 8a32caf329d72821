"""TEST SCAFFOLDING: a tiny random-weight checkpoint shaped like google/shieldgemma-2-4b-it.

What it says is noise. It exists so the path ShieldGemma 2 takes through transformers runs
for real on a CPU, with no hub: `ShieldGemma2ForImageClassification` (a Gemma 3 language
model of 2 layers, width 64, over a SigLIP vision tower of 2 layers on 32x32 images, each
image pooled to 4 soft tokens) and a `ShieldGemma2Processor` (a Gemma 3 image processor, a
WordPiece tokenizer with Gemma 3's special tokens, the processor's default policy
definitions, and a short chat template of this file's own: the policy prompt wording of
the real checkpoint is not reproduced). The Yes and No token ids are set in the config,
since the real ones (10784, 3771) lie outside the tiny vocabulary.

Two weights are drawn here rather than left as initialised: Gemma 3 initialises the
image projection to zero (every image would then give the same answer), and the second
layer attends globally so the last token sees the image whatever the prompt's length.
Built in about a second.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SIZE, PATCH, IMAGE_TOKENS = 32, 8, 4
SPECIAL = (
    "<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
    "<start_of_image>", "<end_of_image>", "<image_soft_token>",
)  # fmt: skip
_WORDS = "Yes No Policy Does the image break policy ? Answer or . : , The shall not contain"
_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789()/-'"
# Gemma's turns; the processor puts the image where <start_of_image> is.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>user\n"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<start_of_image>"
    "{% else %}Policy : {{ part['text'] }}\n"
    "Does the image break the policy ? Answer Yes or No .{% endif %}{% endfor %}"
    "<end_of_turn>\n{% endfor %}<start_of_turn>model\n"
)


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    letters = [*_CHARS, *(f"##{c}" for c in _CHARS)]
    vocab = {t: n for n, t in enumerate(dict.fromkeys([*SPECIAL, *_WORDS.split(), *letters]))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    fast.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    return fast


def _config(tokenizer):
    from transformers import Gemma3TextConfig, ShieldGemma2Config, SiglipVisionConfig

    text = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=1024,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )
    ids = tokenizer.convert_tokens_to_ids
    return ShieldGemma2Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=IMAGE_TOKENS,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
        yes_token_index=ids("Yes"),
        no_token_index=ids("No"),
    )


def build_tiny_shieldgemma(out_dir: Path, *, seed: int = 0) -> Path:
    """Write the tiny ShieldGemma 2-shaped checkpoint into `out_dir` and return it."""
    import torch
    import transformers
    from transformers import ShieldGemma2ForImageClassification, ShieldGemma2Processor

    # The PIL implementation (torchvision is not installed); older releases name it so.
    image_processor = getattr(transformers, "Gemma3ImageProcessorPil", None)
    image_processor = image_processor or transformers.Gemma3ImageProcessor
    out_dir = Path(out_dir)
    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    model = ShieldGemma2ForImageClassification(_config(tokenizer)).eval()
    projection = model.model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():  # zero after init: drawn, so that images differ in their answer
        projection.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed + 1))
    processor = ShieldGemma2Processor(
        image_processor=image_processor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        image_seq_length=IMAGE_TOKENS,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
