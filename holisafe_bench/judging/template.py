"""Judge prompt templates: a text with the placeholders {query}, {safety_label}, {response}."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from holisafe_bench.errors import HolisafeError
from holisafe_bench.provenance import sha256_text
from holisafe_bench.registry import registry_dir

PLACEHOLDERS = ("{query}", "{safety_label}", "{response}")


@dataclass(frozen=True)
class PromptTemplate:
    text: str
    source: str

    @property
    def sha256(self) -> str:
        return sha256_text(self.text)

    def render(self, *, query: str, safety_label: str, response: str) -> str:
        # Plain replacement, not str.format: queries and responses contain braces.
        out = self.text.replace("{safety_label}", safety_label).replace("{query}", query)
        return out.replace("{response}", response)


def load_template(name_or_path: str | Path) -> PromptTemplate:
    """A built-in template (file name under judges/templates/) or any file path."""
    path = Path(name_or_path)
    if not path.exists():
        path = registry_dir("judges") / "templates" / str(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HolisafeError(f"judge prompt template {name_or_path}: cannot read ({exc})") from exc
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise HolisafeError(
            f"{path}: the template lacks {', '.join(missing)} (it needs all of "
            f"{', '.join(PLACEHOLDERS)})"
        )
    return PromptTemplate(text=text, source=str(path))
