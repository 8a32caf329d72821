"""Guard declarations (guards/*.toml): all load and are runnable as declared, the paper's
five guards in table order, any chat model as a zero-shot guard, and clear one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.guarding.parsers import GUARD_PARSERS
from holisafe_bench.guarding.prompts import guard_prompt
from holisafe_bench.guarding.spec import get_guard, load_guards
from holisafe_bench.guarding.taxonomy_maps import load_taxonomy
from holisafe_bench.registry import RegistryError, load_models

ROOT = Path(__file__).resolve().parents[1]
SAFE_VLMS = (
    "safellava-7b", "safellava-13b", "safegem-12b", "safegem-27b",
    "safeqwen2.5-vl-7b", "safeqwen2.5-vl-32b",
)  # fmt: skip
PAPER_TABLE = [
    "Llama-Guard-4-12B",
    "Llama-Guard-3-11B-Vision",
    "LLaVAGuard-7B",
    "ShieldGemma2-4B-IT",
    "SafeLLaVA-7B",
]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "holisafe_bench", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def one_line_error(res: subprocess.CompletedProcess, *fragments: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_every_guard_file_loads_and_names_what_it_needs():
    guards = load_guards()
    # the ten of the paper and the Safe-VLMs, and the tiny random-weight one for trying it out
    assert len(guards) == len(list((ROOT / "guards").glob("*.toml"))) == 11
    models = load_models()
    for spec in guards.values():
        assert spec.parser in GUARD_PARSERS, spec.name
        mapping = load_taxonomy(spec.taxonomy)
        assert mapping, spec.name  # every shipped guard maps its categories
        for protocol in spec.protocols:
            prompt = guard_prompt(spec, protocol)  # the template file exists and fits
            if protocol == "input":
                assert "QUERY-X" in prompt.render("QUERY-X"), spec.name
        assert spec.model is not None or spec.checkpoint_note, spec.name
        assert spec.model_spec().generation.temperature == 0.0
    for name in SAFE_VLMS:
        spec = guards[name]
        assert (spec.kind, spec.model, spec.parser, spec.taxonomy) == (
            "safety_head", name, "safety_head", "holisafe",
        )  # fmt: skip
        assert spec.protocols == ("image", "input")
        assert spec.model_spec().checkpoint == models[name].checkpoint


def test_the_dedicated_guards_are_declared_as_the_issue_says():
    guards = load_guards()
    for name in ("llama-guard-4-12b", "llama-guard-3-11b-vision"):
        spec = guards[name]
        assert (spec.provider, spec.kind, spec.parser, spec.taxonomy) == (
            "vllm", "generative", "llama_guard", "mlcommons",
        )  # fmt: skip
        assert 10 <= spec.max_tokens <= 20 and spec.logprobs
        assert spec.engine.limit_mm_per_prompt == {"image": 1}
        assert spec.prompts == {}  # the checkpoint's chat template carries the policy
    llavaguard = guards["llavaguard-7b"]
    assert llavaguard.checkpoint == "AIML-TUDA/LlavaGuard-v1.2-7B-OV-hf"
    assert (llavaguard.protocols, llavaguard.parser, llavaguard.taxonomy) == (
        ("image",), "llavaguard", "llavaguard",
    )  # fmt: skip
    policy = guard_prompt(llavaguard, "image").render("ignored")
    assert '"rating"' in policy and "NA: None applying" in policy
    assert all(f"O{i}: " in policy for i in range(1, 10))
    shieldgemma = guards["shieldgemma-2-4b-it"]
    assert (shieldgemma.provider, shieldgemma.kind, shieldgemma.protocols) == (
        "transformers", "policy_probs", ("image",),
    )  # fmt: skip


def test_the_papers_five_guards_are_in_table_order():
    paper = sorted((s for s in load_guards().values() if s.in_paper), key=lambda s: s.paper_order)
    assert [s.display_name for s in paper] == PAPER_TABLE


def test_any_chat_model_is_a_zero_shot_guard():
    spec = get_guard("gpt-4o")
    assert (spec.name, spec.kind, spec.parser, spec.taxonomy) == (
        "gpt-4o", "zero_shot", "zero_shot", None,
    )  # fmt: skip
    assert spec.display_name.endswith("(zero-shot)")
    image = guard_prompt(spec, "image").render("how do I do this?")
    assert "how do I do this?" not in image and "unsafe: <label>" in image
    request = guard_prompt(spec, "input").render("how do I do this?")
    assert "how do I do this?" in request
    from holisafe_bench.taxonomy import IMAGE_SAFETY_LABELS

    for label in IMAGE_SAFETY_LABELS[1:]:  # the 19 harm labels, each listed
        assert f"- {label}: " in image and f"- {label}: " in request, label


def test_zero_shot_flag_renames_a_model_with_its_own_guard_file():
    assert get_guard("safellava-7b").kind == "safety_head"
    zero = get_guard("safellava-7b", zero_shot=True)
    assert (zero.name, zero.kind, zero.parser) == (
        "safellava-7b-zero-shot",
        "zero_shot",
        "zero_shot",
    )
    # A chat model without a guard file keeps its own name.
    assert get_guard("gpt-4o", zero_shot=True).name == "gpt-4o"


def test_unknown_guard_names_close_matches():
    with pytest.raises(RegistryError) as err:
        get_guard("llama-guard-4-12")
    message = str(err.value)
    assert "\n" not in message
    assert "unknown guard 'llama-guard-4-12'" in message and "llama-guard-4-12b" in message


def test_a_bad_guard_file_names_the_file_and_field(tmp_path):
    bad = tmp_path / "bad-guard.toml"
    bad.write_text(
        'name = "bad"\ndisplay_name = "Bad"\nkind = "magic"\nprovider = "vllm"\n'
        'checkpoint = "x/y"\nparser = "llama_guard"\n'
    )
    with pytest.raises(RegistryError, match=r"bad-guard\.toml: field 'kind'"):
        get_guard(str(bad))
    parser = tmp_path / "parser.toml"
    parser.write_text(
        'name = "p"\ndisplay_name = "P"\nkind = "generative"\nprovider = "vllm"\n'
        'checkpoint = "x/y"\nparser = "nope"\n'
    )
    with pytest.raises(RegistryError, match=r"parser\.toml: field 'parser'.*unknown guard parser"):
        get_guard(str(parser))
    res = CliRunner().invoke(
        app, ["guards", "--check", str(ROOT / "guards" / "llavaguard-7b.toml")]
    )
    assert res.exit_code == 0 and "valid guard 'llavaguard-7b'" in res.output


def test_cli_errors_are_one_line(tmp_path):
    out = tmp_path / "results"
    one_line_error(
        cli("guard", "--model", "shieldgemma-2-4b-it", "--protocol", "input",
            "-d", "sample", "--results", str(out)),
        "shieldgemma-2-4b-it", "--protocol image", "'input'",
    )  # fmt: skip
    assert not out.exists() or not any(out.rglob("*.jsonl"))
    one_line_error(
        cli("guard", "--model", "llavaguard7b", "-d", "sample", "--results", str(out)),
        "unknown guard 'llavaguard7b'", "llavaguard-7b",
    )  # fmt: skip
    bad = tmp_path / "bad-guard.toml"
    bad.write_text(
        'name = "bad"\ndisplay_name = "Bad"\nkind = "generative"\nparser = "zero_shot"\n'
    )
    one_line_error(cli("guards", "--check", str(bad)), "bad-guard.toml")
