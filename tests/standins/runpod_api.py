"""A local stand-in of the RunPod GraphQL calls the runpod backend makes (via the runpod SDK).

`POST /graphql` on 127.0.0.1 (the SDK reads `RUNPOD_API_BASE_URL` at call time), answering:
`gpuTypes(input: {id})` (create_pod's GPU check), `podFindAndDeployOnDemand` (create_pod),
`pod(input: {podId})` (get_pod) and `podTerminate` (terminate_pod). Every request must carry
`Authorization: Bearer <key>`. A created pod has no SSH port until the test calls `boot`,
which points its port 22 at an SSH server (the SSH stand-in).
"""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from standins.local_http import LoopbackServer

GPU_IDS = ("NVIDIA A40", "NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090")


class RunPodStandin:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.queries: list[str] = []
        self.pods: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []  # parsed create_pod inputs
        self._http = LoopbackServer(_handler(self))

    @property
    def base_url(self) -> str:
        return self._http.url

    def start(self) -> RunPodStandin:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def boot(self, pod_id: str, ssh_port: int) -> None:
        """The pod is up: its port 22 is published on 127.0.0.1:`ssh_port`."""
        self.pods[pod_id]["runtime"] = {
            "ports": [
                {"ip": "10.0.0.2", "isIpPublic": False, "privatePort": 22, "publicPort": 22, "type": "tcp"},
                {"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22, "publicPort": ssh_port, "type": "tcp"},
            ]
        }

    # GraphQL ---------------------------------------------------------------------------
    def answer(self, query: str) -> dict[str, Any]:
        self.queries.append(query)
        if "gpuTypes" in query:
            gpu = _field(query, "id")
            found = [{"id": gpu, "displayName": gpu, "memoryInGb": 48}] if gpu in GPU_IDS else []
            return {"data": {"gpuTypes": found}}
        if "podFindAndDeployOnDemand" in query:
            return {"data": {"podFindAndDeployOnDemand": self._create(query)}}
        if "podTerminate" in query:
            pod = self.pods.get(_field(query, "podId"))
            if pod is not None:
                pod.update(desiredStatus="TERMINATED", runtime=None)
            return {"data": {"podTerminate": None}}
        if re.search(r"\bpod\(input", query):
            pod = self.pods.get(_field(query, "podId"))
            return {"data": {"pod": dict(pod) if pod else None}}
        return {"errors": [{"message": "the stand-in does not know this query"}]}

    def _create(self, query: str) -> dict[str, Any]:
        env = dict(re.findall(r'\{ key: "([^"]*)", value: "([^"]*)" \}', query))
        created = {
            "name": _field(query, "name"), "imageName": _field(query, "imageName"),
            "gpuTypeId": _field(query, "gpuTypeId"), "startSsh": "startSsh: true" in query,
            "ports": _field(query, "ports"), "gpuCount": int(re.search(r"gpuCount: (\d+)", query)[1]),
            "env": env,
        }
        self.created.append(created)
        pod_id = f"pod{len(self.pods) + 1:03d}"
        self.pods[pod_id] = {"id": pod_id, "name": created["name"], "desiredStatus": "RUNNING", "runtime": None,
                             "costPerHr": 0.39, "imageName": created["imageName"]}
        return {"id": pod_id, "imageName": created["imageName"], "env": [f"{k}={v}" for k, v in env.items()],
                "machineId": "m1", "machine": {"podHostId": f"{pod_id}-host"}}


def _field(query: str, name: str) -> str | None:
    match = re.search(rf'\b{name}: "([^"]*)"', query)
    return match[1] if match else None


def _handler(standin: RunPodStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if self.path != "/graphql":
                status, payload = 404, {"errors": [{"message": "not found"}]}
            elif self.headers.get("Authorization") != f"Bearer {standin.api_key}":
                status, payload = 401, {"errors": [{"message": "Unauthorized"}]}
            else:
                status, payload = 200, standin.answer(body.get("query", ""))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def runpod_api(monkeypatch):
    """A running stand-in with RUNPOD_API_BASE_URL and RUNPOD_API_KEY pointing at it."""
    standin = RunPodStandin(api_key="rp_standin_" + "k" * 24).start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", standin.base_url)
    monkeypatch.setenv("RUNPOD_API_KEY", standin.api_key)
    yield standin
    standin.stop()
