"""The one exception a provider raises for a failed attempt; the shared layer decides
whether to retry it and turns the last one into an `error` result."""

from __future__ import annotations

from typing import Literal

RETRYABLE_STATUS = frozenset({408, 409, 429})


class ProviderCallError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        kind: Literal["api_error", "timeout"] = "api_error",
    ) -> None:
        # A message is never empty: "ReadError: " told the user nothing.
        super().__init__(message.strip() or "the provider call failed without a message")
        self.status = status
        self.retry_after = retry_after
        self.kind = kind
        if retryable is None:
            # 5xx, 408/409/429, timeouts and connection failures (no status) are transient;
            # any other 4xx is the request's fault and would fail again.
            retryable = status is None or status >= 500 or status in RETRYABLE_STATUS
        self.retryable = retryable


def parse_retry_after(headers: dict[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import datetime as dt
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
