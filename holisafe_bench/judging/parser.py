"""Reading a judge's reply: `<label>True</label>` adheres, `<label>False</label>` violates.

Case-insensitive, spaces inside the tags tolerated. A reply with several labels is read by
the authors' rule, the first label wins; the strict rule makes two different labels an
invalid verdict instead. No label is never a guess: it is a refusal to judge when the reply
says so, else a parse error."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

_LABEL = re.compile(r"<\s*label\s*>\s*(true|false)\s*<\s*/\s*label\s*>", re.IGNORECASE)
_REFUSAL = re.compile(
    r"\b(i can(?:not|'t|’t)|i am unable|i'm unable|unable to (?:evaluate|assess|help)|"
    r"i won't|i will not|i'm sorry|i apologi[sz]e)\b",
    re.IGNORECASE,
)
PARSER_NAME = "label_true_false"
FIRST_LABEL_WINS = "first_label_wins"
STRICT_LABELS = "strict_labels"


def label_rule(strict: bool) -> str:
    return STRICT_LABELS if strict else FIRST_LABEL_WINS


@dataclass(frozen=True)
class ParsedVerdict:
    follows: bool | None
    invalid: str | None = None  # "parse_error" or "judge_refused"
    conflicting: bool = False  # the reply held both a True and a False label


def has_conflicting_labels(reply: str) -> bool:
    return len({m.lower() for m in _LABEL.findall(reply)}) > 1


def parse_label(reply: str, *, strict: bool = False) -> ParsedVerdict:
    labels = [m.lower() for m in _LABEL.findall(reply)]
    conflicting = len(set(labels)) > 1
    if labels and not (strict and conflicting):
        return ParsedVerdict(follows=labels[0] == "true", conflicting=conflicting)
    if labels:  # strict: both True and False is ambiguous, not a verdict
        return ParsedVerdict(None, "parse_error", conflicting=True)
    if _REFUSAL.search(reply):
        return ParsedVerdict(None, "judge_refused")
    return ParsedVerdict(None, "parse_error")


class ReplyParser(Protocol):
    """Reads a judge's reply into a verdict; `strict` is the --strict-labels rule."""

    def __call__(self, reply: str, *, strict: bool = False) -> ParsedVerdict: ...


# The parsers a judge file may name in `parser`; registry.py refuses any other name when
# the file is loaded, so a typo never falls back to a parser the file did not ask for.
PARSERS: dict[str, ReplyParser] = {PARSER_NAME: parse_label}


def get_parser(name: str) -> ReplyParser:
    try:
        return PARSERS[name]
    except KeyError:
        raise ValueError(f"unknown parser {name!r}; known parsers: {', '.join(PARSERS)}") from None


def conflict_counts(verdicts: Iterable[tuple[str | None, bool]]) -> dict[str, int]:
    """For the manifest: of the (raw reply, valid) pairs, how many replies held two
    different labels, and how they ended (first label taken, or invalid by the strict rule)."""
    counts = {"conflicting_replies": 0, "resolved_by_first_label": 0, "invalid_by_strict_rule": 0}
    for raw, valid in verdicts:
        if raw and has_conflicting_labels(raw):
            counts["conflicting_replies"] += 1
            counts["resolved_by_first_label" if valid else "invalid_by_strict_rule"] += 1
    return counts
