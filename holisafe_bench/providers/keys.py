"""API keys: read from the environment, required before any request, never echoed."""

from __future__ import annotations

import os

from holisafe_bench.errors import HolisafeError


def api_key(env_names: tuple[str, ...], *, what: str, required: bool = True) -> str | None:
    for name in env_names:
        if name and os.environ.get(name):
            return os.environ[name]
    if required:
        names = list(dict.fromkeys(n for n in env_names if n))  # each variable once
        raise HolisafeError(f"{what} needs an API key: set {' or '.join(names)}")
    return None


def scrub(text: str, secret: str | None) -> str:
    """Remove a key from text that may reach a record, a log or the terminal."""
    if secret and len(secret) >= 8:
        text = text.replace(secret, "[redacted]")
    return text
