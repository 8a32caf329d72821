"""Specs do what they record: the sampling a run records is the sampling it sends, top_p
reaches every provider (or the model file is refused), a judge's parser and behaviours come
from its file, and manifests hold declared fields only."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.judging import parser as parsers
from holisafe_bench.judging.verdicts import verdict_from_reply
from holisafe_bench.providers.types import ChatRequest
from holisafe_bench.records import ImportManifest, JudgeManifest, RunManifest
from holisafe_bench.registry import (
    GenerationParams,
    ModelSpec,
    RegistryError,
    get_judge,
    get_model,
    load_judges,
)
from holisafe_bench.stages.run import RunOptions, resolve_sampling
from holisafe_bench.testing.fake_vendors import openai_server

runner = CliRunner()
SYSTEM = "Answer in one sentence."


def _openai_model(path, base_url: str, generation: str) -> str:
    path.write_text(
        'name = "gpt-fake"\ndisplay_name = "GPT fake"\ngroup = "closed"\nprovider = "openai"\n'
        f'checkpoint = "gpt-4o"\n[generation]\n{generation}\n'
        f'[api]\nbase_url = "{base_url}"\nconcurrency = 2\n'
    )
    return str(path)


@pytest.fixture()
def server():
    fake = openai_server()
    fake.start()
    yield fake
    fake.stop()


def _run(tmp_path, model: str, *extra: str) -> dict:
    data = write_synthetic(tmp_path / "data", per_cell=1)
    out = tmp_path / "results"
    args = ["run", "--model", model, "-d", str(data), "--results", str(out)]
    res = runner.invoke(app, [*args, "--sample", "3", "--processes", "1", *extra])
    assert res.exit_code == 0, (res.output, res.exception)
    return json.loads((out / "gpt-fake" / "run.json").read_text())


def _sent(server) -> list[dict]:
    return [r.json() for r in server.log if r.path.endswith("/chat/completions")]


def _system_messages(body: dict) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "system"]


def test_an_empty_system_prompt_is_recorded_as_sent(tmp_path, server):
    model = _openai_model(
        tmp_path / "m.toml", server.base_url + "/v1", f'system_prompt = "{SYSTEM}"'
    )
    manifest = _run(tmp_path, model, "--system-prompt", "")
    bodies = _sent(server)
    assert len(bodies) == 3
    assert all(_system_messages(b) == [] for b in bodies)  # none sent ...
    assert manifest["sampling"]["system_prompt"] == ""  # ... and none recorded


def test_the_spec_system_prompt_is_recorded_as_sent(tmp_path, server):
    model = _openai_model(
        tmp_path / "m.toml", server.base_url + "/v1", f'system_prompt = "{SYSTEM}"'
    )
    manifest = _run(tmp_path, model)
    assert all(_system_messages(b) == [SYSTEM] for b in _sent(server))
    assert manifest["sampling"]["system_prompt"] == SYSTEM


def test_top_p_reaches_the_openai_server_and_the_manifest(tmp_path, server):
    model = _openai_model(
        tmp_path / "m.toml", server.base_url + "/v1", "temperature = 0.7\ntop_p = 0.9"
    )
    manifest = _run(tmp_path, model, "--max-tokens", "33")
    bodies = _sent(server)
    assert {(b["top_p"], b["temperature"], b["max_tokens"]) for b in bodies} == {(0.9, 0.7, 33)}
    assert manifest["sampling"] == {
        "max_tokens": 33,
        "temperature": 0.7,
        "top_p": 0.9,
        "system_prompt": None,
    }


def test_without_top_p_none_is_sent(tmp_path, server):
    model = _openai_model(tmp_path / "m.toml", server.base_url + "/v1", "temperature = 0.0")
    _run(tmp_path, model)
    assert all("top_p" not in b for b in _sent(server))


def _spec(**generation) -> ModelSpec:
    return ModelSpec(
        name="m",
        display_name="M",
        group="open-weight",
        provider="vllm",
        checkpoint="org/m",
        generation=GenerationParams(**generation),
    )


def test_options_override_the_spec_even_when_empty():
    spec = _spec(max_tokens=100, temperature=0.5, top_p=0.8, system_prompt="S")
    assert resolve_sampling(spec, RunOptions()).model_dump() == {
        "max_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.8,
        "system_prompt": "S",
    }
    chosen = resolve_sampling(spec, RunOptions(temperature=0.0, system_prompt="", max_tokens=7))
    assert (chosen.temperature, chosen.system_prompt, chosen.max_tokens) == (0.0, "", 7)


REQUEST = ChatRequest(id="1", text="hi", temperature=0.6, top_p=0.75)


def test_anthropic_and_gemini_payloads_carry_top_p(monkeypatch):
    from holisafe_bench.providers.anthropic_provider import AnthropicProvider
    from holisafe_bench.providers.gemini_provider import GeminiProvider
    from holisafe_bench.registry import ApiSettings

    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    claude = AnthropicProvider("claude-sonnet-4-5", ApiSettings())
    assert claude.payload(REQUEST)["extra_body"] == {"temperature": 0.6, "top_p": 0.75}
    gemini = GeminiProvider("gemini-2.0-flash", ApiSettings())
    assert gemini.rest_body(REQUEST)["generationConfig"]["topP"] == 0.75
    assert gemini.contents_and_config(REQUEST)[1].top_p == 0.75
    plain = ChatRequest(id="2", text="hi")
    assert "top_p" not in claude.payload(plain)["extra_body"]
    assert "topP" not in gemini.rest_body(plain)["generationConfig"]


def _model_file(tmp_path, provider: str, checkpoint: str) -> str:
    path = tmp_path / f"{provider}.toml"
    path.write_text(
        f'name = "x"\ndisplay_name = "X"\ngroup = "closed"\nprovider = "{provider}"\n'
        f'checkpoint = "{checkpoint}"\n[generation]\ntop_p = 0.9\n'
    )
    return str(path)


@pytest.mark.parametrize(
    ("provider", "checkpoint", "why"),
    [("baseline", "baseline-keyword", "does not sample"), ("openai", "o3-mini", "o3-mini")],
)
def test_top_p_a_provider_cannot_honour_is_refused_at_load(tmp_path, provider, checkpoint, why):
    path = _model_file(tmp_path, provider, checkpoint)
    with pytest.raises(RegistryError) as err:
        get_model(path)
    message = str(err.value)
    assert "\n" not in message and path in message and "top_p" in message and why in message


def test_top_p_is_accepted_where_it_is_honoured(tmp_path):
    assert get_model(_model_file(tmp_path, "openai", "gpt-4o")).generation.top_p == 0.9


def _judge_file(tmp_path, extra: str) -> str:
    path = tmp_path / "my-judge.toml"
    path.write_text(
        'name = "my-judge"\ndisplay_name = "Mine"\nkind = "llm"\nprovider = "openai"\n'
        f'model = "my-vlm"\nprompt_template = "default.txt"\n{extra}\n'
    )
    return str(path)


def test_an_unknown_parser_is_refused_naming_the_judge_file(tmp_path):
    path = _judge_file(tmp_path, 'parser = "yes_no"')
    with pytest.raises(RegistryError) as err:
        get_judge(path)
    message = str(err.value)
    assert "\n" not in message and path in message
    assert "'yes_no'" in message and "label_true_false" in message


def test_the_judge_file_chooses_the_parser(tmp_path, monkeypatch):
    def yes_no(reply: str, *, strict: bool = False) -> parsers.ParsedVerdict:
        return parsers.ParsedVerdict(follows=reply.strip().lower() == "yes")

    monkeypatch.setitem(parsers.PARSERS, "yes_no", yes_no)
    judge = get_judge(_judge_file(tmp_path, 'parser = "yes_no"'))
    base = {
        "sample_id": 1,
        "model": "m",
        "judge": judge.name,
        "type": "SSS",
        "category": "c",
        "subcategory": "s",
    }
    assert verdict_from_reply(base, judge, "yes", False).follows is True
    # The label parser would read this reply as adhering; the judge's own parser does not.
    assert verdict_from_reply(base, judge, "<label>True</label>", False).follows is False
    assert verdict_from_reply(base, judge, "Yes", False).follows is True


def test_no_judge_behaviour_hangs_on_its_name():
    judges = load_judges()
    flagged = {name for name, j in judges.items() if j.requires_base_url or not j.batch_api}
    assert flagged == {"open-weight"}


def test_a_judge_needing_a_server_says_so_by_its_file(tmp_path, kw_run):
    data, out = kw_run
    judge = _judge_file(tmp_path, "requires_base_url = true\nbatch_api = false")
    args = ["judge", "--judge", judge, "--model", "kw", "-d", str(data), "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code != 0
    assert "the my-judge judge needs --base-url" in str(res.exception)
    res = runner.invoke(app, [*args, "--base-url", "http://127.0.0.1:9/v1", "--batch"])
    assert res.exit_code != 0
    assert "run the my-judge judge without --batch" in str(res.exception)


def test_manifests_declare_their_fields():
    manifest = RunManifest(model="m")
    assert "provider_details" not in manifest.model_dump(mode="json")  # no provider built
    manifest.provider_details = {"provider": "baseline"}
    assert manifest.model_dump(mode="json")["provider_details"] == {"provider": "baseline"}
    judge = JudgeManifest(model="m", judge="string-match")
    assert "label_rule" not in judge.model_dump(mode="json")
    with pytest.raises(ValidationError):
        JudgeManifest(model="m", judge="j", undeclared_detail=1)
    with pytest.raises(ValidationError):
        ImportManifest.model_validate({"model": "m", "surprise": True})


@pytest.mark.slow  # loads the tiny LLaVA through transformers
def test_transformers_samples_with_top_p_and_groups_by_it(monkeypatch):
    pytest.importorskip("torch", reason="the hf extra (torch) is installed by `make install`")
    import io

    from PIL import Image

    from holisafe_bench.providers.transformers_provider import TransformersProvider
    from holisafe_bench.providers.types import ImageInput

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    provider = TransformersProvider(get_model("tiny-llava-random"))
    calls: list[dict] = []
    generate = provider.model.generate

    def spy(**kwargs):
        calls.append({k: kwargs.get(k) for k in ("do_sample", "temperature", "top_p")})
        calls[-1]["rows"] = len(kwargs["input_ids"])
        return generate(**kwargs)

    monkeypatch.setattr(provider.model, "generate", spy)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buf, format="PNG")
    image = (ImageInput(data=buf.getvalue(), media_type="image/png"),)

    def req(i: int, temperature: float, top_p: float | None) -> ChatRequest:
        return ChatRequest(str(i), "hi", image, max_tokens=4, temperature=temperature, top_p=top_p)

    results = provider.generate_batch(
        [req(0, 0.7, 0.5), req(1, 0.7, 0.5), req(2, 0.7, None), req(3, 0.0, 0.5)]
    )
    assert all(r.outcome == "ok" for r in results)
    assert sorted(calls, key=str) == sorted(
        [
            {"do_sample": True, "temperature": 0.7, "top_p": 0.5, "rows": 2},
            {"do_sample": True, "temperature": 0.7, "top_p": None, "rows": 1},
            {"do_sample": False, "temperature": None, "top_p": None, "rows": 1},  # greedy
        ],
        key=str,
    )
