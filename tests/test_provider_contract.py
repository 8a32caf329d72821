"""The provider contract (providers/base.py) and the one table that serves it
(providers/factory.py): every registered name maps to a class that implements the contract,
worker recipes rebuild an equivalent provider, SDK exceptions are classified by their
types, and an unknown provider is one line naming the known ones."""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys
from typing import get_args

import anthropic
import httpx2
import openai
import pytest
from google.genai import errors as genai_errors

import holisafe_bench.errors
from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.base import ApiProvider, BatchProvider, Provider, ProviderRecipe
from holisafe_bench.providers.baseline import BaselineProvider
from holisafe_bench.providers.batch_api import BatchJobApi
from holisafe_bench.providers.factory import (
    PROVIDERS,
    create_batch_api,
    create_chat_provider,
    create_provider,
    provider_class,
    provider_entry,
    rebuild,
    resolve,
)
from holisafe_bench.providers.sdk_errors import unexpected_error
from holisafe_bench.providers.types import ChatRequest, ImageInput
from holisafe_bench.registry import ApiSettings, ModelSpec
from holisafe_bench.registry import Provider as ProviderName

KEY = "sk-contract-SECRET-0123456789"
API_NAMES = sorted(name for name, entry in PROVIDERS.items() if entry.kind == "api")
LOCAL_NAMES = sorted(name for name, entry in PROVIDERS.items() if entry.kind == "local")
SETTINGS = ApiSettings(
    base_url="http://127.0.0.1:9/v1",
    api_key_env="HOLISAFE_CONTRACT_KEY",
    concurrency=24,
    requests_per_minute=600,
    timeout_s=7.5,
)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("HOLISAFE_CONTRACT_KEY", KEY)


def _overrides(cls: type, base: type, method: str) -> bool:
    return getattr(cls, method) is not getattr(base, method)


def test_the_table_lists_exactly_the_providers_a_spec_may_name():
    assert set(PROVIDERS) == set(get_args(ProviderName))
    assert API_NAMES == ["anthropic", "gemini", "openai"]
    assert LOCAL_NAMES == ["baseline", "transformers", "vllm"]


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_name_maps_to_a_class_that_implements_the_contract(name):
    cls = provider_class(name)
    assert issubclass(cls, Provider) and not inspect.isabstract(cls)
    assert cls.provider_name == name
    if PROVIDERS[name].kind == "api":
        assert issubclass(cls, ApiProvider)
        for method in ("call_once", "call_error", "make_client", "aclose"):
            assert _overrides(cls, ApiProvider, method), f"{name} lacks its own {method}"
    else:
        assert issubclass(cls, BatchProvider)
        assert _overrides(cls, BatchProvider, "generate_batch")


@pytest.mark.parametrize("name", API_NAMES)
def test_every_api_provider_has_a_batch_api_of_its_own_vendor(name):
    batch_cls = resolve(PROVIDERS[name].batch_api)
    assert issubclass(batch_cls, BatchJobApi) and not inspect.isabstract(batch_cls)
    provider = create_chat_provider(name, "model-x", api=SETTINGS)
    batch = create_batch_api(provider)
    assert type(batch) is batch_cls and batch.vendor == name and batch.provider is provider


def test_a_provider_without_a_batch_api_says_to_run_without_batch():
    with pytest.raises(HolisafeError) as caught:
        create_batch_api(BaselineProvider("baseline-refuse-all"))
    assert str(caught.value) == "provider 'baseline' has no batch API; run without --batch"


def _request() -> ChatRequest:
    image = ImageInput(data=b"\x89PNG not decoded", media_type="image/png")
    return ChatRequest(id="7", text="what is this?", images=(image,), system="be brief")


def _sent(provider: ApiProvider) -> dict:
    """What the provider would send for one request (the vendor's REST body)."""
    if hasattr(provider, "rest_body"):
        return provider.rest_body(_request())
    return provider.payload(_request())


@pytest.mark.parametrize("name", API_NAMES)
def test_a_worker_recipe_rebuilds_an_equivalent_provider(name):
    provider = create_chat_provider(name, "model-x", api=SETTINGS)
    recipe = provider.recipe()
    assert recipe == ProviderRecipe(name, "model-x", SETTINGS)
    # A spawned worker receives it pickled.
    copy = rebuild(pickle.loads(pickle.dumps(recipe)))
    assert copy is not provider and type(copy) is type(provider)
    assert (copy.model_id, copy.api) == ("model-x", SETTINGS)
    assert copy.describe() == provider.describe()
    assert _sent(copy) == _sent(provider)


@pytest.mark.parametrize("name", API_NAMES)
def test_a_model_spec_builds_the_same_provider_as_the_chat_factory(name):
    spec = ModelSpec(
        name="m",
        display_name="M",
        group="closed",
        provider=name,
        checkpoint="model-x",
        api=SETTINGS,
    )
    provider = create_provider(spec)
    assert provider.recipe() == ProviderRecipe(name, "model-x", SETTINGS)


def test_a_baseline_spec_builds_the_behaviour_its_checkpoint_names():
    spec = ModelSpec(
        name="b",
        display_name="B",
        group="open-weight",
        provider="baseline",
        checkpoint="baseline-keyword",
    )
    provider = create_provider(spec)
    assert isinstance(provider, BaselineProvider) and provider.behaviour == "baseline-keyword"


