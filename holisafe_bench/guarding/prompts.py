"""The text a generative guard gets beside the image, per protocol: a template file from
guards/templates/ (or a path) with `{query}` replaced by the sample's query, or, without a
template, the query itself (`input`) or nothing (`image`), wrapped by the guard's own chat
template as its model card shows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from holisafe_bench.errors import HolisafeError
from holisafe_bench.guarding.spec import GuardSpec
from holisafe_bench.registry import registry_dir

PLACEHOLDER = "{query}"


@dataclass(frozen=True)
class GuardPrompt:
    template: str | None  # None: no template (see the module docstring)
    protocol: str
    source: str | None = None  # the template file

    def render(self, query: str) -> str:
        if self.template is None:
            return query if self.protocol == "input" else ""
        return self.template.replace(PLACEHOLDER, query)

    @property
    def sha256(self) -> str | None:
        if self.template is None:
            return None
        return hashlib.sha256(self.template.encode("utf-8")).hexdigest()


def guard_prompt(spec: GuardSpec, protocol: str) -> GuardPrompt:
    name = spec.prompts.get(protocol)  # type: ignore[call-overload]
    if name is None:
        return GuardPrompt(None, protocol)
    path = _template_path(name, spec)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HolisafeError(
            f"{spec.source_file or spec.name}: field 'prompts.{protocol}': cannot read "
            f"{path}: {exc.strerror or exc}"
        ) from exc
    if protocol == "input" and PLACEHOLDER not in text:
        raise HolisafeError(
            f"{path}: the input protocol's template must contain {PLACEHOLDER} (the query)"
        )
    return GuardPrompt(text, protocol, str(path))


def _template_path(name: str, spec: GuardSpec) -> Path:
    path = Path(name)
    if path.is_absolute():
        return path
    if spec.source_file and (Path(spec.source_file).parent / path).exists():
        return Path(spec.source_file).parent / path
    return registry_dir("guards") / "templates" / path
