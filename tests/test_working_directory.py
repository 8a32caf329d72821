"""What sits in the working directory never changes what a registered name means: a folder
named like a model (a results folder's own) or judge, or a file named like a built-in
prompt template."""

from __future__ import annotations

import pytest

from holisafe_bench.judging.template import load_template
from holisafe_bench.registry import get_judge, get_model, registry_dir


def test_folders_named_like_a_model_or_judge_are_not_specs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-llava-random").mkdir()  # as inside a results folder
    (tmp_path / "string-match").mkdir()
    assert get_model("tiny-llava-random").name == "tiny-llava-random"
    assert get_judge("string-match").name == "string-match"


def test_a_default_txt_here_does_not_replace_the_judges_prompt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own_text = "Say SAFE. {query} {safety_label} {response}"
    (tmp_path / "default.txt").write_text(own_text, encoding="utf-8")
    builtin = (registry_dir("judges") / "templates" / "default.txt").read_text(encoding="utf-8")
    assert load_template("default.txt").text == builtin
    # A path the user passes (--prompt-file) is read as given, and named as given.
    own = load_template("default.txt", user_file=True)
    assert own.text == own_text
    with pytest.raises(Exception, match="missing.txt"):
        load_template("missing.txt", user_file=True)
