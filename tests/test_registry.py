"""Model and judge declarations: all load, names unique, clear errors, the paper's 21."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.registry import RegistryError, get_model, load_judges, load_models

SHARED = Path(__file__).resolve().parents[2] / "shared"
ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_declaration_loads():
    models = load_models()
    assert len(models) == len(list((ROOT / "model_adapters").glob("*.toml")))
    assert len(models) >= 30
    assert "string-match" in load_judges()
    for spec in models.values():
        assert spec.checkpoint and spec.checkpoint_note, spec.name
        if spec.provider in ("openai", "anthropic", "gemini"):
            assert spec.api.api_key_env, spec.name


def test_the_21_published_models_are_declared_in_table_order():
    # ../shared/reference when CI has it beside the checkout, else the repository's copy.
    tables = SHARED / "reference" if SHARED.exists() else ROOT / "results" / "published"
    with (tables / "leaderboard_4031_sm.csv").open(encoding="utf-8") as fh:
        published = [row["Model"] for row in csv.DictReader(fh)]
    paper = sorted((s for s in load_models().values() if s.in_paper), key=lambda s: s.paper_order)
    assert len(paper) == 21
    for spec, name in zip(paper, published, strict=True):
        assert name in (spec.display_name, *spec.aliases)
    with (tables / "leaderboard_4163_sm.csv").open(encoding="utf-8") as fh:
        june = [row["Model"] for row in csv.DictReader(fh)]
    names = {n for s in paper for n in (s.display_name, *s.aliases)}
    assert set(june) <= names


def test_unknown_key_and_bad_value_name_the_file_and_field(tmp_path):
    unknown = tmp_path / "m.toml"
    unknown.write_text(
        'name = "m"\ndisplay_name = "M"\ngroup = "closed"\nprovider = "openai"\n'
        'checkpoint = "x"\ncolour = "blue"\n'
    )
    with pytest.raises(RegistryError, match=r"m\.toml: field 'colour': unknown key"):
        get_model(str(unknown))
    bad = tmp_path / "b.toml"
    bad.write_text(
        'name = "b"\ndisplay_name = "B"\ngroup = "closed"\nprovider = "openai"\n'
        'checkpoint = "x"\n[engine]\ntensor_parallel_size = 0\n'
    )
    with pytest.raises(RegistryError, match=r"b\.toml: field 'engine.tensor_parallel_size'"):
        get_model(str(bad))
    with pytest.raises(RegistryError, match="unknown model 'nope'"):
        get_model("nope")


def test_cli_lists_models_and_judges_and_checks_a_file(tmp_path):
    runner = CliRunner()
    listing = runner.invoke(app, ["models", "--json"])
    assert listing.exit_code == 0
    assert '"qwen2.5-vl-7b"' in listing.output
    assert "string-match" in runner.invoke(app, ["judges", "--json"]).output
    good = ROOT / "model_adapters" / "gpt-4o.toml"
    checked = runner.invoke(app, ["models", "--check", str(good)])
    assert checked.exit_code == 0 and "valid model 'gpt-4o'" in checked.output
