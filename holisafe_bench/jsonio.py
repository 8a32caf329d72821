"""JSON decoding: orjson for speed, the standard library for the few documents only it
accepts (NaN literals, lone surrogate escapes), so nothing the stdlib reads is refused."""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(raw: bytes | str) -> Any:
    """One JSON document; ValueError when neither parser accepts it."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
