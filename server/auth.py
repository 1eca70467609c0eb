"""Bearer-token protection for the HTTP transports (SSE and streamable HTTP).

One shared secret, `CARL_MCP_TOKEN`, sent as `Authorization: Bearer <token>`. Compared in
constant time. `/health` stays open (it says only that the server is up). stdio needs no
token: only the process that started the server can talk to it.

Why not the SDK's OAuth resource-server settings: they need an issuer URL and publish
OAuth metadata for an authorization server we do not have; a static shared secret is an
ASGI middleware of a few lines.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

TOKEN_VARIABLE = "CARL_MCP_TOKEN"
OPEN_PATHS = frozenset({"/health"})


class BearerTokenMiddleware:
    """Answers 401 to every HTTP request but `/health` that lacks the right bearer token (and closes
    any websocket without it); only the ASGI lifespan passes through unchecked."""

    def __init__(self, app: ASGIApp, token: str, *, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        if not token:
            raise ValueError(f"{TOKEN_VARIABLE} must be a non-empty string")
        self.app = app
        self._token = token.encode()
        self._open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" or scope.get("path") in self._open_paths or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket without the token: refuse the handshake
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps(
            {"error": "unauthorized", "detail": f"send 'Authorization: Bearer <{TOKEN_VARIABLE}>'"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="carl-studio"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _authorized(self, scope: Scope) -> bool:
        header = b""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                header = value
                break
        scheme, _, given = header.partition(b" ")
        # compare_digest runs in time independent of where the first difference is
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
