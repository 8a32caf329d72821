"""The authors' Safe-VLMs (issue 12, section 2): the model files say the settings of the
authors' usage examples, and the transformers provider does them. SafeLLaVA's path (remote
code + a package in the snapshot, llava_v1 prompt, pad-to-square CLIP pixels) runs for
real on a tiny random-weight SafeLLaVA-shaped checkpoint built by the test."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.errors import HolisafeError

pytest.importorskip("torch", reason="the hf extra (torch) is installed by `make install`")

runner = CliRunner()

SAFELLAVA_ENGINE = """
[engine]
trust_remote_code = true
dtype = "float16"
auto_class = "AutoModelForCausalLM"
conversation_template = "llava_v1"
mm_processor_kwargs = {{ image_aspect_ratio = "{aspect}" }}

[generation]
max_tokens = 512
temperature = 0.0
"""
SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@pytest.fixture(scope="module")
def tiny_safellava(tmp_path_factory):
    from holisafe_bench.testing.tiny_safe_vlm import build_tiny_safellava

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield build_tiny_safellava(tmp_path_factory.mktemp("tiny") / "tiny-safellava")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("data") / "data", per_cell=1)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _model_file(tmp_path, checkpoint, *, name="tiny-safellava", aspect="pad", engine=None):
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ndisplay_name = "Tiny SafeLLaVA"\ngroup = "safety-tuned"\n'
        f'provider = "transformers"\ncheckpoint = "{checkpoint}"\ncheckpoint_note = "test"\n'
        + (engine if engine is not None else SAFELLAVA_ENGINE.format(aspect=aspect)),
        encoding="utf-8",
    )
    return path


def _run(model, data, out, *extra):
    args = ["run", "--model", str(model), "--dataset", str(data), "--results", str(out), *extra]
    return runner.invoke(app, args)


def test_tiny_safellava_answers_every_sample_with_the_authors_settings_recorded(
    tiny_safellava, synthetic, tmp_path
):
    out = tmp_path / "results"
    result = _run(_model_file(tmp_path, tiny_safellava), synthetic, out, "--limit", "10")
    assert result.exit_code == 0, result.output

    lines = (out / "tiny-safellava" / "responses.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 10
    assert {r["outcome"] for r in records} == {"ok"}
    assert all(r["text"] and r["usage"]["output_tokens"] >= 1 for r in records)
    manifest = json.loads((out / "tiny-safellava" / "run.json").read_text())
    assert manifest["counts"]["ok"] == 10 and manifest["counts"]["missing"] == 0
    details = manifest["provider_details"]
    assert details["dtype"] == "torch.float16"
    assert details["auto_class"] == "AutoModelForCausalLM"
    assert details["conversation_template"] == "llava_v1"
    assert details["prompt_format"] == f"{SYSTEM} USER: <image>\n{{question}} ASSISTANT:"
    assert details["image_aspect_ratio"] == "pad"
    assert manifest["sampling"]["max_tokens"] == 512
    assert manifest["sampling"]["temperature"] == 0.0
    assert manifest["chat_template_hash"] == details["chat_template_hash"]


def _spy_on_generate(monkeypatch):
    """Record the keyword arguments of every model.generate call the provider makes."""
    from holisafe_bench.providers import transformers_provider

    calls: list[dict] = []
    real_load = transformers_provider.load_model

    def load_and_spy(*args, **kwargs):
        model, auto_class = real_load(*args, **kwargs)
        real_generate = model.generate

        def generate(**call):
            calls.append(call)
            return real_generate(**call)

        model.generate = generate
        return model, auto_class

    monkeypatch.setattr(transformers_provider, "load_model", load_and_spy)
    return calls


def test_the_model_receives_the_llava_v1_tokens_and_a_mean_padded_square_image(
    tiny_safellava, synthetic, tmp_path, monkeypatch
):
    import torch
    from transformers import AutoTokenizer

    calls = _spy_on_generate(monkeypatch)
    out = tmp_path / "results"
    result = _run(_model_file(tmp_path, tiny_safellava), synthetic, out, "--ids", "5")
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    call = calls[0]
    assert call["max_new_tokens"] == 512 and call["do_sample"] is False

    # The prompt: the llava_v1 system line, then USER: <image>, newline, the query verbatim.
    row = json.loads((synthetic / "holisafe_bench.json").read_text())[0]
    assert (row["id"], row["query"]) == (5, "Describe this picture in one sentence. (sample 5)")
    ids = call["inputs"][0].tolist()
    tokenizer = AutoTokenizer.from_pretrained(tiny_safellava, trust_remote_code=True)
    image_at = ids.index(-200)
    text = tokenizer.convert_ids_to_tokens(ids[:image_at] + ids[image_at + 1 :])
    assert text[:image_at] == (
        ["<s>", "A", "chat", "between", "a", "curious", "human", "and", "an", "artificial"]
        + ["intelligence", "assistant", ".", "The", "assistant", "gives", "helpful", ","]
        + ["detailed", ",", "and", "polite", "answers", "to", "the", "human", "'", "s"]
        + ["questions", ".", "USER", ":"]
    )
    assert text[image_at:] == (  # the image token comes before the question
        ["Describe", "this", "picture", "in", "one", "sentence", ".", "(", "sample", "5", ")"]
        + ["ASSISTANT", ":"]
    )
    assert ids == [
        1, 22, 42, 38, 30, 45, 55, 33, 32, 36, 60, 37, 9, 26, 37, 49, 52, 8, 47, 8, 33,
        72, 35, 88, 86, 55, 5, 114, 75, 9, 27, 20, -200,
        24, 87, 70, 59, 69, 79, 9, 6, 77, 15, 7, 23, 20,
    ]  # fmt: skip

    # The image: 96x72 padded to 96x96 with the CLIP mean colour, then resized to 32x32.
    pixels = call["images"]
    assert pixels.shape == (1, 3, 32, 32) and pixels.dtype == torch.float16
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
    padded = ((mean * 255).int() / 255 - mean) / std  # LLaVA truncates the mean to 0-255
    for row, col in ((0, 0), (0, 31), (31, 0), (31, 31)):
        assert torch.allclose(pixels[0, :, row, col].float(), padded, atol=2e-3), (row, col)
    # The image itself is in the middle rows (its background is never the mean colour).
    assert not torch.allclose(pixels[0, :, 16, 16].float(), padded, atol=0.05)


def test_image_aspect_ratio_none_leaves_the_image_to_resize_and_centre_crop(
    tiny_safellava, synthetic, tmp_path, monkeypatch
):
    import torch

    calls = _spy_on_generate(monkeypatch)
    model = _model_file(tmp_path, tiny_safellava, aspect="none")
    result = _run(model, synthetic, tmp_path / "results", "--ids", "5")
    assert result.exit_code == 0, result.output
    corner = calls[0]["images"][0, :, 0, 0].float()
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
    assert not torch.allclose(corner, ((mean * 255).int() / 255 - mean) / std, atol=0.05)


def test_an_unknown_image_aspect_ratio_is_one_line_naming_the_model_file(
    tiny_safellava, synthetic, tmp_path
):
    model = _model_file(tmp_path, tiny_safellava, aspect="anyres")
    result = _run(model, synthetic, tmp_path / "results", "--limit", "1")
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, HolisafeError), repr(result.exception)
    message = str(result.exception)  # main() prints it as one `error: ...` line
    assert "\n" not in message
    assert str(model) in message and "'anyres'" in message


def test_a_processor_from_another_checkpoint_is_used_and_recorded(synthetic, tmp_path):
    """SafeQwen and SafeGem ship no processor: the base model's is named in the file."""
    from holisafe_bench.testing.tiny_models import build_tiny_llava

    base = build_tiny_llava(tmp_path / "base")
    weights_only = tmp_path / "weights-only"
    weights_only.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(base / name, weights_only / name)
    engine = (
        f'\n[engine]\ndtype = "float32"\nprocessor_checkpoint = "{base}"\n'
        "\n[generation]\nmax_tokens = 8\ntemperature = 0.0\n"
    )
    model = _model_file(tmp_path, weights_only, name="tiny-safeqwen", engine=engine)
    out = tmp_path / "results"
    result = _run(model, synthetic, out, "--limit", "3")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "tiny-safeqwen" / "run.json").read_text())
    assert manifest["counts"]["ok"] == 3
    details = manifest["provider_details"]
    assert details["processor_checkpoint"] == str(base)
    assert details["checkpoint"] == str(weights_only)
    assert len(details["chat_template_hash"]) == 64


