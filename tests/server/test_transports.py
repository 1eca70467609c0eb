"""SSE and streamable HTTP: bearer token required (401 without), /health open, loopback by default."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

TOKEN = "test-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _serving(transport: str, carl_home, *, token: str | None = TOKEN):
    port = _free_port()
    env = {**os.environ, "CARL_HOME": str(carl_home)}
    env.pop("CARL_MCP_TOKEN", None)
    if token:
        env["CARL_MCP_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "carl_studio.server", "--transport", transport, "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_streamable_http_answers_401_without_the_token_and_lists_tools_with_it(carl_home):
    with _serving("http", carl_home) as base:
        assert httpx.get(f"{base}/health").json()["status"] == "ok"
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        assert httpx.post(f"{base}/mcp", json=body).status_code == 401
        wrong = httpx.post(f"{base}/mcp", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")

        async def listed() -> set[str]:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=httpx2.Timeout(30, read=60))
            async with http, Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
                return {tool.name for tool in (await client.list_tools()).tools}

        import anyio

        assert "carl_train" in anyio.run(listed)


def test_sse_answers_401_without_the_token_and_lists_tools_with_it(carl_home):
    with _serving("sse", carl_home) as base:
        assert httpx.get(f"{base}/sse", timeout=5).status_code == 401

        async def listed() -> set[str]:
            transport = sse_client(f"{base}/sse", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            async with Client(transport, mode="legacy") as client:
                return {tool.name for tool in (await client.list_tools()).tools}

        import anyio

        assert "carl_status" in anyio.run(listed)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7"])
def test_a_non_loopback_bind_without_a_token_is_refused(host, carl_home):
    env = {**os.environ, "CARL_HOME": str(carl_home)}
    env.pop("CARL_MCP_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "carl_studio.server", "--transport", "http", "--host", host],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2 and f"non-loopback address {host} without CARL_MCP_TOKEN" in done.stderr
    assert done.stdout == ""


def test_http_on_loopback_without_a_token_is_refused_too(carl_home):
    from carl_studio.server.main import main

    assert main(["--transport", "sse"]) == 2
