"""Every user mistake ends in one line on stderr that says what is wrong and what to do,
exit code 2, and no traceback (`--verbose` brings it back). Through the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from holisafe_bench.dataset.synthetic import write_synthetic

BASELINE = (
    'name = "kw"\ndisplay_name = "KW"\ngroup = "open-weight"\nprovider = "baseline"\n'
    'checkpoint = "baseline-keyword"\n'
)


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    run_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    run_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "holisafe_bench", *args],
        capture_output=True,
        text=True,
        env=run_env,
        cwd=cwd,
        timeout=120,
    )


def one_line_error(res, *fragments: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def kw_results(tmp_path):
    data = write_synthetic(tmp_path / "data", per_cell=1)
    model = tmp_path / "kw.toml"
    model.write_text(BASELINE)
    out = tmp_path / "results"
    res = cli("run", "--model", str(model), "-d", str(data), "--results", str(out))
    assert res.returncode == 0, res.stderr
    return data, out


def test_unknown_model_and_judge_suggest_the_nearest_names(tmp_path):
    one_line_error(
        cli("run", "--model", "qwen2.5-vl7b", "-d", "sample", "--results", str(tmp_path)),
        "unknown model 'qwen2.5-vl7b'",
        "did you mean qwen2.5-vl-7b",
    )
    one_line_error(
        cli("judge", "--judge", "claud", "--all", "--results", str(tmp_path)),
        "unknown judge 'claud'",
        "did you mean claude",
    )


def test_verbose_keeps_the_traceback(tmp_path):
    res = cli("--verbose", "run", "--model", "qwen2.5-vl7b", "--results", str(tmp_path))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_judge_all_without_results_says_there_are_none(tmp_path):
    one_line_error(
        cli("judge", "--judge", "string-match", "--all", "--results", str(tmp_path / "empty")),
        "no responses under",
        "holisafe-bench run --model",
    )


def test_missing_key_names_each_variable_once(kw_results):
    _, out = kw_results
    line = one_line_error(
        cli("judge", "--judge", "claude", "--model", "kw", "--results", str(out)),
        "ANTHROPIC_API_KEY",
    )
    assert line.count("ANTHROPIC_API_KEY") == 1


def test_models_check_reports_what_run_would_reject(tmp_path):
    bad_group = tmp_path / "g.toml"
    bad_group.write_text(BASELINE.replace('group = "open-weight"', 'group = "baseline"'))
    one_line_error(cli("models", "--check", str(bad_group)), str(bad_group), "field 'group'")
    bad_checkpoint = tmp_path / "c.toml"
    bad_checkpoint.write_text(BASELINE.replace("baseline-keyword", "baseline-keywords"))
    one_line_error(
        cli("models", "--check", str(bad_checkpoint)), "not a baseline", "baseline-keyword"
    )
    good = tmp_path / "ok.toml"
    good.write_text(BASELINE)
    assert cli("models", "--check", str(good)).returncode == 0


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda t: t + "colour = 'red'\n", "field 'colour': unknown key"),
        (lambda t: t + "[generation]\nmax_tokens = 'many'\n", "field 'generation.max_tokens'"),
    ],
)
def test_invalid_model_toml_is_one_line_everywhere(tmp_path, change, field):
    path = tmp_path / "m.toml"
    path.write_text(change(BASELINE))
    one_line_error(cli("models", "--check", str(path)), str(path), field)
    one_line_error(
        cli("run", "--model", str(path), "-d", "sample", "--results", str(tmp_path)), field
    )


def test_invalid_judge_toml_is_one_line(tmp_path):
    path = tmp_path / "j.toml"
    path.write_text('name = "j"\ndisplay_name = "J"\nkind = "string_match"\nbogus = 1\n')
    one_line_error(
        cli("judge", "--judge", str(path), "--all", "--results", str(tmp_path)),
        "field 'bogus': unknown key",
    )


def test_dataset_that_is_not_utf8(tmp_path):
    data = write_synthetic(tmp_path / "data", per_cell=1)
    rows_file = data / "holisafe_bench.json"
    raw = rows_file.read_bytes()
    rows_file.write_bytes(raw.replace(b'"query": "', b'"query": "\xff', 1))
    one_line_error(cli("data", "verify", "-d", str(data)), str(rows_file), "not UTF-8")
    rows = json.loads(raw)
    jsonl = tmp_path / "rows.jsonl"
    lines = [json.dumps(r).encode() for r in rows]
    lines[1] = lines[1].replace(b'"query": "', b'"query": "\xfe', 1)
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    res = cli("data", "verify", "-d", str(jsonl))
    assert res.returncode == 1  # one bad row, reported; the other rows load
    assert f"{jsonl} row 2 (id ?): field '(row)': not UTF-8" in res.stdout + res.stderr


def test_a_second_writer_is_told_which_process_holds_the_file(kw_results, tmp_path):
    data, out = kw_results
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from holisafe_bench.records import ResponseRecord\n"
            "from holisafe_bench.store import RecordStore\n"
            "with RecordStore(sys.argv[1], ResponseRecord).writer():\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(60)\n",
            str(out / "kw" / "responses.jsonl"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        model = tmp_path / "kw.toml"
        one_line_error(
            cli(
                "run", "--model", str(model), "-d", str(data), "--results", str(out), "--overwrite"
            ),
            f"being written by process {holder.pid}",
            "re-run to resume",
        )
    finally:
        holder.kill()
        holder.wait()
    res = cli("run", "--model", str(tmp_path / "kw.toml"), "-d", str(data), "--results", str(out))
    assert res.returncode == 0, res.stderr  # the lock went with its holder


def test_score_agreement_and_report_without_results_say_what_to_run(tmp_path, kw_results):
    empty = tmp_path / "empty"
    one_line_error(cli("score", "--results", str(empty)), "run a model first")
    one_line_error(cli("leaderboard", "--results", str(empty)), "run a model first")
    one_line_error(cli("report", "--results", str(empty)), "nothing to report")
    assert not (empty / "report.html").exists()
    _, out = kw_results  # responses, no verdicts yet
    one_line_error(
        cli("score", "--results", str(out)),
        "no verdicts of judge 'string-match'",
        "holisafe-bench judge --judge string-match --all",
    )
    one_line_error(cli("agreement", "--results", str(out)), "at least two judges")


@pytest.mark.parametrize("command", ["score", "leaderboard", "agreement"])
def test_confidence_levels_are_fractions(tmp_path, command):
    one_line_error(
        cli(command, "--ci", "95", "--results", str(tmp_path)),
        "--ci 95: a confidence level is a fraction in (0, 1)",
        "did you mean 0.95",
    )


def test_a_judge_that_fails_at_once_leaves_nothing_and_empty_files_are_reported(kw_results):
    _, out = kw_results
    one_line_error(cli("judge", "--judge", "claude", "-m", "kw", "--results", str(out)), "API key")
    assert not (out / "kw" / "verdicts").exists()  # no empty file, no lock, no folder
    # An empty verdict file (left by an older version) is reported as such, not as n/a%.
    (out / "kw" / "verdicts").mkdir()
    (out / "kw" / "verdicts" / "claude.jsonl").touch()
    one_line_error(
        cli("score", "--judge", "claude", "--results", str(out)),
        "kw / claude: the verdict file holds no verdicts",
        "holisafe-bench judge --judge claude --model kw",
    )
    res = cli("leaderboard", "--judge", "claude", "--results", str(out))
    assert "kw / claude: the verdict file holds no verdicts" in res.stderr


def test_agreement_between_judges_with_no_model_in_common(tmp_path):
    for model in ("a", "b"):
        path = tmp_path / f"{model}.toml"
        path.write_text(BASELINE.replace('name = "kw"', f'name = "{model}"'))
        res = cli("run", "--model", str(path), "-d", "sample", "--results", str(tmp_path / "r"))
        assert res.returncode == 0, res.stderr
    judge_b = tmp_path / "sm2.toml"
    judge_b.write_text(
        'name = "sm2"\ndisplay_name = "SM2"\nkind = "string_match"\n'
        'start_phrases = ["I\'m sorry"]\n'
    )
    out = str(tmp_path / "r")
    assert cli("judge", "--judge", "string-match", "-m", "a", "--results", out).returncode == 0
    assert cli("judge", "--judge", str(judge_b), "-m", "b", "--results", out).returncode == 0
    one_line_error(cli("agreement", "--results", out), "share no judged model")


@pytest.mark.parametrize("command", [["run", "-m", "kw-file"], ["guard", "-m", "kw-file"]])
@pytest.mark.parametrize(
    ("option", "fragments"),
    [
        (["--ids", "12,abc"], ["--ids: 'abc' is not a sample id", "integers"]),
        (["--types", "SSS,XYZ"], ["--types: unknown ['XYZ']", "UUU"]),
    ],
)
def test_a_bad_selection_is_one_line_naming_the_option(tmp_path, command, option, fragments):
    model = tmp_path / "kw.toml"
    model.write_text(BASELINE)
    args = [model if part == "kw-file" else part for part in command]
    res = cli(*map(str, args), "-d", "sample", "--results", str(tmp_path / "r"), *option)
    one_line_error(res, *fragments)


def test_an_output_file_that_cannot_be_written_is_one_line_and_exit_2(tmp_path):
    """-o naming a folder: the path and the reason, no traceback (through the real entry
    point, which turns OSError into the one-line error)."""
    import subprocess
    import sys

    results = tmp_path / "r"
    model = tmp_path / "kw.toml"
    model.write_text(
        'name = "kw"\ndisplay_name = "KW"\ngroup = "open-weight"\nprovider = "baseline"\n'
        'checkpoint = "baseline-keyword"\ncheckpoint_note = "test"\n'
    )
    base = [sys.executable, "-m", "holisafe_bench"]
    for args in (
        ["run", "--model", str(model), "-d", "sample", "--limit", "5"],
        ["judge", "--judge", "string-match", "--all"],
    ):
        subprocess.run([*base, *args, "--results", str(results)], check=True, capture_output=True)
    res = subprocess.run(
        [*base, "leaderboard", "--results", str(results), "-o", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: Is a directory: {tmp_path}"


def test_llm_only_flags_given_to_string_matching_are_refused(tmp_path):
    """--dry-run with string matching used to judge for real, silently."""
    from typer.testing import CliRunner

    from holisafe_bench.cli.main import app
    from holisafe_bench.errors import HolisafeError

    results = tmp_path / "r"
    for flags in (["--dry-run"], ["--max-cost", "1"], ["--batch"], ["--strict-labels"]):
        args = ["judge", "--judge", "string-match", "--all", "--results", str(results), *flags]
        res = CliRunner().invoke(app, args)
        assert isinstance(res.exception, HolisafeError), res.output
        assert f"{flags[0]}: only for LLM judges" in str(res.exception)
    assert not results.exists()  # nothing judged, nothing written


def test_a_misspelt_judge_in_score_gets_a_suggestion_not_a_command_that_fails(tmp_path):
    from typer.testing import CliRunner

    from holisafe_bench.cli.main import app

    results = tmp_path / "r"
    model = tmp_path / "kw.toml"
    model.write_text(
        'name = "kw"\ndisplay_name = "KW"\ngroup = "open-weight"\nprovider = "baseline"\n'
        'checkpoint = "baseline-keyword"\ncheckpoint_note = "test"\n'
    )
    cli = CliRunner()
    for args in (
        ["run", "--model", str(model), "-d", "sample", "--limit", "5"],
        ["judge", "--judge", "string-match", "--all"],
    ):
        assert cli.invoke(app, [*args, "--results", str(results)]).exit_code == 0
    res = cli.invoke(app, ["score", "-j", "claud", "--results", str(results)])
    assert str(res.exception) == (
        "unknown judge 'claud': did you mean claude? verdicts here are of string-match; "
        "`holisafe-bench judges` lists them all"
    )
    one = Path(__file__).resolve().parents[1] / "results" / "published" / "leaderboard_4031_sm.csv"
    res = cli.invoke(app, ["agreement", "--published", str(one)])
    assert "give two or more published CSVs" in str(res.exception)


def test_out_of_range_counts_and_unknown_layouts_are_refused_in_one_line(tmp_path):
    """--limit -5 cut samples from the end, --decimals -1 wrote cells like 9E+1, and an
    unknown synthetic layout was a traceback."""
    from typer.testing import CliRunner

    from holisafe_bench.cli.main import app
    from holisafe_bench.errors import HolisafeError

    cli = CliRunner()
    for args in (
        ["run", "--model", "tiny-llava-random", "-d", "sample", "--limit", "-5"],
        ["run", "--model", "tiny-llava-random", "-d", "sample", "--limit", "0"],
        ["leaderboard", "--decimals", "-1"],
        ["score", "--decimals", "9"],
    ):
        res = cli.invoke(app, [*args, "--results", str(tmp_path / "r")])
        assert res.exit_code == 2 and "Invalid value" in res.output, (args, res.output)
    res = cli.invoke(app, ["data", "synth", str(tmp_path / "s"), "--layout", "csv"])
    assert isinstance(res.exception, HolisafeError)
    assert str(res.exception) == "--layout 'csv': choose one of json, jsonl, parquet"
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()
