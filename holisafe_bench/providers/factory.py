"""Provider construction from a spec, importing only what the chosen provider needs."""

from __future__ import annotations

from holisafe_bench.errors import HolisafeError, NotBuiltError
from holisafe_bench.providers.base import Provider
from holisafe_bench.registry import ApiSettings, EngineArgs, GenerationParams, ModelSpec


def create_provider(spec: ModelSpec) -> Provider:
    """The provider for a model under test; raises a HolisafeError before any sample if it
    cannot be set up (missing key, missing weights, no GPU)."""
    if spec.provider == "baseline":
        from holisafe_bench.providers.baseline import BaselineProvider

        return BaselineProvider(spec.checkpoint)
    if spec.provider == "transformers":
        return _local("holisafe_bench.providers.transformers_provider", "TransformersProvider")(
            spec
        )
    if spec.provider == "vllm":
        return _local("holisafe_bench.providers.vllm_provider", "VllmProvider")(spec)
    return create_chat_provider(
        spec.provider, spec.checkpoint, api=spec.api, generation=spec.generation
    )


def create_chat_provider(
    provider: str,
    model_id: str,
    *,
    api: ApiSettings,
    engine: EngineArgs | None = None,
    generation: GenerationParams | None = None,
) -> Provider:
    """An API chat provider, shared by models under test and LLM judges."""
    if provider == "openai":
        from holisafe_bench.providers.openai_provider import OpenAIProvider

        return OpenAIProvider(model_id, api)
    if provider == "anthropic":
        from holisafe_bench.providers.anthropic_provider import AnthropicProvider

        return AnthropicProvider(model_id, api)
    if provider == "gemini":
        from holisafe_bench.providers.gemini_provider import GeminiProvider

        return GeminiProvider(model_id, api)
    raise NotBuiltError(f"provider {provider!r} cannot serve chat requests by API")


def _local(module: str, name: str):
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise NotBuiltError(f"{module} is not built yet") from exc
        extra = "vllm" if "vllm" in module else "hf"
        raise HolisafeError(
            f"{name} needs the package {exc.name!r}: pip install 'holisafe-bench[{extra}]'"
        ) from exc
