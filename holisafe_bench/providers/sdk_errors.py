"""Map the official SDKs' exceptions onto ProviderCallError, in one place: HTTP statuses per
SDK shape, and one transport-failure classification shared by every provider."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.errors import ProviderCallError, parse_retry_after
from holisafe_bench.providers.keys import scrub

# The exception types an HTTP stack or SDK raises, as (transient, timeouts). Each is read
# only from a module already imported (an SDK's exception can only come from a loaded SDK),
# so classifying never imports one. Transient: the connection failed, was reset or closed
# mid-reply, or timed out. Not listed, hence final: httpx's UnsupportedProtocol,
# LocalProtocolError, ProxyError (the set-up is wrong).
ExceptionTypes = tuple[type[BaseException], ...]


def _httpx_types(httpx: ModuleType) -> tuple[ExceptionTypes, ExceptionTypes]:
    transient = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
    return transient, (httpx.TimeoutException,)


def _aiohttp_types(aiohttp: ModuleType) -> tuple[ExceptionTypes, ExceptionTypes]:
    return (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError), ()


def _openai_style_types(sdk: ModuleType) -> tuple[ExceptionTypes, ExceptionTypes]:
    """openai and anthropic: APITimeoutError is a kind of APIConnectionError."""
    return (sdk.APIConnectionError,), (sdk.APITimeoutError,)


_TRANSPORT_TYPES: dict[str, Callable[[ModuleType], tuple[ExceptionTypes, ExceptionTypes]]] = {
    "httpx": _httpx_types,
    "httpx2": _httpx_types,  # the HTTP library of the SDK versions pinned here
    "aiohttp": _aiohttp_types,
    "openai": _openai_style_types,
    "anthropic": _openai_style_types,
}


def _loaded_types() -> tuple[ExceptionTypes, ExceptionTypes]:
    """(transient, timeouts) of the standard library and of every loaded module above;
    TimeoutError covers asyncio's and aiohttp's timeouts, EOFError http's IncompleteRead."""
    transient: list[type[BaseException]] = [ConnectionError, EOFError]
    timeouts: list[type[BaseException]] = [TimeoutError]
    for module_name, types_of in _TRANSPORT_TYPES.items():
        module = sys.modules.get(module_name)
        if module is not None:
            more_transient, more_timeouts = types_of(module)
            transient += more_transient
            timeouts += more_timeouts
    return tuple(transient), tuple(timeouts)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it (SDKs wrap the transport's exception)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_timeout(exc: BaseException) -> bool:
    _, timeouts = _loaded_types()
    return any(isinstance(link, timeouts) for link in _chain(exc))


def is_transient_transport(exc: BaseException) -> bool:
    """A connection that failed, was reset or closed mid-reply, or timed out."""
    if isinstance(exc, HolisafeError):
        return False
    transient, timeouts = _loaded_types()
    return any(isinstance(link, transient + timeouts) for link in _chain(exc))


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


def status_error(
    exc: Exception, status: int | None, headers: Mapping[str, str] | None, secret: str | None
) -> ProviderCallError:
    """An HTTP error status from the vendor (the SDK's own status exception): retryable by
    ProviderCallError's rule, with the server's Retry-After."""
    return ProviderCallError(
        scrub(describe(exc), secret),
        status=status,
        retry_after=parse_retry_after(dict(headers or {})),
    )


def error_code(exc: Exception) -> str:
    """The vendor's error code in a 4xx body (e.g. content_policy_violation), if any."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("code") or inner.get("type") or "")
    return str(getattr(exc, "code", "") or "")
