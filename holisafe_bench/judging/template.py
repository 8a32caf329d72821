"""Judge prompt templates: a text with a placeholder for each of the three inputs (the
user's query, the safety label of the input, the model's response).

Each input has several accepted spellings (this project's own, the issue's and those of the
authors' eval scripts), so the authors' prompt can be used as released."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from holisafe_bench.errors import HolisafeError
from holisafe_bench.provenance import sha256_text
from holisafe_bench.registry import registry_dir

#: input -> the placeholder names that stand for it (the first is this project's own).
INPUT_SPELLINGS = {
    "query": ("query", "question", "user_query"),
    "safety_label": ("safety_label",),
    "response": ("response", "model_response"),
}
_INPUT_OF = {name: key for key, names in INPUT_SPELLINGS.items() for name in names}
PLACEHOLDERS = tuple(f"{{{names[0]}}}" for names in INPUT_SPELLINGS.values())

# A plain template replaces `{name}` only (`{{name}}` is left as written). A str.format
# template (the authors' scripts call .format on their prompt) also turns `{{` and `}}` into
# single braces, as str.format would.
_PLAIN = re.compile(r"(?<!\{)\{([A-Za-z_]\w*)\}(?!\})")
_FORMAT = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*)\}")


def spelled(key: str) -> str:
    """The accepted spellings of one input, for messages: `{response}` or `{model_response}`."""
    return " or ".join(f"{{{name}}}" for name in INPUT_SPELLINGS[key])


def scan_placeholders(text: str, *, format_style: bool) -> tuple[set[str], list[str]]:
    """The inputs a template text covers, and its unknown placeholders in order of appearance."""
    pattern = _FORMAT if format_style else _PLAIN
    names = [m.group(1) for m in pattern.finditer(text) if m.group(1)]
    inputs = {_INPUT_OF[n] for n in names if n in _INPUT_OF}
    unknown = list(dict.fromkeys(f"{{{n}}}" for n in names if n not in _INPUT_OF))
    return inputs, unknown


@dataclass(frozen=True)
class PromptTemplate:
    text: str
    source: str
    format_style: bool = False
    # Where the text came from beyond `source` (e.g. a script's sha256), for the manifest.
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def sha256(self) -> str:
        return sha256_text(self.text)

    @property
    def style(self) -> str:
        return "str.format" if self.format_style else "plain"

    def render(self, *, query: str, safety_label: str, response: str) -> str:
        # One pass over the template only, not str.format or chained replaces: queries and
        # responses contain braces, and a query holding "{response}" must stay as typed.
        values = {"query": query, "safety_label": safety_label, "response": response}

        def value(match: re.Match) -> str:
            name = match.group(1)
            if name is None:  # a doubled brace of a str.format template
                return match.group(0)[0]
            return values[_INPUT_OF[name]] if name in _INPUT_OF else match.group(0)

        return (_FORMAT if self.format_style else _PLAIN).sub(value, self.text)


def checked_template(
    text: str, source: str, *, format_style: bool = False, provenance: dict | None = None
) -> PromptTemplate:
    """A template whose placeholders are all known and cover the three inputs; else a
    one-line error naming `source` and the placeholder."""
    inputs, unknown = scan_placeholders(text, format_style=format_style)
    if unknown:
        accepted = ", ".join(spelled(key) for key in INPUT_SPELLINGS)
        raise HolisafeError(
            f"{source}: unknown placeholder {unknown[0]} in the judge prompt (accepted: "
            f"{accepted}); rename it or write its text out"
        )
    missing = [key for key in INPUT_SPELLINGS if key not in inputs]
    if missing:
        raise HolisafeError(
            f"{source}: the judge prompt has no placeholder for the "
            + ", ".join(f"{key.replace('_', ' ')} ({spelled(key)})" for key in missing)
            + "; add it so the judge sees that input"
        )
    return PromptTemplate(text, source, format_style, dict(provenance or {}))


def load_template(name_or_path: str | Path, *, user_file: bool = False) -> PromptTemplate:
    """A judge's declared template: a file name under judges/templates/ first (a file of
    that name in the working directory must not replace it), else a path. `user_file`: the
    path a user passed (--prompt-file), read as given."""
    path = Path(name_or_path)
    builtin = registry_dir("judges") / "templates" / str(name_or_path)
    if not user_file and builtin.is_file():
        path = builtin
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HolisafeError(f"judge prompt template {name_or_path}: cannot read ({exc})") from exc
    return checked_template(text, str(path))
