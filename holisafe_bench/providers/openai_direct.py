"""The OpenAI SDK's own HTTP client, headers and error types, without its per-call request
machinery.

Every `client.post` rebuilds the same URL (parsing and joining it), the same headers (auth,
platform, retry count, timeout) and an options model, then walks a retry loop the harness
keeps switched off: about 1 ms of CPU a call, a third of a call's whole cost with a 300 KB
image. The URL, headers and timeout never change between calls of one client, so they are
built once, by the SDK itself (`_build_request`), and each call sends a fresh request with
the body through the SDK's httpx client, mapping failures to the SDK's exception types
exactly as its `request` does. A client whose auth is more than a static key (workload
identity, provider runtimes), or an SDK without these internals, uses the public `post`."""

from __future__ import annotations

from typing import Any

PATH = "/chat/completions"


class DirectPost:
    def __init__(self, client: Any, template: Any) -> None:
        import httpx2
        from openai._httpx2 import request_exceptions, timeout_exceptions

        self._client = client
        self._http = client._client
        self._url = template.url
        headers = template.headers.copy()
        for stale in ("content-length", "transfer-encoding"):  # set per body by httpx
            if stale in headers:
                del headers[stale]
        self._headers = headers
        self._extensions = template.extensions
        self._request_type = httpx2.Request
        self._timeouts = timeout_exceptions()
        self._failures = request_exceptions()

    async def post(self, body: bytes) -> bytes:
        import openai

        request = self._request_type(
            "POST", self._url, headers=self._headers, content=body, extensions=self._extensions
        )
        try:
            response = await self._http.send(request)
        except self._timeouts as exc:
            raise openai.APITimeoutError(request=request) from exc
        except openai.OpenAIError:
            raise
        except self._failures as exc:
            raise openai.APIConnectionError(request=request) from exc
        if response.is_error:
            raise self._client._make_status_error_from_response(response) from None
        return response.content


def direct_post(client: Any) -> DirectPost | None:
    """A DirectPost for `client`, or None where the public `post` must be used."""
    plain_key_auth = (
        getattr(client, "_provider_runtime", "?") is None
        and getattr(client, "_workload_identity_auth", "?") is None
        and getattr(client, "_idempotency_header", "?") is None
    )
    if not plain_key_auth or not hasattr(client, "_make_status_error_from_response"):
        return None
    try:
        from openai._models import FinalRequestOptions

        options = FinalRequestOptions.construct(method="post", url=PATH, json_data=b"{}")
        return DirectPost(client, client._build_request(options))
    except (ImportError, AttributeError, TypeError):
        return None