def test_a_provider_without_settings_cannot_go_to_a_worker():
    class Bare(ApiProvider):
        provider_name = "bare"

        def __init__(self) -> None:  # an in-process double: no settings
            pass

        async def call_once(self, request):
            raise NotImplementedError

    with pytest.raises(HolisafeError, match="--processes 1"):
        Bare().recipe()


def test_an_unknown_provider_is_one_line_naming_the_known_ones():
    for attempt in (
        lambda: create_chat_provider("nope", "m", api=ApiSettings()),
        lambda: provider_entry("nope"),
        lambda: rebuild(ProviderRecipe("nope", "m", ApiSettings())),
    ):
        with pytest.raises(HolisafeError) as caught:
            attempt()
        message = str(caught.value)
        assert "\n" not in message and message.startswith("unknown provider 'nope'; known")
        assert all(name in message for name in PROVIDERS)


def test_a_local_engine_cannot_serve_chat_requests_by_api():
    with pytest.raises(HolisafeError) as caught:
        create_chat_provider("vllm", "m", api=ApiSettings())
    assert str(caught.value) == (
        "provider 'vllm' cannot serve chat requests by API "
        "(API providers: openai, anthropic, gemini)"
    )


def test_the_not_built_yet_scaffolding_is_gone():
    assert not hasattr(holisafe_bench.errors, "NotBuiltError")


def test_choosing_a_provider_imports_no_sdk():
    code = (
        "import sys\n"
        "from holisafe_bench.providers.factory import PROVIDERS, provider_class, resolve\n"
        "for name, entry in PROVIDERS.items():\n"
        "    if entry.kind == 'api':\n"
        "        provider_class(name); resolve(entry.batch_api)\n"
        "print([m for m in ('openai', 'anthropic', 'google.genai') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- SDK exceptions, classified by their types -----------------------------------------------

REQUEST = httpx2.Request("POST", "http://127.0.0.1:9/v1/x")


def _response(status: int, retry_after: str | None = None) -> httpx2.Response:
    headers = {"retry-after": retry_after} if retry_after else {}
    return httpx2.Response(status, headers=headers, request=REQUEST)


def _status_errors(name: str, status: int, retry_after: str | None = None) -> Exception:
    response = _response(status, retry_after)
    if name == "openai":
        return openai.APIStatusError(f"HTTP {status} key={KEY}", response=response, body=None)
    if name == "anthropic":
        return anthropic.APIStatusError(f"HTTP {status} key={KEY}", response=response, body=None)
    body = {"error": {"message": f"busy key={KEY}", "status": "UNAVAILABLE"}}
    return genai_errors.APIError(status, body, response=response)


@pytest.mark.parametrize("name", API_NAMES)
def test_an_sdk_status_error_keeps_its_status_and_retry_after(name):
    provider = create_chat_provider(name, "model-x", api=SETTINGS)
    throttled = provider.call_error(_status_errors(name, 429, "7"))
    assert (throttled.status, throttled.retry_after, throttled.retryable) == (429, 7.0, True)
    assert KEY not in str(throttled) and "[redacted]" in str(throttled)
    refused = provider.call_error(_status_errors(name, 400))
    assert (refused.status, refused.retryable) == (400, False)
    assert provider.call_error(_status_errors(name, 503)).retryable


@pytest.mark.parametrize(
    ("name", "sdk"), [("openai", openai), ("anthropic", anthropic)], ids=["openai", "anthropic"]
)
def test_an_sdk_connection_error_retries_and_its_timeout_is_a_timeout(name, sdk):
    provider = create_chat_provider(name, "model-x", api=SETTINGS)
    reset = provider.call_error(sdk.APIConnectionError(request=REQUEST))
    assert (reset.status, reset.retryable, reset.kind) == (None, True, "api_error")
    late = provider.call_error(sdk.APITimeoutError(request=REQUEST))
    assert (late.retryable, late.kind) == (True, "timeout")


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_an_exception_that_only_looks_like_the_sdks_is_not_classified_as_it(name):
    class APIConnectionError(Exception):  # the SDK's class name, not its type
        pass

    provider = create_chat_provider(name, "model-x", api=SETTINGS)
    assert provider.call_error(APIConnectionError("boom")) is None
    assert not unexpected_error(APIConnectionError("boom"), None).retryable


def test_a_transport_error_is_transient_wherever_it_sits_in_the_chain():
    gemini = create_chat_provider("gemini", "model-x", api=SETTINGS)
    reset = gemini.call_error(httpx2.ReadError("connection reset", request=REQUEST))
    assert (reset.retryable, reset.kind) == (True, "api_error")
    late = gemini.call_error(httpx2.ReadTimeout("slow", request=REQUEST))
    assert (late.retryable, late.kind) == (True, "timeout")
    try:
        try:
            raise httpx2.RemoteProtocolError("peer closed", request=REQUEST)
        except httpx2.RemoteProtocolError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as wrapped:
        assert unexpected_error(wrapped, None).retryable
    assert not unexpected_error(ValueError("a bug"), None).retryable
    assert not unexpected_error(httpx2.UnsupportedProtocol("ftp://"), None).retryable
