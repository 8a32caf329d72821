"""Requests go to the API workers in batches and results come back in batches: still one
result per request, and what was read before a failing request iterator is still sent."""

from __future__ import annotations

import pytest

from holisafe_bench.providers.process_runner import (
    REQUESTS_PER_PUT,
    ProviderRecipe,
    run_in_processes,
)
from holisafe_bench.providers.types import ChatRequest
from holisafe_bench.registry import ApiSettings
from holisafe_bench.testing.fake_vendors import openai_server


@pytest.fixture
def recipe(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-batches-0000")
    server = openai_server(reply=lambda text: f"echo {text}").start()
    yield ProviderRecipe("openai", "model-x", ApiSettings(base_url=server.base_url + "/v1"))
    server.stop()


def test_every_request_of_partial_and_full_batches_gets_its_own_result(recipe):
    n = 5 * REQUESTS_PER_PUT + 3
    results = []
    requests = (ChatRequest(id=str(i), text=f"q{i}", max_tokens=8) for i in range(n))
    run_in_processes(recipe, requests, processes=2, concurrency=4, on_result=results.append)
    assert sorted(int(r.id) for r in results) == list(range(n))
    assert all(r.text == f"echo q{r.id}" for r in results)


def test_requests_read_before_an_iterator_error_are_still_answered(recipe):
    results = []

    def requests():
        for i in range(REQUESTS_PER_PUT - 3):
            yield ChatRequest(id=str(i), text=f"q{i}", max_tokens=8)
        raise RuntimeError("bad row")

    with pytest.raises(RuntimeError, match="bad row"):
        run_in_processes(recipe, requests(), processes=2, concurrency=4, on_result=results.append)
    assert sorted(int(r.id) for r in results) == list(range(REQUESTS_PER_PUT - 3))
