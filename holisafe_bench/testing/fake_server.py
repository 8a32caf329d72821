"""A small loopback HTTP server with a route table, scripted faults and a request log."""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    match: re.Match

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class FakeResponse:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> sent as is
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (latency, or a hang past a timeout)
    trickle: float = 0.0  # seconds between body bytes: every read is quick, the whole is slow
    reset_after: int | None = None  # send this many body bytes, then cut the connection:
    hard_reset: bool = True  # with a RST (else a clean close, short of the content-length)


Handler = Callable[[FakeRequest], FakeResponse]


class FakeServer:
    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.routes: list[tuple[str, re.Pattern, Handler]] = []
        self.faults: deque[FakeResponse] = deque()
        self.log: list[FakeRequest] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append((method, re.compile(pattern + r"(\?.*)?$"), handler))
            return handler

        return register

    def inject(self, *responses: FakeResponse) -> None:
        """The next requests get these responses, in order, instead of the handler's."""
        with self._lock:
            self.faults.extend(responses)

    def count(self, pattern: str = "") -> int:
        return sum(1 for r in self.log if pattern in r.path)

    def _dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes):
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path)
            if route_method == method and match:
                request = FakeRequest(method, path, headers, body, match)
                with self._lock:
                    self.log.append(request)
                    fault = self.faults.popleft() if self.faults else None
                return fault or handler(request)
        return FakeResponse(404, {"error": {"message": f"no route {method} {path}"}})

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServer:
        # Long: the request handler class is defined here, around the server it serves.
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else every small response waits ~40 ms

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                response = server._dispatch(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                delay = response.delay or server.latency
                if delay:
                    time.sleep(delay)
                payload = response.body
                if not isinstance(payload, bytes):
                    payload = json.dumps(payload if payload is not None else {}).encode()
                try:
                    self.send_response(response.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for key, value in response.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if response.reset_after is not None:
                        self.wfile.write(payload[: response.reset_after])
                        self._cut(hard=response.hard_reset)
                    elif response.trickle:
                        self._trickle(payload, response.trickle)
                    else:
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def _trickle(self, payload: bytes, interval: float) -> None:
                for i in range(len(payload)):
                    self.wfile.write(payload[i : i + 1])
                    time.sleep(interval)

            def _cut(self, hard: bool) -> None:
                """End the connection mid-body. SO_LINGER 0 makes close() send a RST, as a
                crashed proxy would; without it the peer sees a clean but early end."""
                if hard:
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                self.connection.close()
                self.close_connection = True

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._httpd = Server(("127.0.0.1", 0), RequestHandler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
