"""Guard specs: one TOML file per guard in the top-level `guards/` registry (shipped in the
wheel like `model_adapters/` and `judges/`).

A guard names what runs it in one of two ways: `model = "<registered model or TOML path>"`
reuses that model's provider, checkpoint and engine settings (the Safe-VLMs' safety heads,
zero-shot guards), or the guard carries its own `provider`, `checkpoint` and `[engine]`
(Llama Guard, LLaVAGuard, ShieldGemma 2: models nobody `run`s as chat VLMs). Any registered
chat model that has no guard file can still be a guard: zero-shot, with a short
classification prompt (`zero_shot_guard`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from holisafe_bench.errors import HolisafeError
from holisafe_bench.guarding.verdict import PROTOCOLS, Protocol
from holisafe_bench.registry import (
    ApiSettings,
    EngineArgs,
    GenerationParams,
    ModelSpec,
    Provider,
    RegistryError,
    _load_all,
    _load_spec,
    _Strict,
    _unknown_name,
    get_model,
    load_models,
)

GuardKind = Literal["safety_head", "policy_probs", "generative", "zero_shot"]
# Kinds that read probabilities from a forward pass instead of generated text.
CLASSIFIER_KINDS = ("safety_head", "policy_probs")
ZERO_SHOT_PROMPTS = {"image": "zero_shot_image.txt", "input": "zero_shot_input.txt"}


class GuardSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    display_name: str
    kind: GuardKind
    description: str = ""
    # What runs it: a registered model (name or TOML path) ...
    model: str | None = None
    # ... or its own loading settings.
    provider: Provider | None = None
    checkpoint: str | None = None
    revision: str | None = None
    checkpoint_note: str | None = None
    engine: EngineArgs = Field(default_factory=EngineArgs)
    api: ApiSettings = Field(default_factory=ApiSettings)
    # How its output is read (guarding/parsers.py) and mapped (guards/taxonomies/<name>.toml).
    parser: str
    taxonomy: str | None = None
    # Protocol -> prompt template (a file in guards/templates/ or a path); `{query}` is
    # replaced by the sample's query. Without one the guard gets the query (input) or no
    # text (image) beside the image, in its own chat template.
    prompts: dict[Protocol, str] = Field(default_factory=dict)
    protocols: tuple[Protocol, ...] = PROTOCOLS  # type: ignore[assignment]
    max_tokens: int = Field(32, ge=1)
    logprobs: int | None = Field(None, ge=1, le=20)  # first-token alternatives to ask for
    classifier_options: dict[str, Any] = Field(default_factory=dict)
    in_paper: bool = False  # one of the guards of the paper's guard table
    paper_order: int | None = None
    source_file: str | None = None

    @field_validator("parser")
    @classmethod
    def _parser_known(cls, name: str) -> str:
        from holisafe_bench.guarding.parsers import get_guard_parser

        get_guard_parser(name)  # raises, naming the known parsers
        return name

    @field_validator("taxonomy")
    @classmethod
    def _taxonomy_readable(cls, name: str | None) -> str | None:
        from holisafe_bench.guarding.taxonomy_maps import load_taxonomy

        try:
            load_taxonomy(name)
        except HolisafeError as exc:
            raise ValueError(str(exc)) from exc
        return name

    @model_validator(mode="after")
    def _one_way_to_run(self) -> GuardSpec:
        own = self.provider is not None or self.checkpoint is not None
        if self.model is not None and own:
            raise ValueError("give either 'model' or 'provider' and 'checkpoint', not both")
        if self.model is None and (self.provider is None or self.checkpoint is None):
            raise ValueError("give 'model' (a registered model) or 'provider' and 'checkpoint'")
        if self.kind in CLASSIFIER_KINDS and self.provider not in (None, "transformers"):
            raise ValueError(f"a {self.kind} guard runs on transformers, not {self.provider}")
        return self

    @property
    def is_classifier(self) -> bool:
        return self.kind in CLASSIFIER_KINDS

    def model_spec(self) -> ModelSpec:
        """The model spec the provider layer builds this guard's engine or client from,
        with greedy decoding and the guard's token budget."""
        generation = GenerationParams(max_tokens=self.max_tokens, temperature=0.0)
        if self.model is not None:
            model = get_model(self._model_ref())
            update: dict[str, Any] = {"generation": generation}
            if self.api.base_url:  # --base-url: a served copy of the model
                update["api"] = model.api.model_copy(update={"base_url": self.api.base_url})
            return model.model_copy(update=update)
        return ModelSpec(
            name=self.name,
            display_name=self.display_name,
            group="open-weight",
            provider=self.provider,
            checkpoint=self.checkpoint,
            revision=self.revision,
            checkpoint_note=self.checkpoint_note,
            engine=self.engine,
            generation=generation,
            api=self.api,
        )

    def _model_ref(self) -> str:
        """A relative TOML path is read beside the guard's own file."""
        ref = self.model or ""
        if ref.endswith(".toml") and not Path(ref).is_absolute() and self.source_file:
            beside = Path(self.source_file).parent / ref
            if beside.exists():
                return str(beside)
        return ref


def zero_shot_guard(model: ModelSpec, *, name: str | None = None) -> GuardSpec:
    """Any chat model as a guard: asked to classify with a short prompt, answer parsed."""
    return GuardSpec(
        name=name or model.name,
        display_name=f"{model.display_name} (zero-shot)",
        kind="zero_shot",
        description="A chat model asked to classify the image or request with a short prompt.",
        model=model.source_file or model.name,
        parser="zero_shot",
        prompts=ZERO_SHOT_PROMPTS,
        max_tokens=16,
        logprobs=5,  # a score where the provider returns first-token alternatives
    )


def load_guards() -> dict[str, GuardSpec]:
    return _load_all("guards", GuardSpec)


def get_guard(name_or_path: str, *, zero_shot: bool = False) -> GuardSpec:
    """A registered guard, a guard TOML file, or a chat model (registered or TOML) as a
    zero-shot guard. `zero_shot` asks for the latter even where the model has a guard file
    of its own (its results then go under '<model>-zero-shot')."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not zero_shot and _is_guard_file(path):
            return _load_spec(path, GuardSpec)
        return zero_shot_guard(get_model(str(path)))
    guards = load_guards()
    if name_or_path in guards and not zero_shot:
        return guards[name_or_path]
    models = load_models()
    if name_or_path in models:
        model = models[name_or_path]
        renamed = f"{model.name}-zero-shot" if name_or_path in guards else None
        return zero_shot_guard(model, name=renamed)
    raise RegistryError(_unknown_name(name_or_path, sorted({*guards, *models}), "guard"))


def _is_guard_file(path: Path) -> bool:
    try:
        return "kind" in tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return True  # let the guard loader name the problem
