"""Several small SDK clients used in turn instead of one large one.

An SDK's HTTP pool scans every open connection on each request; at concurrency 64 that scan
costs more CPU than the request itself. Eight connections per client keeps it cheap."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

CONNECTIONS_PER_CLIENT = 8


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The TLS context every SDK client would otherwise build for itself (the same default
    trust store and environment settings), built once per process: loading the CA bundle
    takes ~40 ms, paid per client, and a pool creates its clients inside a running event loop,
    where that time stalls every call."""
    import httpx2  # the SDKs' HTTP library

    return httpx2.create_ssl_context()


class ClientPool:
    def __init__(
        self, make: Callable[[], Any], close: Callable[[Any], Awaitable[None]], concurrency: int
    ) -> None:
        self._make = make
        self._close = close
        self._size = max(1, -(-concurrency // CONNECTIONS_PER_CLIENT))
        self._clients: list[Any] = []
        self._turn = 0

    def open(self) -> list[Any]:
        """The clients, created on first use, inside the event loop that uses them."""
        if not self._clients:
            self._clients = [self._make() for _ in range(self._size)]
        return self._clients

    def next(self) -> Any:
        self.open()
        self._turn = (self._turn + 1) % len(self._clients)
        return self._clients[self._turn]

    async def aclose(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            await self._close(client)
