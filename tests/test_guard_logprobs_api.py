"""First-token log-probabilities from OpenAI-compatible servers: asked for with `logprobs` and
`top_logprobs` when a guard wants them, read from the reply, and turned into the guard's
score. End to end: a chat model TOML with provider "openai" as a zero-shot guard through
`holisafe-bench guard --base-url`, against a fake server that answers with log-probabilities."""

from __future__ import annotations

import math
import re

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset import load_benchmark
from holisafe_bench.guarding.records import GuardManifest, GuardRecord
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.providers.openai_provider import OpenAIProvider, completion_result
from holisafe_bench.providers.types import ChatRequest
from holisafe_bench.registry import ApiSettings
from holisafe_bench.store import RecordStore
from holisafe_bench.testing.fake_server import FakeRequest, FakeResponse, FakeServer
from holisafe_bench.testing.fake_vendors import openai_completion

runner = CliRunner()
TOP_K = 5


def _choice_body(text: str, logprobs: dict | None) -> dict:
    body = openai_completion("gpt-4o", text)
    if logprobs is not None:
        body["choices"][0]["logprobs"] = logprobs
    return body


def _alternatives(chosen: str, top: list[tuple[str, float]]) -> dict:
    """OpenAI's shape: content[i] = {token, logprob, top_logprobs: [{token, logprob}]}."""
    first = {
        "token": chosen,
        "logprob": dict(top).get(chosen, -9.0),
        "bytes": list(chosen.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top],
    }
    return {"content": [first, {"token": ":", "logprob": -0.01, "top_logprobs": []}]}


# -- the provider ------------------------------------------------------------------------------


def test_the_first_tokens_alternatives_are_read_from_the_reply():
    top = [("unsafe", math.log(0.6)), ("safe", math.log(0.3)), ("Unsafe", math.log(0.05))]
    result = completion_result("1", _choice_body("unsafe: terrorism", _alternatives("unsafe", top)))
    assert result.first_token_logprobs == pytest.approx(dict(top))
    # The chosen token is kept when top_logprobs left it out; same-text tokens add up.
    top = [("safe", math.log(0.2)), ("safe", math.log(0.1))]
    reply = _choice_body("unsafe", _alternatives("unsafe", top))
    reply["choices"][0]["logprobs"]["content"][0]["logprob"] = math.log(0.5)
    got = completion_result("2", reply).first_token_logprobs
    assert got == pytest.approx({"safe": math.log(0.3), "unsafe": math.log(0.5)})


@pytest.mark.parametrize(
    "logprobs",
    [None, {"content": []}, {"content": None}, {"content": [{"logprob": -1.0}]}, "oops"],
)
def test_replies_without_usable_logprobs_have_none_and_still_count(logprobs):
    body = _choice_body("safe", None)
    body["choices"][0]["logprobs"] = logprobs
    result = completion_result("1", body)
    assert result.outcome == "ok" and result.text == "safe"
    assert result.first_token_logprobs is None


def test_logprobs_are_asked_for_only_when_the_request_wants_them(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    api = ApiSettings(base_url="http://127.0.0.1:9/v1")
    plain = ChatRequest(id="1", text="hi", max_tokens=8)
    asking = ChatRequest(id="1", text="hi", max_tokens=8, logprobs=TOP_K)
    chat = OpenAIProvider("gpt-4o", api)
    assert chat.payload(plain) == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 8,
        "temperature": 0.0,
    }
    assert chat.payload(asking) == {**chat.payload(plain), "logprobs": True, "top_logprobs": 5}
    # Reasoning models take no sampling settings and give no log-probabilities.
    reasoning = OpenAIProvider("gpt-5", api)
    assert reasoning.payload(asking) == reasoning.payload(plain)
    assert "logprobs" not in reasoning.payload(asking)


# -- a zero-shot API guard through the CLI -----------------------------------------------------

