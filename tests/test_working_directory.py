"""What sits in the working directory never changes what a registered name means: a folder
named like a model (a results folder's own) or judge, or a file named like a built-in
prompt template."""

from __future__ import annotations

import pytest

from holisafe_bench.errors import HolisafeError
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


def test_resuming_a_run_on_another_dataset_is_refused(tmp_path):
    """Ids shared by two datasets name other samples: resuming would keep answers to the
    first dataset's questions as answers to the second's."""
    from typer.testing import CliRunner

    from holisafe_bench.cli.main import app
    from holisafe_bench.dataset.synthetic import write_synthetic

    model = tmp_path / "kw.toml"
    model.write_text(
        'name = "kw"\ndisplay_name = "KW"\ngroup = "open-weight"\nprovider = "baseline"\n'
        'checkpoint = "baseline-keyword"\ncheckpoint_note = "test"\n'
    )
    out = str(tmp_path / "results")
    cli = CliRunner()
    first = cli.invoke(app, ["run", "--model", str(model), "-d", "sample", "--out", out])
    assert first.exit_code == 0, first.output
    other = write_synthetic(tmp_path / "other", per_cell=1, seed=7)
    res = cli.invoke(app, ["run", "--model", str(model), "-d", str(other), "--out", out])
    assert isinstance(res.exception, HolisafeError)  # one line and exit 2 in the shell
    message = " ".join(str(res.exception).split())
    assert "come from another dataset" in message and "--overwrite" in message
    again = cli.invoke(app, ["run", "--model", str(model), "-d", "sample", "--out", out])
    assert again.exit_code == 0 and "already done" in again.output
