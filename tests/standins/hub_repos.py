"""A local stand-in for the Hugging Face Hub's repo endpoints, enough for `HfApi.create_repo` and
`HfApi.upload_folder` of huggingface_hub 2.4 (checked against its source):

- POST /api/repos/create                       {"name", "organization", "visibility"?, "type"?}
- POST /api/{type}s/{ns}/{name}/preupload/{rev} {"files": [{"path", "sample", "size"}]} -> upload modes
  (every file "regular": its bytes then travel base64 inside the commit; no LFS/Xet storage here)
- POST /api/{type}s/{ns}/{name}/commit/{rev}    application/x-ndjson: a "header" line, then "file"
  lines ({"path", "content", "encoding": "base64"}) and "deletedFile" lines
- GET  /api/{type}s/{ns}/{name}[/revision/{rev}] repo info (sha, siblings)
- POST /api/validate-yaml                       README metadata check (create_commit calls it)

Every call needs `Authorization: Bearer <token>` with the expected token (401 otherwise, as
the Hub answers). Unknown repos answer 404 with `X-Error-Code: RepoNotFound`. The files of
each repo are kept in memory for the test to read back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from standins.local_http import JsonHandler, serve

_REPO_ROUTE = re.compile(r"^/api/(models|datasets|spaces)/([^/]+)/([^/]+)(?:/(preupload|commit|revision)/([^/?]+))?$")


@dataclass
class Repo:
    repo_id: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


@dataclass
class HubState:
    token: str
    repos: dict[str, Repo] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)


class _Handler(JsonHandler):
    @property
    def state(self) -> HubState:
        return self.server.state  # type: ignore[attr-defined]

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.state.token}":
            return True
        self.reply(401, {"error": "Invalid credentials in Authorization header"})
        return False

    def _repo(self, ns: str, name: str) -> Repo | None:
        repo = self.state.repos.get(f"{ns}/{name}")
        if repo is None:
            self.reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        return repo

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.state.calls.append(f"GET {path}")
        match = _REPO_ROUTE.match(path)
        if not self._authorized():
            return
        if not match or match.group(4) not in (None, "revision"):
            self.reply(404, {"error": "not found"})
            return
        repo = self._repo(match.group(2), match.group(3))
        if repo is not None:
            siblings = [{"rfilename": p} for p in sorted(repo.files)]
            self.reply(200, {"id": repo.repo_id, "sha": repo.sha, "private": repo.private, "siblings": siblings})

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        self.state.calls.append(f"POST {path}")
        body = self.body()
        if path == "/api/validate-yaml":
            self.reply(200, {"errors": [], "warnings": []})
            return
        if not self._authorized():
            return
        if path == "/api/repos/create":
            self._create(json.loads(body))
            return
        match = _REPO_ROUTE.match(path)
        if not match or match.group(4) not in ("preupload", "commit"):
            self.reply(404, {"error": "not found"})
            return
        repo = self._repo(match.group(2), match.group(3))
        if repo is None:
            return
        if match.group(4) == "preupload":
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files]
            self.reply(200, {"files": modes, "commitOid": repo.sha})
        else:
            self._commit(repo, body)

    def _create(self, payload: dict) -> None:
        repo_id = f"{payload.get('organization')}/{payload['name']}"
        url = f"http://{self.headers['Host']}/{repo_id}"
        if repo_id in self.state.repos:
            self.reply(409, {"error": "You already created this model repo", "url": url})
            return
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.state.repos[repo_id] = Repo(repo_id=repo_id, private=private)
        self.reply(200, {"url": url, "name": repo_id, "id": repo_id})

    def _commit(self, repo: Repo, body: bytes) -> None:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        for item in lines:
            value = item["value"]
            if item["key"] == "file":
                repo.files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "deletedFile":
                repo.files.pop(value["path"], None)
            elif item["key"] != "header":
                self.reply(400, {"error": f"this stand-in does not take {item['key']!r} operations"})
                return
        oid = hashlib.sha1(json.dumps([repo.repo_id, len(repo.commits), header]).encode()).hexdigest()
        repo.commits.append({"oid": oid, "summary": header.get("summary"), "files": sorted(repo.files)})
        self.reply(200, {"commitUrl": f"http://{self.headers['Host']}/{repo.repo_id}/commit/{oid}", "commitOid": oid})


@contextmanager
def hub_repos(token: str = "hf_test_WRITE_token_0123456789") -> Iterator[tuple[str, HubState]]:
    """Serve the stand-in; yields (endpoint, state)."""
    state = HubState(token=token)
    with serve(_Handler, state) as url:
        yield url, state


@pytest.fixture
def hub_standin(monkeypatch) -> Iterator[tuple[str, HubState]]:
    """The stand-in, with HF_TOKEN set to its token and HF_ENDPOINT pointing at it.

    The test session runs with HF_HUB_OFFLINE=1 (nothing reaches the internet); huggingface_hub
    reads that once at import, so it is lifted here for the stand-in on 127.0.0.1 only.
    """
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with hub_repos() as (url, state):
        monkeypatch.setenv("HF_TOKEN", state.token)
        monkeypatch.setenv("HF_ENDPOINT", url)
        yield url, state
