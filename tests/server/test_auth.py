"""The bearer-token middleware and the loopback rule, without a server process."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from carl_studio.server.auth import BearerTokenMiddleware, is_loopback
from carl_studio.server.main import refusal


async def _ok(request):
    return PlainTextResponse("ok")


async def _echo(websocket):
    await websocket.accept()
    await websocket.send_text("hi")
    await websocket.close()


def _client() -> TestClient:
    inner = Starlette(routes=[Route("/mcp", _ok, methods=["GET", "POST"]), Route("/health", _ok),
                              WebSocketRoute("/ws", _echo)])
    return TestClient(BearerTokenMiddleware(inner, "s3cret"))


@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 401), ("Bearer s3cret", 200), ("bearer s3cret", 200), ("Bearer s3cre", 401), ("Basic s3cret", 401),
     ("Bearer s3cret2", 401), ("Bearer", 401)],
)
def test_only_the_exact_bearer_token_passes(header, status):
    headers = {"Authorization": header} if header else {}
    answer = _client().post("/mcp", headers=headers)
    assert answer.status_code == status
    if status == 401:
        assert answer.headers["www-authenticate"] == 'Bearer realm="carl-studio"' and "s3cret" not in answer.text


def test_health_is_open_and_websockets_need_the_token_too():
    client = _client()
    assert client.get("/health").status_code == 200
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws") as ws:
        ws.receive_text()
    with client.websocket_connect("/ws", headers={"Authorization": "Bearer s3cret"}) as ws:
        assert ws.receive_text() == "hi"


def test_loopback_hosts_and_the_refusals():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.4", "example.com", "::"))
    assert refusal("stdio", "0.0.0.0", None) is None and refusal("http", "0.0.0.0", "t") is None
    assert "non-loopback" in refusal("http", "10.0.0.1", None) and "needs CARL_MCP_TOKEN" in refusal("sse", "127.0.0.1", None)
    with pytest.raises(ValueError):
        BearerTokenMiddleware(_ok, "")