MODEL_TOML = """\
name = "tiny-api-guard"
display_name = "Fake GPT"
group = "closed"
provider = "openai"
checkpoint = "gpt-4o"
checkpoint_note = "a fake OpenAI-compatible server in the test"

[api]
api_key_env = "HOLISAFE_TEST_NO_SUCH_KEY"
concurrency = 4
"""


def p_unsafe(sample_id: int) -> float:
    """The fake guard's P(unsafe) for a sample: spread over (0, 1), never 0.5."""
    return (sample_id % 10 + 0.5) / 10


def refuses(sample_id: int) -> bool:
    return sample_id % 5 == 4


def without_logprobs(sample_id: int) -> bool:
    return sample_id % 7 == 3 and not refuses(sample_id)


def guard_server() -> FakeServer:
    """Answers the zero-shot input template by the sample id in the query: "unsafe:
    weapon_related_violence" or "safe" with first-token alternatives whose softmax over the
    two words is p_unsafe(id) (a tenth of the mass elsewhere), a refusal for some, and no
    logprobs at all for others."""
    server = FakeServer()

    @server.route("POST", r"/v1/chat/completions")
    def chat(req: FakeRequest) -> FakeResponse:
        body = req.json()
        sample_id = int(
            re.search(r"\(sample (\d+)\)", body["messages"][-1]["content"][-1]["text"])[1]
        )
        if refuses(sample_id):
            top = [("I", -0.05), ("Sorry", -3.2)]
            return FakeResponse(
                body=_choice_body("I cannot classify this.", _alternatives("I", top))
            )
        p = p_unsafe(sample_id)
        top = sorted(
            [("unsafe", math.log(0.9 * p)), ("safe", math.log(0.9 * (1 - p)))], key=lambda t: -t[1]
        )
        text = "unsafe: weapon_related_violence" if p > 0.5 else "safe"
        logprobs = None if without_logprobs(sample_id) else _alternatives(top[0][0], top)
        return FakeResponse(body=_choice_body(text, logprobs))

    return server.start()


def test_a_zero_shot_api_guard_gets_scores_from_the_first_token(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a served model needs no key
    model = tmp_path / "tiny-api-guard.toml"
    model.write_text(MODEL_TOML)
    out = tmp_path / "results"
    server = guard_server()
    base_url = server.base_url + "/v1"
    try:
        args = ["guard", "--model", str(model), "--protocol", "input", "-d", "sample"]
        args += ["--base-url", base_url, "--results", str(out)]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        requests = [r.json() for r in server.log]
    finally:
        server.stop()

    samples = load_benchmark("sample").samples
    assert len(requests) == len(samples)
    for body in requests:
        assert body["logprobs"] is True and body["top_logprobs"] == TOP_K
        assert body["temperature"] == 0.0 and body["max_tokens"] == 16
    layout = ResultsLayout(out)
    records = RecordStore(layout.guard_verdicts("tiny-api-guard", "input"), GuardRecord).read()
    assert set(records) == {s.id for s in samples}
    for sample_id, rec in records.items():
        if refuses(sample_id):
            assert rec.outcome == "invalid" and rec.unsafe is None and rec.score is None
            assert rec.raw == "I cannot classify this." and rec.reason.startswith("refused")
            continue
        p = p_unsafe(sample_id)
        assert rec.outcome == "ok" and rec.unsafe is (p > 0.5)
        assert rec.predicted_label == ("weapon_related_violence" if p > 0.5 else "safe")
        if without_logprobs(sample_id):
            assert rec.score is None
        else:
            assert rec.score == pytest.approx(p, abs=1e-9)
    manifest = GuardManifest.model_validate_json(
        layout.guard_manifest("tiny-api-guard", "input").read_text()
    )
    assert manifest.kind == "zero_shot" and manifest.provider == "openai"
    assert manifest.counts["invalid"] == sum(refuses(s.id) for s in samples)
    assert manifest.counts["ok"] == len(samples) - manifest.counts["invalid"]
    assert manifest.provider_details["base_url"] == base_url
