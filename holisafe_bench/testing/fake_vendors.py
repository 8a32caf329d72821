"""Fake OpenAI, Anthropic and Gemini chat endpoints with vendor-shaped replies."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable

from holisafe_bench.testing.fake_server import FakeRequest, FakeResponse, FakeServer

Reply = Callable[[str], str]
_ids = itertools.count(1)


def default_reply(prompt: str) -> str:
    return f"fake answer to: {prompt[:60]}"


def openai_server(reply: Reply = default_reply, latency: float = 0.0) -> FakeServer:
    server = FakeServer(latency)

    @server.route("POST", r"/v1/chat/completions")
    def chat(req: FakeRequest) -> FakeResponse:
        body = req.json()
        text = body["messages"][-1]["content"][-1]["text"]
        return FakeResponse(body=openai_completion(body["model"], reply(text)))

    return server


def openai_completion(model: str, text: str, finish: str = "stop") -> dict:
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def anthropic_server(reply: Reply = default_reply, latency: float = 0.0) -> FakeServer:
    server = FakeServer(latency)

    @server.route("POST", r"/v1/messages")
    def messages(req: FakeRequest) -> FakeResponse:
        body = req.json()
        text = body["messages"][-1]["content"][-1]["text"]
        return FakeResponse(body=anthropic_message(body["model"], reply(text)))

    return server


def anthropic_message(model: str, text: str, stop: str = "end_turn") -> dict:
    return {
        "id": f"msg_{next(_ids)}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}] if text else [],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 13, "output_tokens": 5},
    }


def gemini_server(reply: Reply = default_reply, latency: float = 0.0) -> FakeServer:
    server = FakeServer(latency)

    @server.route("POST", r"/v1(beta)?/models/(?P<model>[^/:]+):generateContent")
    def generate(req: FakeRequest) -> FakeResponse:
        parts = req.json()["contents"][-1]["parts"]
        return FakeResponse(body=gemini_reply(reply(parts[-1]["text"])))

    return server


def gemini_reply(text: str, finish: str = "STOP") -> dict:
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": finish,
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 17, "candidatesTokenCount": 4, "totalTokenCount": 21},
    }


def received_image_then_text(vendor: str, body: dict) -> tuple[bytes, str]:
    """The image bytes and the text a request carried, asserting the image came first."""
    if vendor == "openai":
        first, last = body["messages"][-1]["content"]
        assert first["type"] == "image_url" and last["type"] == "text"
        return base64.b64decode(first["image_url"]["url"].split(",", 1)[1]), last["text"]
    if vendor == "anthropic":
        first, last = body["messages"][-1]["content"]
        assert first["type"] == "image" and last["type"] == "text"
        return base64.b64decode(first["source"]["data"]), last["text"]
    first, last = body["contents"][-1]["parts"]
    assert "inlineData" in first or "inline_data" in first
    inline = first.get("inlineData") or first.get("inline_data")
    # The JSON bytes encoding accepts standard and url-safe base64 alike.
    data = inline["data"].replace("-", "+").replace("_", "/")
    return base64.b64decode(data), last["text"]
