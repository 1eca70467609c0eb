"""`carl-mcp` (and `carl mcp`): run the CARL Studio MCP server.

    carl-mcp                                   stdio (what Claude Desktop and CI clients start)
    carl-mcp --transport http [--port 8765]    streamable HTTP at http://127.0.0.1:8765/mcp
    carl-mcp --transport sse  [--port 8765]    SSE at http://127.0.0.1:8765/sse

HTTP and SSE always require a bearer token, `CARL_MCP_TOKEN` (401 without it); they bind
127.0.0.1 unless `--host` says otherwise, and refuse to start without the token — for a
non-loopback host the refusal says so explicitly. `GET /health` is open.

On stdio nothing but the protocol goes to stdout: logs go to stderr and to
`$CARL_HOME/logs/mcp-server.log` (tracebacks of unexpected errors included), and job
processes write their own run directories.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from carl_studio.server.auth import TOKEN_VARIABLE, BearerTokenMiddleware, is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def build_parser(prog: str = "carl-mcp") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run the CARL Studio MCP server.")
    parser.add_argument("--transport", choices=("stdio", "sse", "http"), default="stdio",
                        help="stdio (default), sse (served at /sse) or http (streamable HTTP at /mcp)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind for sse/http (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port for sse/http (default {DEFAULT_PORT})")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="level of the log written to stderr and the log file")
    return parser


def setup_logging(level: str) -> Path | None:
    """Log to stderr and to $CARL_HOME/logs/mcp-server.log; never to stdout. Returns the file."""
    from carl_engine.paths import carl_home

    root = logging.getLogger()
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(fmt)
    root.addHandler(stderr)
    try:
        log_dir = carl_home() / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = log_dir / "mcp-server.log"
        handler = logging.FileHandler(log_file)
        handler.setFormatter(fmt)
        root.addHandler(handler)
        return log_file
    except OSError:
        root.warning("cannot write the server log under CARL_HOME; logging to stderr only")
        return None


def refusal(transport: str, host: str, token: str | None) -> str | None:
    """Why the server must not start with these settings, or None when it may."""
    if transport == "stdio":
        return None
    if not token:
        if not is_loopback(host):
            return (f"refusing to serve {transport} on the non-loopback address {host} without {TOKEN_VARIABLE}; "
                    f"set {TOKEN_VARIABLE} to a long random secret (clients send it as a bearer token)")
        return (f"the {transport} transport needs {TOKEN_VARIABLE} (clients send it as 'Authorization: Bearer ...'); "
                f"set it, e.g. export {TOKEN_VARIABLE}=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the server until its transport closes. Returns the exit status."""
    args = build_parser().parse_args(argv)
    token = os.environ.get(TOKEN_VARIABLE) or None
    why_not = refusal(args.transport, args.host, token)
    if why_not:
        print(f"carl-mcp: {why_not}", file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        print(f"carl-mcp: --port must be between 1 and 65535; got {args.port}", file=sys.stderr)
        return 2
    log_file = setup_logging(args.log_level)

    from carl_studio.server.app import build_server

    server = build_server(log_file=str(log_file) if log_file else None)
    if args.transport == "stdio":
        server.run("stdio")
        return 0

    import uvicorn

    if args.transport == "sse":
        app = server.sse_app(host=args.host)
    else:
        app = server.streamable_http_app(host=args.host)
    logging.getLogger("carl_studio.server").info(
        "serving %s on http://%s:%d%s (bearer token required)", args.transport, args.host, args.port,
        "/sse" if args.transport == "sse" else "/mcp",
    )
    uvicorn.run(BearerTokenMiddleware(app, token or ""), host=args.host, port=args.port, log_level="warning")
    return 0
