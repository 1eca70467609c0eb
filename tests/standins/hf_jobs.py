"""A local stand-in of the Hugging Face Hub endpoints the hf_jobs backend calls.

Plain stdlib `http.server` on 127.0.0.1, spoken to by the official `HfApi`:
- `GET /api/whoami-v2`
- `POST /api/jobs/<ns>` (run_job), `GET /api/jobs/<ns>/<id>` (inspect_job),
  `GET /api/jobs/<ns>/<id>/logs` (fetch_job_logs, server-sent events), `POST …/cancel`
- `GET /api/models/<repo>/revision/<rev>`, `GET /api/models/<repo>/tree/<rev>` and `HEAD|GET /<repo>/resolve/<rev>/<path>`
  (snapshot_download of plain, non-Xet files)
Every request must carry `Authorization: Bearer <token>`; `requests` records what came in.
Tests drive a job's life with `set_stage` and `add_logs`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from standins.local_http import LoopbackServer

USER = "carl-user"


class HubStandin:
    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[dict[str, Any]] = []  # {"method", "path", "body"}
        self.jobs: dict[str, dict[str, Any]] = {}  # id -> {"spec", "stage", "message", "logs", "namespace"}
        self.repos: dict[str, dict[str, bytes]] = {}  # repo id -> {path: content}
        self._http = LoopbackServer(_handler(self))

    @property
    def endpoint(self) -> str:
        return self._http.url

    def start(self) -> HubStandin:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    # test controls ---------------------------------------------------------------------
    def set_stage(self, job_id: str, stage: str, message: str | None = None) -> None:
        self.jobs[job_id]["stage"] = stage
        self.jobs[job_id]["message"] = message

    def add_logs(self, job_id: str, lines: list[str]) -> None:
        self.jobs[job_id]["logs"].extend(lines)

    def job_info(self, job_id: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        spec = job["spec"]
        return {
            "id": job_id,
            "createdAt": "2026-11-25T17:00:00.000Z",
            "dockerImage": spec.get("dockerImage"),
            "command": spec.get("command"),
            "arguments": spec.get("arguments"),
            "environment": spec.get("environment"),
            "secrets": sorted(spec.get("secrets", {})),  # the Hub never returns secret values
            "flavor": spec.get("flavor"),
            "labels": spec.get("labels"),
            "status": {"stage": job["stage"], "message": job["message"]},
            "owner": {"id": "u1", "name": job["namespace"], "type": "user"},
        }


def _handler(hub: HubStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _reply(self, status: int, payload: Any = None, *, body: bytes | None = None,
                   headers: dict[str, str] | None = None) -> None:
            data = body if body is not None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if body is None else "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {hub.token}":
                self._reply(401, {"error": "Invalid credentials"})
                return False
            return True

        def _record(self) -> dict[str, Any] | None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            hub.requests.append({"method": self.command, "path": urlparse(self.path).path, "body": body})
            return body

        def do_GET(self) -> None:  # noqa: N802
            body = self._record()
            del body
            if not self._authorised():
                return
            parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
            if parts == ["api", "whoami-v2"]:
                return self._reply(200, {"name": USER, "type": "user"})
            if parts[:2] == ["api", "jobs"] and len(parts) == 4 and parts[3] in hub.jobs:
                return self._reply(200, hub.job_info(parts[3]))
            if parts[:2] == ["api", "jobs"] and len(parts) == 5 and parts[4] == "logs" and parts[3] in hub.jobs:
                return self._sse(hub.jobs[parts[3]]["logs"])
            if parts[:2] == ["api", "models"] and "tree" in parts:
                return self._tree("/".join(parts[2 : parts.index("tree")]))
            if parts[:2] == ["api", "models"] and "revision" in parts:
                return self._repo_info("/".join(parts[2 : parts.index("revision")]))
            if "resolve" in parts:
                return self._resolve(parts)
            self._reply(404, {"error": "not found"})

        do_HEAD = do_GET

        def do_POST(self) -> None:  # noqa: N802
            body = self._record()
            if not self._authorised():
                return
            parts = urlparse(self.path).path.strip("/").split("/")
            if parts[:2] == ["api", "jobs"] and len(parts) == 3:
                job_id = f"hfjob{len(hub.jobs) + 1:04d}"
                hub.jobs[job_id] = {"spec": body, "stage": "SCHEDULING", "message": None, "logs": [],
                                    "namespace": parts[2]}
                return self._reply(200, hub.job_info(job_id))
            if parts[:2] == ["api", "jobs"] and len(parts) == 5 and parts[4] == "cancel" and parts[3] in hub.jobs:
                hub.set_stage(parts[3], "CANCELED")
                return self._reply(200, {})
            self._reply(404, {"error": "not found"})

        def _sse(self, lines: list[str]) -> None:
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            events = [{"data": "===== Job started at 2026-11-25 17:00:00 =====", "timestamp": now}]
            events += [{"data": line, "timestamp": now} for line in lines]
            data = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _repo_info(self, repo: str) -> None:
            if repo not in hub.repos:
                return self._reply(404, {"error": "Repository not found"}, headers={"X-Error-Code": "RepoNotFound"})
            siblings = [{"rfilename": path} for path in sorted(hub.repos[repo])]
            self._reply(200, {"id": repo, "sha": "0" * 40, "siblings": siblings, "private": True})

        def _tree(self, repo: str) -> None:
            if repo not in hub.repos:
                return self._reply(404, {"error": "Repository not found"}, headers={"X-Error-Code": "RepoNotFound"})
            entries = [{"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                       for path, data in sorted(hub.repos[repo].items())]
            self._reply(200, entries)

        def _resolve(self, parts: list[str]) -> None:
            at = parts.index("resolve")
            repo, path = "/".join(parts[:at]), "/".join(parts[at + 2 :])
            content = hub.repos.get(repo, {}).get(path)
            if content is None:
                return self._reply(404, {"error": "Entry not found"}, headers={"X-Error-Code": "EntryNotFound"})
            etag = hashlib.sha1(content).hexdigest()
            self._reply(200, body=content, headers={"ETag": f'"{etag}"', "X-Repo-Commit": "0" * 40})

    return Handler


@pytest.fixture
def hf_hub(monkeypatch):
    """A running stand-in; HF_ENDPOINT and HF_TOKEN point the backend at it, offline mode lifted."""
    import huggingface_hub.constants

    hub = HubStandin(token="hf_standin_" + "x" * 24).start()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    yield hub
    hub.stop()
