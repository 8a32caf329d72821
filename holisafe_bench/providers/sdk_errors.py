"""Map the official SDKs' exceptions onto ProviderCallError, in one place."""

from __future__ import annotations

from holisafe_bench.providers.errors import ProviderCallError, parse_retry_after
from holisafe_bench.providers.keys import scrub


def from_openai_style(exc: Exception, secret: str | None) -> ProviderCallError:
    """openai and anthropic share their exception shapes."""
    name = type(exc).__name__
    message = scrub(f"{name}: {exc}", secret)
    if "Timeout" in name:
        return ProviderCallError(message, kind="timeout")
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    headers = dict(getattr(response, "headers", {}) or {}) if response is not None else {}
    if status is None:
        # Connection failures, and bodies the SDK could not parse: transient only if the
        # transport failed.
        retryable = "Connection" in name
        return ProviderCallError(message, retryable=retryable)
    return ProviderCallError(message, status=status, retry_after=parse_retry_after(headers))


def error_code(exc: Exception) -> str:
    """The vendor's error code in a 4xx body (e.g. content_policy_violation), if any."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("code") or inner.get("type") or "")
    return str(getattr(exc, "code", "") or "")
