"""API keys: read from the environment, required before any request, never echoed.

Every key read is remembered for the life of the process, so that text about to be stored
or logged can be scrubbed of any of them: an error message, a log line (httpx logs the
headers it sends at debug level), even a model's or judge's reply that echoes a header."""

from __future__ import annotations

import logging
import os

from holisafe_bench.errors import HolisafeError

_IN_USE: set[str] = set()


def api_key(env_names: tuple[str, ...], *, what: str, required: bool = True) -> str | None:
    for name in env_names:
        if name and os.environ.get(name):
            key = _checked(name, os.environ[name])
            _IN_USE.add(key)
            return key
    if required:
        names = list(dict.fromkeys(n for n in env_names if n))  # each variable once
        raise HolisafeError(f"{what} needs an API key: set {' or '.join(names)}")
    return None


def _checked(name: str, value: str) -> str:
    """The key without surrounding whitespace (a key file saved with CRLF ends in \\r,
    which no HTTP header may carry); whitespace or a control character inside is an error
    that names the variable, never the key."""
    key = value.strip()
    if not key or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in key):
        raise HolisafeError(
            f"{name} holds a space or control character inside the key: set it to the key alone"
        )
    return key


def scrub(text: str, secret: str | None) -> str:
    """Remove a key from text that may reach a record, a log or the terminal."""
    if secret and len(secret) >= 8:
        text = text.replace(secret, "[redacted]")
    return text


def scrub_known(text: str) -> str:
    """`text` without any key this process has read."""
    for secret in _IN_USE:
        text = scrub(text, secret)
    return text


class SecretFilter(logging.Filter):
    """Scrubs every key this process has read from a log record before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _IN_USE:
            message = record.getMessage()
            clean = scrub_known(message)
            if clean != message:
                record.msg, record.args = clean, ()
        return True
