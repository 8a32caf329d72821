"""Transformers EOS cut (issue 17, item 3): a batch's rows dropped from generation as each
ends (`hf_decoding.generate_cut`) against plain HF `generate`, which computes a finished row
as padding until the batch's last row ends. The tiny random-weight LLaVA, ~128 requests
through `TransformersProvider.stream` (the run path), batch size 16, greedy, the two modes
interleaved 3x; wall time, generated tokens/s, the ratio, the row-steps each mode decodes
(rows x forward calls of the language model), and a check that every request's text, finish
reason and token count are identical in both modes.

The tiny model has random weights and almost never stops on its own, so answers are made
uneven the honest way: plain greedy answers to a pool of 4 x n requests pick a token that ends
many of them early (within a quarter of max_tokens), that token is made the EOS (model's
generation_config and tokenizer) for both modes alike, and the workload is n - 16 requests
whose answers produce it early plus 16 that never do (they run to max_tokens), as refusals
and compliances do. Greedy answers up to their first such token are those of the pool run.
A CPU run on 2 cores, where a step of this tiny model costs about the same for 1 row as for
16 (per-call overhead), so the row-steps saved barely show in wall time, and each restart of
`generate` costs a few ms. On a GPU a decoding step reads the KV cache of every row still in
the batch (hundreds of image tokens per row for a VLM), so a step's cost grows with the rows
left; how much the cut saves there was not measured here.

Run: .venv/bin/python benchmarks/transformers_eos_cut.py [--n 128] [--batch-size 16]
     [--max-tokens 64] [--long 16] [--rounds 3] [--min-steps 1]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS_TEXT = (
    "what shape colour word picture describe this image the a is in on red green blue "
    "circle square triangle answer question please how many shapes see you it that with"
)
WORDS = WORDS_TEXT.split(" ")


def _requests(n: int, max_tokens: int):
    """n requests, prompts of 1 to ~40 words in a seeded order, each with an image."""
    import random

    from PIL import Image

    from holisafe_bench.providers.types import ChatRequest, ImageInput

    rng = random.Random(17)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40)))
        buf = io.BytesIO()
        color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        Image.new("RGB", (32 + i % 5 * 8, 32), color).save(buf, "PNG")
        image = ImageInput(data=buf.getvalue(), media_type="image/png")
        out.append(ChatRequest(id=f"r{i}", text=text, images=(image,), max_tokens=max_tokens))
    return out


def _provider(batch_size: int, width: int | None, layers: int | None):
    from holisafe_bench.providers.transformers_provider import TransformersProvider
    from holisafe_bench.testing.tiny_models import build_tiny_llava, tiny_transformers_spec

    folder = build_tiny_llava(Path(tempfile.mkdtemp(prefix="tiny-llava-")) / "m")
    if width or layers:
        _widen(folder, width, layers)
    return TransformersProvider(tiny_transformers_spec(folder, batch_size=batch_size))


def _workload(provider, n: int, long: int, max_tokens: int) -> tuple[int, list]:
    """An EOS token and n requests: n - long whose plain greedy answers produce that token
    within the first quarter of max_tokens, and `long` that never produce it (they run to
    max_tokens). Picked from a pool of 4n requests: the token is the one that ends the most
    answers early while leaving at least `long` answers that never produce it."""
    from holisafe_bench.testing.tiny_models import new_token_ids

    pool = _requests(4 * n, max_tokens)
    provider.cut_finished = False
    answers = new_token_ids(provider, lambda p: list(p.stream(pool)))
    special = set(provider.tokenizer.all_special_ids)
    best, best_early = None, -1
    for token in sorted({t for a in answers.values() for t in a} - special):
        early = sum(token in a[: max_tokens // 4] for a in answers.values())
        never = sum(token not in a for a in answers.values())
        if never >= long and early > best_early:
            best, best_early = token, early
    if best is None or best_early < n - long:
        sys.exit("no token ends enough answers early; try another --n, --long or --max-tokens")
    early = [r for r in pool if best in answers[r.id][: max_tokens // 4]][: n - long]
    never = [r for r in pool if best not in answers[r.id]][:long]
    chosen = {r.id for r in early + never}
    return best, [r for r in pool if r.id in chosen]  # the pool's (seeded, shuffled) order


def _widen(folder: Path, width: int | None, layers: int | None) -> None:
    """The tiny LLaVA with a wider and/or deeper Llama (random weights, same tokenizer and
    vision tower config): a decoding step whose cost grows with the rows it computes, as a
    real model's does, instead of the tiny model's per-call overhead."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig.from_pretrained(folder)
    text = config.text_config
    if width:
        text.hidden_size, text.intermediate_size = width, 4 * width
        text.num_attention_heads = text.num_key_value_heads = max(2, width // 64)
        text.head_dim = width // text.num_attention_heads
    text.num_hidden_layers = layers or text.num_hidden_layers
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = text.pad_token_id
    model.generation_config.eos_token_id = text.eos_token_id
    model.save_pretrained(folder)


def _set_eos(provider, token: int) -> None:
    provider.model.generation_config.eos_token_id = token
    provider.tokenizer.eos_token = provider.tokenizer.convert_ids_to_tokens(token)


def _measure(label: str, provider, requests, cut: bool, steps: list[int]) -> tuple[float, dict]:
    provider.cut_finished = cut
    steps.clear()
    started = time.perf_counter()
    results = list(provider.stream(requests))
    elapsed = time.perf_counter() - started
    tokens = sum(r.usage.output_tokens for r in results)
    ok = sum(r.outcome == "ok" for r in results)
    print(
        f"  {label:<6} {elapsed:7.2f} s  {tokens / elapsed:7.0f} generated tokens/s  "
        f"({tokens} tokens, {sum(steps)} row-steps, {ok}/{len(results)} ok)"
    )
    return elapsed, {r.id: (r.text, r.finish_reason, r.usage.output_tokens) for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--long", type=int, default=16, help="answers that run to the limit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-steps", type=int, default=1, help="cut_min_steps")
    parser.add_argument("--width", type=int, help="the Llama's hidden size (tiny: 64)")
    parser.add_argument("--layers", type=int, help="the Llama's layers (tiny: 2)")
    args = parser.parse_args()
    provider = _provider(args.batch_size, args.width, args.layers)
    provider.cut_min_steps = args.min_steps
    token, requests = _workload(provider, args.n, args.long, args.max_tokens)
    _set_eos(provider, token)
    print(f"EOS = {token} ({provider.tokenizer.eos_token!r}), {len(requests)} requests")
    steps: list[int] = []
    language_model = provider.model.model.language_model
    language_model.register_forward_pre_hook(
        lambda _m, _a, kw: steps.append(kw["inputs_embeds"].shape[0]), with_kwargs=True
    )
    for cut in (False, True):  # warm-up: first-call allocations
        _measure("warm", provider, requests[: args.batch_size], cut, steps)
    times: dict[str, list[float]] = {"plain": [], "cut": []}
    texts: dict[str, dict] = {}
    for n in range(args.rounds):
        print(f"round {n + 1}")
        for label in ("plain", "cut"):
            elapsed, texts[label] = _measure(label, provider, requests, label == "cut", steps)
            times[label].append(elapsed)
    lengths = sorted(out for _, _, out in texts["plain"].values())
    print(
        f"answer lengths: median {statistics.median(lengths)}, "
        f"{sum(n >= args.max_tokens for n in lengths)}/{len(lengths)} at max_tokens"
    )
    plain, cut = (statistics.median(times[k]) for k in ("plain", "cut"))
    tokens = sum(out for _, _, out in texts["plain"].values())
    print(
        f"median: plain {plain:.2f} s ({tokens / plain:.0f} tokens/s), cut {cut:.2f} s "
        f"({tokens / cut:.0f} tokens/s), speed-up {plain / cut:.2f}x"
    )
    same = texts["plain"] == texts["cut"]
    print(f"identical texts, finish reasons and token counts for all {len(requests)}: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