def test_the_six_safe_vlm_files_declare_the_authors_settings():
    result = runner.invoke(app, ["models", "--group", "safety-tuned", "--json"])
    assert result.exit_code == 0, result.output
    specs = {s["name"]: s for s in json.loads(result.output)}
    expected = {
        "safellava-7b": ("float16", "AutoModelForCausalLM", None, "llava_v1", 512),
        "safellava-13b": ("float16", "AutoModelForCausalLM", None, "llava_v1", 512),
        "safeqwen2.5-vl-7b": (
            "float16",
            "AutoModelForImageTextToText",
            "Qwen/Qwen2.5-VL-7B-Instruct",
            None,
            256,
        ),
        "safeqwen2.5-vl-32b": (
            "float16",
            "AutoModelForImageTextToText",
            "Qwen/Qwen2.5-VL-7B-Instruct",
            None,
            256,
        ),
        "safegem-12b": ("bfloat16", "AutoModel", "google/gemma-3-12b-it", None, 256),
        "safegem-27b": ("bfloat16", "AutoModel", "google/gemma-3-12b-it", None, 256),
    }
    for name, (dtype, auto_class, processor, template, max_tokens) in expected.items():
        spec = specs[name]
        engine, generation = spec["engine"], spec["generation"]
        assert engine["trust_remote_code"] is True, name
        assert (engine["dtype"], engine["auto_class"]) == (dtype, auto_class), name
        assert engine["processor_checkpoint"] == processor, name
        assert engine["conversation_template"] == template, name
        assert generation["max_tokens"] == max_tokens and generation["temperature"] == 0.0
        if max_tokens != 512:  # the project default: the file says why it differs
            assert "256 new tokens" in spec["checkpoint_note"], name
    for name in ("safellava-7b", "safellava-13b"):
        assert specs[name]["engine"]["mm_processor_kwargs"] == {"image_aspect_ratio": "pad"}


def test_a_safellava_checkpoint_not_in_the_cache_offline_is_one_line(synthetic, tmp_path):
    model = _model_file(tmp_path, "etri-vilab/No-Such-SafeLLaVA")
    result = _run(model, synthetic, tmp_path / "results", "--limit", "1")
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, HolisafeError), repr(result.exception)
    message = str(result.exception)
    assert "\n" not in message
    assert "cannot load 'tiny-safellava' from 'etri-vilab/No-Such-SafeLLaVA'" in message
    assert not (tmp_path / "results" / "tiny-safellava" / "responses.jsonl").exists()
