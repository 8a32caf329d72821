"""Declarative registries: one TOML file per model (model_adapters/) and per judge (judges/).

The folders sit at the top of the source tree and are packed into the wheel under
`holisafe_bench/_registry/` (see pyproject.toml), so they are never importable as packages.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from holisafe_bench.errors import HolisafeError
from holisafe_bench.judging.parser import get_parser

_PACKAGE_DIR = Path(__file__).resolve().parent


class RegistryError(HolisafeError, ValueError):
    """A registry file is missing, unreadable or invalid; the message names file and field.
    A HolisafeError, so the CLI prints it as one line."""


def registry_dir(name: str) -> Path:
    """Where the built-in `model_adapters` or `judges` folder is: inside the installed
    package, or at the top of a source checkout."""
    for candidate in (_PACKAGE_DIR / "_registry" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise RegistryError(f"built-in registry folder {name!r} not found (broken install?)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationParams(_Strict):
    max_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    system_prompt: str | None = None


class EngineArgs(_Strict):
    """Loader/engine settings; vLLM names where they exist."""

    max_model_len: int | None = Field(None, ge=1)
    limit_mm_per_prompt: dict[str, int] | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    trust_remote_code: bool = False
    dtype: str = "auto"
    gpu_memory_utilization: float | None = Field(None, gt=0.0, le=1.0)
    min_pixels: int | None = Field(None, ge=1)
    max_pixels: int | None = Field(None, ge=1)
    mm_processor_kwargs: dict[str, Any] | None = None
    device_map: str | None = None
    chat_template: str | None = None  # path to a Jinja template overriding the checkpoint's
    batch_size: int | None = Field(None, ge=1)
    # transformers: how the authors load their Safe-VLMs. The auto class their example uses
    # (None: image-text-to-text, then causal LM), a checkpoint whose processor and chat
    # template to use instead of the model's own, and a LLaVA conversation template (the
    # prompt is built by it and the image spliced in by the model's remote code).
    auto_class: (
        Literal["AutoModelForImageTextToText", "AutoModelForCausalLM", "AutoModel"] | None
    ) = None
    processor_checkpoint: str | None = None
    conversation_template: Literal["llava_v1"] | None = None
    # transformers: drop a batch's rows from generation as each ends (EOS) instead of
    # computing them as padding until the last one ends. None: on the architectures known to
    # allow it (providers/hf_decoding.CUT_MODEL_TYPES); true / false: always / never.
    cut_finished: bool | None = None


class ApiSettings(_Strict):
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = Field(16, ge=1)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    timeout_s: float = Field(120.0, gt=0)


Provider = Literal["vllm", "openai", "anthropic", "gemini", "transformers", "baseline"]
ModelGroup = Literal["open-weight", "closed", "safety-tuned"]
# The checkpoints a `baseline` model may name; declared here, below the providers, so that
# validating a spec never imports the provider layer (providers/baseline.py carries them out).
BASELINE_BEHAVIOURS = ("baseline-refuse-all", "baseline-comply-all", "baseline-keyword")
# OpenAI models that accept only the default sampling (the reasoning models): the openai
# provider sends them no temperature, and a spec asking them for a top_p is refused.
OPENAI_FIXED_SAMPLING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def _top_p_refusal(provider: str, checkpoint: str) -> str | None:
    """Why a model cannot honour generation.top_p (None: it can). Every other provider
    sends it with each request (providers/*_provider.py)."""
    if provider == "baseline":
        return "a baseline does not sample, so top_p would be recorded but never used"
    if provider == "openai" and checkpoint.startswith(OPENAI_FIXED_SAMPLING_PREFIXES):
        return f"OpenAI's {checkpoint} takes only the default sampling, no top_p"
    return None


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    display_name: str
    aliases: tuple[str, ...] = ()  # names used for this model in published tables
    group: ModelGroup
    provider: Provider
    checkpoint: str
    revision: str | None = None
    prediction_stem: str | None = None  # official prediction file: <stem>_holisafe_bench.json
    checkpoint_note: str | None = None  # why this checkpoint was chosen
    in_paper: bool = False  # one of the 21 models of the published tables
    paper_order: int | None = None  # row position in the published tables
    engine: EngineArgs = Field(default_factory=EngineArgs)
    generation: GenerationParams = Field(default_factory=GenerationParams)
    api: ApiSettings = Field(default_factory=ApiSettings)
    source_file: str | None = None

    @model_validator(mode="after")
    def _baseline_behaviour_known(self) -> ModelSpec:
        # `run` would refuse it later; `models --check` must say so now.
        if self.provider == "baseline" and self.checkpoint not in BASELINE_BEHAVIOURS:
            raise ValueError(
                f"checkpoint {self.checkpoint!r} is not a baseline; "
                f"a baseline's checkpoint is one of {', '.join(BASELINE_BEHAVIOURS)}"
            )
        return self

    @model_validator(mode="after")
    def _top_p_honoured(self) -> ModelSpec:
        # A top_p the provider drops would be recorded in the manifest but never sent.
        refusal = self.generation.top_p is not None and _top_p_refusal(
            self.provider, self.checkpoint
        )
        if refusal:
            raise ValueError(f"generation.top_p: {refusal}; remove it")
        return self


class Prices(_Strict):
    input_per_million: float = Field(0.0, ge=0)
    output_per_million: float = Field(0.0, ge=0)
    batch_discount: float = Field(0.5, ge=0, le=1)  # batch price = discount x list price


class JudgeSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    display_name: str
    kind: Literal["string_match", "llm"]
    description: str = ""
    # string_match
    start_phrases: tuple[str, ...] = ()
    contain_phrases: tuple[str, ...] = ()
    # llm
    provider: Provider | None = None
    model: str | None = None
    prompt_template: str | None = None  # file name relative to judges/templates/ or a path
    parser: str = "label_true_false"  # a name in judging/parser.py PARSERS
    # No default endpoint: the judge is called at --base-url (an OpenAI-compatible server).
    requires_base_url: bool = False
    # Its provider has a vendor batch API that --batch can use.
    batch_api: bool = True
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(100, ge=1)
    api: ApiSettings = Field(default_factory=ApiSettings)
    prices: Prices = Field(default_factory=Prices)
    source_file: str | None = None

    @field_validator("parser")
    @classmethod
    def _parser_known(cls, name: str) -> str:
        get_parser(name)  # raises, naming the known parsers
        return name


def _format_validation_error(path: Path, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(file)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{path}: field '{field}': {msg}")
    return "; ".join(parts)


def _load_spec(path: Path, spec_type: type[BaseModel]) -> Any:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RegistryError(f"{path}: no such file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from exc
    data.setdefault("source_file", str(path))
    try:
        return spec_type.model_validate(data)
    except ValidationError as exc:
        raise RegistryError(_format_validation_error(path, exc)) from exc


def _load_all(folder: str, spec_type: type[BaseModel]) -> dict[str, Any]:
    specs: dict[str, Any] = {}
    for path in sorted(registry_dir(folder).glob("*.toml")):
        spec = _load_spec(path, spec_type)
        if spec.name in specs:
            raise RegistryError(f"{path}: name {spec.name!r} already declared")
        specs[spec.name] = spec
    return specs


def load_models() -> dict[str, ModelSpec]:
    return _load_all("model_adapters", ModelSpec)


def load_judges() -> dict[str, JudgeSpec]:
    return _load_all("judges", JudgeSpec)


def _resolve(name_or_path: str, folder: str, spec_type: type[BaseModel], kind: str) -> Any:
    path = Path(name_or_path)
    # A file only: a folder named like a model (a results folder's own) is not a spec.
    if path.suffix == ".toml" or path.is_file():
        return _load_spec(path, spec_type)
    specs = _load_all(folder, spec_type)
    if name_or_path not in specs:
        raise RegistryError(_unknown_name(name_or_path, sorted(specs), kind))
    return specs[name_or_path]


def _unknown_name(name: str, known: list[str], kind: str) -> str:
    import difflib

    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"unknown {kind} {name!r}; {hint}`holisafe-bench {kind}s` lists the registered "
        f"ones, or pass the path of your own .toml"
    )


def get_model(name_or_path: str) -> ModelSpec:
    return _resolve(name_or_path, "model_adapters", ModelSpec, "model")


def get_judge(name_or_path: str) -> JudgeSpec:
    return _resolve(name_or_path, "judges", JudgeSpec, "judge")
