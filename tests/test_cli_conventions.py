"""One option convention across commands, and help that reads at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest
import typer
from typer.testing import CliRunner

from holisafe_bench.cli.main import HIDDEN_ALIASES, app

runner = CliRunner()
COMMANDS = typer.main.get_command(app).commands


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_at_80_columns_keeps_every_option_name_whole(name):
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    res = subprocess.run(
        [sys.executable, "-m", "holisafe_bench", name, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "…" not in res.stdout
    for param in COMMANDS[name].params:
        if isinstance(param, click.Option) and not param.hidden:
            for opt in param.opts + param.secondary_opts:
                assert opt in res.stdout, f"{name} --help lost {opt}"
    assert max(len(line) for line in res.stdout.splitlines()) <= 80


def test_results_folder_and_output_file_have_one_name_each():
    for name, command in COMMANDS.items():
        for param in command.params:
            opts = getattr(param, "opts", [])
            assert "--out" not in opts and "--out-file" not in opts, name
            if "--results" in opts:
                assert opts == ["--results"], name
            if "--output" in opts:
                assert set(opts) == {"--output", "-o"}, name


def test_old_spellings_still_work_without_being_shown(tmp_path):
    assert HIDDEN_ALIASES == {"--out": "--results", "--out-file": "--output"}
    for args in (["--out", str(tmp_path)], [f"--out={tmp_path}"], ["--results", str(tmp_path)]):
        res = runner.invoke(app, ["score", *args])
        # The folder was taken (the error names it), not rejected as an unknown option.
        assert "No such option" not in res.output
        assert str(tmp_path) in str(res.exception), args
