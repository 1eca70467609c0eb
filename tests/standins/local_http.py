"""A threaded HTTP server on 127.0.0.1 for the stand-ins of outside APIs (bounded, no sleeps)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """Base handler: `self.server.state` is shared; helpers to read and answer JSON."""

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class LoopbackServer:
    """Serves `handler` on a free 127.0.0.1 port from a daemon thread: `url`, `start()`, `stop()`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], state: Any = None) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.state = state  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def serve(handler: type[JsonHandler], state: Any) -> Iterator[str]:
    """Run `handler` on a free port with `server.state = state`; yields the base URL."""
    server = LoopbackServer(handler, state).start()
    try:
        yield server.url
    finally:
        server.stop()
