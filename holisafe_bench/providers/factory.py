"""The one table of providers: a provider name -> its class, its vendor batch API and what a
worker process needs to rebuild it. Classes are dotted paths resolved on use, so choosing a
provider imports only that provider's modules (and `holisafe-bench --help` none)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.base import (
    ApiProvider,
    ClassifierProvider,
    Provider,
    ProviderRecipe,
)
from holisafe_bench.providers.batch_api import BatchJobApi
from holisafe_bench.registry import ApiSettings, ModelSpec

_PACKAGE = "holisafe_bench.providers"


@dataclass(frozen=True)
class ProviderEntry:
    name: str
    provider: str  # "module:Class", a Provider subclass
    kind: Literal["api", "local"]  # api: an ApiProvider; local: an in-process BatchProvider
    batch_api: str | None = None  # "module:Class", a BatchJobApi subclass, if the vendor has one
    # The worker recipe beyond ProviderRecipe's settings: the SDK a parent imports once
    # before forking its workers, so that none of them pays for it while its calls wait.
    sdk: str | None = None
    extra: str | None = None  # the pip extra that brings the packages a local engine needs


def _api(name: str, cls: str, batch_cls: str, sdk: str) -> ProviderEntry:
    return ProviderEntry(
        name,
        f"{_PACKAGE}.{name}_provider:{cls}",
        "api",
        batch_api=f"{_PACKAGE}.{name}_batch:{batch_cls}",
        sdk=sdk,
    )


PROVIDERS: dict[str, ProviderEntry] = {
    entry.name: entry
    for entry in (
        _api("openai", "OpenAIProvider", "OpenAIBatchApi", "openai"),
        _api("anthropic", "AnthropicProvider", "AnthropicBatchApi", "anthropic"),
        _api("gemini", "GeminiProvider", "GeminiBatchApi", "google.genai"),
        ProviderEntry("vllm", f"{_PACKAGE}.vllm_provider:VllmProvider", "local", extra="vllm"),
        ProviderEntry(
            "transformers",
            f"{_PACKAGE}.transformers_provider:TransformersProvider",
            "local",
            extra="hf",
        ),
        ProviderEntry("baseline", f"{_PACKAGE}.baseline:BaselineProvider", "local"),
    )
}


def provider_entry(name: str) -> ProviderEntry:
    entry = PROVIDERS.get(name)
    if entry is None:
        raise HolisafeError(f"unknown provider {name!r}; known providers: {', '.join(PROVIDERS)}")
    return entry


def resolve(path: str, extra: str | None = None) -> Any:
    """The object at "module:name"; a missing third-party package is one line naming the
    pip extra that brings it (a missing module of ours is a broken install: it raises)."""
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if extra is None or (exc.name or "").startswith("holisafe_bench"):
            raise
        raise HolisafeError(
            f"{name} needs the package {exc.name!r}: pip install 'holisafe-bench[{extra}]'"
        ) from exc


def provider_class(name: str) -> type[Provider]:
    entry = provider_entry(name)
    return resolve(entry.provider, entry.extra)


def create_provider(spec: ModelSpec) -> Provider:
    """The provider for a model under test; raises a HolisafeError before any sample if it
    cannot be set up (missing key, missing weights, no GPU)."""
    return provider_class(spec.provider).from_spec(spec)


# Guards read by a forward pass (guarding/spec.py CLASSIFIER_KINDS): kind -> "module:Class",
# a ClassifierProvider built as Class(model_spec, **classifier_options).
CLASSIFIERS: dict[str, str] = {
    "safety_head": f"{_PACKAGE}.safety_head:SafetyHeadClassifier",
    "policy_probs": f"{_PACKAGE}.shieldgemma:ShieldGemmaClassifier",
}


def create_classifier(kind: str, spec: ModelSpec, options: dict[str, Any]) -> ClassifierProvider:
    """The classifier engine of a guard of `kind`, loaded from `spec` (transformers)."""
    if kind not in CLASSIFIERS:
        raise HolisafeError(
            f"no classifier for guard kind {kind!r}; known: {', '.join(CLASSIFIERS)}"
        )
    return resolve(CLASSIFIERS[kind], "hf")(spec, **options)


def create_chat_provider(provider: str, model_id: str, *, api: ApiSettings) -> ApiProvider:
    """An API chat provider, shared by models under test and LLM judges."""
    if provider_entry(provider).kind != "api":
        api_names = ", ".join(name for name, e in PROVIDERS.items() if e.kind == "api")
        raise HolisafeError(
            f"provider {provider!r} cannot serve chat requests by API (API providers: {api_names})"
        )
    cls = provider_class(provider)
    assert issubclass(cls, ApiProvider), f"{cls.__name__} is listed as an API provider"
    return cls(model_id, api)


def rebuild(recipe: ProviderRecipe) -> ApiProvider:
    """A worker process's own copy of the provider that `recipe` was taken from."""
    return create_chat_provider(recipe.provider, recipe.model_id, api=recipe.api)


def create_batch_api(provider: Provider) -> BatchJobApi:
    """The batch API of a live provider (same model, key and base URL)."""
    entry = provider_entry(provider.provider_name)
    if entry.batch_api is None:
        raise HolisafeError(f"provider {entry.name!r} has no batch API; run without --batch")
    return resolve(entry.batch_api)(provider)


def prepare_workers(name: str) -> None:
    """Import a provider's module and SDK here, before forking, for workers to inherit."""
    entry = provider_entry(name)
    provider_class(name)
    if entry.sdk is not None:
        importlib.import_module(entry.sdk)
