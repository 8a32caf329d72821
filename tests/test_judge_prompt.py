"""The LLM-judge request (issue 12, section 1): the default prompt's structure, the authors'
placeholder spellings, `--prompt-from` an authors-shaped judge script (file or URL), the
label rule, and a cache keyed on the rendered prompt. Through the real CLI and the real
OpenAI SDK against a fake server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset import load_benchmark
from holisafe_bench.errors import HolisafeError
from holisafe_bench.taxonomy import safety_label
from holisafe_bench.testing.fake_server import FakeResponse
from holisafe_bench.testing.fake_vendors import openai_server

runner = CliRunner()
SCRIPT = Path(__file__).parent / "data" / "authors_style_judge_eval.py"


def _judge(out, data, url, *extra):
    args = ["judge", "--judge", "gpt4o", "--model", "kw", "-d", str(data), "--out", str(out)]
    return runner.invoke(app, [*args, "--base-url", url + "/v1", *extra])


def _recording_server(reply: str = "<label>True</label>"):
    """A fake OpenAI server answering `reply`; `received` holds every prompt text sent."""
    received: list[str] = []

    def answer(text: str) -> str:
        received.append(text)
        return reply

    return openai_server(reply=answer).start(), received


def _manifest(out) -> dict:
    return json.loads((out / "kw" / "verdicts" / "gpt4o.json").read_text())


def _verdicts(out) -> dict[int, dict]:
    latest = {}
    for line in (out / "kw" / "verdicts" / "gpt4o.jsonl").read_text().splitlines():
        record = json.loads(line)
        latest[record["sample_id"]] = record
    return latest


def _responses(out) -> dict[int, str]:
    lines = (out / "kw" / "responses.jsonl").read_text().splitlines()
    return {r["sample_id"]: r["text"] for r in map(json.loads, lines)}


def _set_response(out, sample_id: int, text: str) -> None:
    path = out / "kw" / "responses.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines()]
    for record in records:
        if record["sample_id"] == sample_id:
            record["text"] = text
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _prompt_for(received: list[str], query: str) -> str:
    matches = [t for t in received if query in t]
    assert len(matches) == 1, (query, len(matches))
    return matches[0]


def _script_prompt() -> str:
    """The prompt constant of the test script, as Python itself evaluates it (an oracle
    independent of the ast extraction under test)."""
    spec = importlib.util.spec_from_file_location("authors_style_judge_eval", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.JUDGE_PROMPT_TEMPLATE


def test_default_prompt_has_role_then_instructions_then_the_three_inputs_last(kw_run):
    data, out = kw_run
    server, received = _recording_server()
    try:
        res = _judge(out, data, server.base_url)
        assert res.exit_code == 0, res.output
    finally:
        server.stop()
    sample = next(s for s in load_benchmark(str(data)).samples if s.type == "USU")
    response = _responses(out)[sample.id]
    text = _prompt_for(received, sample.query)
    lines = text.rstrip("\n").splitlines()

    # Role first.
    assert "safety evaluator" in lines[0].lower()
    # A line of dashes separates the instructions from the inputs.
    dashes = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    assert len(dashes) == 1
    instructions = "\n".join(lines[: dashes[0]]).lower()
    inputs = "\n".join(lines[dashes[0] + 1 :])
    # Instructions: the image before the query; unsafe -> refusal, safe -> helpful answer;
    # reason silently; the label only plus one short sentence; the label format.
    assert instructions.index("image") < instructions.index("question")
    assert re.search(r"\bunsafe\b[^\n]*\brefusal\b", instructions)
    assert re.search(r"(?<!un)safe\b[^\n]*\bhelpful answer\b", instructions)
    assert "silently" in instructions and "one short sentence" in instructions
    assert "<label>true</label>" in instructions and "<label>false</label>" in instructions
    for value in (sample.query, response):
        assert value not in "\n".join(lines[: dashes[0]])
    # The inputs last, one per line with its name, in the order question, label, response.
    assert inputs == (
        f"Question: {sample.query}\nSafety label: {safety_label(sample.type)}\nResponse: {response}"
    )
    assert safety_label(sample.type) == "unsafe"

    manifest = _manifest(out)
    template = (Path(__file__).parents[1] / "judges" / "templates" / "default.txt").read_text()
    assert manifest["prompt_template_hash"] == hashlib.sha256(template.encode()).hexdigest()


def test_prompt_file_takes_the_authors_placeholder_spellings(kw_run, tmp_path):
    data, out = kw_run
    sample_id = min(_responses(out))
    # Input text is never re-expanded: placeholders typed in a response stay as typed.
    _set_response(out, sample_id, "Sure: {user_query} and {question} {{model_response}}")
    template = tmp_path / "authors.txt"
    template.write_text("Q={question}|U={user_query}|L={safety_label}|R={model_response}")
    server, received = _recording_server()
    try:
        res = _judge(out, data, server.base_url, "--prompt-file", str(template))
        assert res.exit_code == 0, res.output
    finally:
        server.stop()
    sample = load_benchmark(str(data)).by_id[sample_id]
    label = safety_label(sample.type)
    reply = "Sure: {user_query} and {question} {{model_response}}"
    assert f"Q={sample.query}|U={sample.query}|L={label}|R={reply}" in received
    expected_hash = hashlib.sha256(template.read_text().encode()).hexdigest()
    assert _manifest(out)["prompt_template_hash"] == expected_hash


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("{question} {safety_label} {response} {image_caption}", "{image_caption}"),
        ("{question} {safety_label}", "{response}"),
    ],
)
def test_prompt_file_with_an_unknown_or_missing_placeholder_names_file_and_placeholder(
    kw_run, tmp_path, text, named
):
    data, out = kw_run
    template = tmp_path / "bad.txt"
    template.write_text(text)
    res = _judge(out, data, "http://127.0.0.1:9", "--prompt-file", str(template))
    assert isinstance(res.exception, HolisafeError)
    message = str(res.exception)
    assert str(template) in message and named in message and "\n" not in message


def test_prompt_from_an_authors_style_script_judges_with_its_prompt(kw_run):
    data, out = kw_run
    sample_id = min(_responses(out))
    typed = 'As asked: {user_query} {{"x"}}'
    _set_response(out, sample_id, typed)
    server, received = _recording_server()
    try:
        res = _judge(out, data, server.base_url, "--prompt-from", str(SCRIPT))
        assert res.exit_code == 0, res.output
    finally:
        server.stop()
    assert len(received) == 95
    prompt = _script_prompt()
    sample = load_benchmark(str(data)).by_id[sample_id]
    # What the authors' script would send: str.format of its constant (doubled braces
    # become single ones), while the response is inserted exactly as typed.
    expected = prompt.format(
        user_query=sample.query, safety_label=safety_label(sample.type), model_response=typed
    )
    assert expected in received
    assert all('{"label": true}' in t and "{user_query}" not in t.split(typed)[0] for t in received)

    manifest = _manifest(out)
    assert manifest["prompt_template_hash"] == hashlib.sha256(prompt.encode()).hexdigest()
    assert manifest["prompt_script_sha256"] == hashlib.sha256(SCRIPT.read_bytes()).hexdigest()
    assert manifest["prompt_script_origin"] == str(SCRIPT)
    assert manifest["prompt_script_variable"] == "JUDGE_PROMPT_TEMPLATE"
    assert manifest["prompt_template_style"] == "str.format"


def test_prompt_from_a_url_downloads_the_script_once_into_the_cache(kw_run):
    data, out = kw_run
    host = openai_server(reply=lambda text: "<label>True</label>")

    @host.route("GET", r"/eval/judge_gpt4o\.py")
    def script(req):
        return FakeResponse(body=SCRIPT.read_bytes())

    host.start()
    url = host.base_url + "/eval/judge_gpt4o.py"
    try:
        res = _judge(out, data, host.base_url, "--prompt-from", url)
        assert res.exit_code == 0, res.output
        assert host.count("/eval/") == 1
        manifest = _manifest(out)
        assert manifest["prompt_script_origin"] == url
        assert manifest["prompt_script_sha256"] == hashlib.sha256(SCRIPT.read_bytes()).hexdigest()
        cached = Path(manifest["prompt_script_cached_copy"])
        assert cached.read_bytes() == SCRIPT.read_bytes()
        assert cached.is_relative_to(out / ".cache")
        # A second run reads the cached copy: no second download.
        res = _judge(out, data, host.base_url, "--prompt-from", url, "--overwrite")
        assert res.exit_code == 0, res.output
        assert host.count("/eval/") == 1
    finally:
        host.stop()


def test_prompt_from_a_script_without_a_prompt_is_a_one_line_error_naming_it(kw_run, tmp_path):
    data, out = kw_run
    script = tmp_path / "judge_without_prompt.py"
    script.write_text(
        'import json\n\nNOTE = "see {user_query}"\n\n\ndef main():\n'
        '    print(json.dumps({"a": 1}))\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "HOLISAFE_VERBOSE"}
    args = ["judge", "--judge", "gpt4o", "--model", "kw", "-d", str(data), "--out", str(out)]
    res = subprocess.run(
        [sys.executable, "-m", "holisafe_bench", *args, "--prompt-from", str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert str(script) in lines[0] and "no prompt string" in lines[0]


def test_first_label_wins_by_default_and_strict_labels_makes_conflicts_invalid(kw_run):
    data, out = kw_run
    server, _ = _recording_server(reply="<label>False</label> On reflection: <label>True</label>")
    try:
        res = _judge(out, data, server.base_url)
        assert res.exit_code == 0, res.output
        verdicts = _verdicts(out)
        assert all(v["follows"] is False for v in verdicts.values())
        manifest = _manifest(out)
        assert manifest["label_rule"] == "first_label_wins"
        assert manifest["label_conflicts"] == {
            "conflicting_replies": 95,
            "resolved_by_first_label": 95,
            "invalid_by_strict_rule": 0,
        }

        # Switching the rule would leave verdicts made by the other one: say so.
        res = _judge(out, data, server.base_url, "--strict-labels")
        assert isinstance(res.exception, HolisafeError)
        assert "--overwrite" in str(res.exception)

        calls = server.count("/chat/completions")
        res = _judge(out, data, server.base_url, "--strict-labels", "--overwrite")
        assert res.exit_code == 0, res.output
        assert server.count("/chat/completions") == calls  # cached replies, re-read
        verdicts = _verdicts(out)
        assert all(v["invalid"] == "parse_error" for v in verdicts.values())
        manifest = _manifest(out)
        assert manifest["label_rule"] == "strict_labels"
        assert manifest["label_conflicts"] == {
            "conflicting_replies": 95,
            "resolved_by_first_label": 0,
            "invalid_by_strict_rule": 95,
        }
    finally:
        server.stop()


def test_cache_is_keyed_on_the_rendered_prompt(kw_run, tmp_path):
    """The same template text rendered two ways (plain file: doubled braces kept; a
    str.format script: halved) are two prompts, so the cache must not serve one for the
    other."""
    data, out = kw_run
    text = "Check {{this}}. {user_query} / {safety_label} / {model_response}"
    as_file = tmp_path / "t.txt"
    as_file.write_text(text)
    as_script = tmp_path / "judge.py"
    as_script.write_text(f"PROMPT = {text!r}\n\n\ndef main(q, l, r):\n    PROMPT.format()\n")
    server, received = _recording_server()
    try:
        res = _judge(out, data, server.base_url, "--prompt-file", str(as_file))
        assert res.exit_code == 0, res.output
        # Another prompt over the same verdict file: say so rather than mix the two.
        res = _judge(out, data, server.base_url, "--prompt-from", str(as_script))
        assert isinstance(res.exception, HolisafeError)
        assert "another judge prompt" in str(res.exception) and "--overwrite" in str(res.exception)
        res = _judge(out, data, server.base_url, "--prompt-from", str(as_script), "--overwrite")
        assert res.exit_code == 0, res.output
    finally:
        server.stop()
    assert len(received) == 190
    assert sum("Check {{this}}." in t for t in received) == 95
    assert sum("Check {this}." in t for t in received) == 95
    assert not any(v["cached"] for v in _verdicts(out).values())
