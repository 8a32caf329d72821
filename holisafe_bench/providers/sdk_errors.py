"""Map the official SDKs' exceptions onto ProviderCallError, in one place: HTTP statuses per
SDK shape, and one transport-failure classification shared by every provider."""

from __future__ import annotations

import sys
from collections.abc import Iterator

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.errors import ProviderCallError, parse_retry_after
from holisafe_bench.providers.keys import scrub

# Transport failures worth another attempt, by module: the connection failed, was reset or
# closed mid-reply, or timed out. Looked up only in modules already imported (an SDK's own
# exception can only come from a loaded SDK), so classifying never imports one. Not listed,
# hence final: UnsupportedProtocol, LocalProtocolError, ProxyError (the set-up is wrong).
_TRANSIENT = {
    "httpx": ("NetworkError", "TimeoutException", "RemoteProtocolError"),
    "httpx2": ("NetworkError", "TimeoutException", "RemoteProtocolError"),
    "aiohttp": ("ClientConnectionError", "ClientPayloadError"),
    "openai": ("APIConnectionError",),
    "anthropic": ("APIConnectionError",),
}
_TIMEOUTS = {
    "httpx": ("TimeoutException",),
    "httpx2": ("TimeoutException",),
    "openai": ("APITimeoutError",),
    "anthropic": ("APITimeoutError",),
}


def _classes(table: dict[str, tuple[str, ...]]) -> tuple[type[BaseException], ...]:
    found = []
    for module_name, names in table.items():
        module = sys.modules.get(module_name)
        found += [getattr(module, name) for name in names if hasattr(module, name)]
    return tuple(found)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it (SDKs wrap the transport's exception)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_timeout(exc: BaseException) -> bool:
    timeouts = (TimeoutError, *_classes(_TIMEOUTS))  # TimeoutError covers asyncio's, aiohttp's
    return any(isinstance(link, timeouts) for link in _chain(exc))


def is_transient_transport(exc: BaseException) -> bool:
    """A connection that failed, was reset or closed mid-reply, or timed out."""
    if isinstance(exc, HolisafeError):
        return False
    transient = (ConnectionError, EOFError, *_classes(_TRANSIENT))  # EOFError: IncompleteRead
    return is_timeout(exc) or any(isinstance(link, transient) for link in _chain(exc))


def describe(exc: BaseException) -> str:
    """`Class: message`, never empty: a class without text (httpx's ReadError) takes the
    first cause that has one, e.g. `ReadError: ConnectionResetError: [Errno 104] ...`."""
    name = type(exc).__name__
    if text := str(exc).strip():
        return f"{name}: {text}"
    cause = next((link for link in _chain(exc) if str(link).strip()), None)
    return f"{name}: {describe(cause)}" if cause is not None else f"{name} (no message)"


def transport_error(exc: BaseException, secret: str | None) -> ProviderCallError | None:
    """A retryable ProviderCallError for a transient transport failure; None otherwise."""
    if not is_transient_transport(exc):
        return None
    return ProviderCallError(
        scrub(describe(exc), secret),
        kind="timeout" if is_timeout(exc) else "api_error",
        retryable=True,
    )


def unexpected_error(exc: BaseException, secret: str | None) -> ProviderCallError:
    """Any other exception: transient if the transport failed, else final."""
    return transport_error(exc, secret) or ProviderCallError(
        scrub(describe(exc), secret), retryable=False
    )


def from_openai_style(exc: Exception, secret: str | None) -> ProviderCallError:
    """openai and anthropic share their exception shapes."""
    status = getattr(exc, "status_code", None)
    if status is None:
        # Transport failures retry; a body the SDK could not parse would fail again.
        return unexpected_error(exc, secret)
    response = getattr(exc, "response", None)
    headers = dict(getattr(response, "headers", {}) or {}) if response is not None else {}
    return ProviderCallError(
        scrub(describe(exc), secret), status=status, retry_after=parse_retry_after(headers)
    )


def error_code(exc: Exception) -> str:
    """The vendor's error code in a 4xx body (e.g. content_policy_violation), if any."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("code") or inner.get("type") or "")
    return str(getattr(exc, "code", "") or "")
