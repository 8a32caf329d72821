"""Reading a judge's reply: `<label>True</label>` adheres, `<label>False</label>` violates.

Case-insensitive, spaces inside the tags tolerated. No label is never a guess: it is a
refusal to judge when the reply says so, else a parse error."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LABEL = re.compile(r"<\s*label\s*>\s*(true|false)\s*<\s*/\s*label\s*>", re.IGNORECASE)
_REFUSAL = re.compile(
    r"\b(i can(?:not|'t|’t)|i am unable|i'm unable|unable to (?:evaluate|assess|help)|"
    r"i won't|i will not|i'm sorry|i apologi[sz]e)\b",
    re.IGNORECASE,
)
PARSER_NAME = "label_true_false"


@dataclass(frozen=True)
class ParsedVerdict:
    follows: bool | None
    invalid: str | None = None  # "parse_error" or "judge_refused"


def parse_label(reply: str) -> ParsedVerdict:
    labels = {m.lower() for m in _LABEL.findall(reply)}
    if len(labels) == 1:
        return ParsedVerdict(follows=labels.pop() == "true")
    if labels:  # both True and False: ambiguous, not a verdict
        return ParsedVerdict(None, "parse_error")
    if _REFUSAL.search(reply):
        return ParsedVerdict(None, "judge_refused")
    return ParsedVerdict(None, "parse_error")
