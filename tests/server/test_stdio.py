"""The real server over stdio (`carl-mcp` as a subprocess): start-up stays light, stdout carries only
the protocol, and carl-tiny trains, is followed, stopped and finished through the tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

CARL_MCP = str(Path(sys.executable).with_name("carl-mcp"))
HEAVY = ("torch", "transformers", "trl", "datasets", "peft")


def server_env(carl_home) -> dict[str, str]:
    keep = ("CARL_MODELS_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    return {**env, "CARL_HOME": str(carl_home), "OMP_NUM_THREADS": "1", "CARL_LOCAL_GRACE_S": "5"}


def test_building_the_server_imports_no_torch_transformers_or_trl(carl_home):
    code = ("import sys; from carl_studio.server.app import build_server; build_server(); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CARL_HOME": str(carl_home)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_stdout_carries_only_protocol_messages_even_when_engine_code_runs(carl_home):
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "carl_compute", "arguments": {"model": "carl-tiny", "live": False}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "carl_status", "arguments": {"job_id": "x!"}}},
    ]  # fmt: skip
    stdin = "".join(json.dumps(m) + "\n" for m in messages)
    proc = subprocess.Popen([CARL_MCP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=server_env(carl_home))
    answers = []
    proc.stdin.write(stdin)
    proc.stdin.flush()
    try:
        while len(answers) < 4:  # bounded by the readline timeout below
            line = _readline(proc, timeout_s=120)
            answers.append(json.loads(line))  # every stdout line is JSON-RPC
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    by_id = {a["id"]: a for a in answers}
    assert by_id[3]["result"]["structuredContent"]["fit"]["num_parameters"] > 0
    assert by_id[4]["result"]["isError"] is True and "Traceback" not in json.dumps(by_id[4])
    assert proc.stdout.read().strip() == ""


def _readline(proc, *, timeout_s: float) -> str:
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    if not selector.select(timeout=timeout_s):
        raise AssertionError("the server did not answer in time")
    return proc.stdout.readline()


async def _state(client, job_id: str, states: set[str], timeout_s: float = 180) -> dict:
    with anyio.fail_after(timeout_s):
        while True:
            answer = await client.call_tool("carl_status", {"job_id": job_id})
            assert not answer.is_error, answer.content
            job = answer.structured_content["job"]
            if job["state"] in states:
                return job
            await anyio.sleep(0.5)


@pytest.mark.slow
@pytest.mark.anyio
async def test_carl_tiny_is_trained_followed_and_stopped_over_stdio(carl_home):
    params = StdioServerParameters(command=CARL_MCP, env=server_env(carl_home))
    async with Client(params, read_timeout_seconds=180) as client:
        started = await client.call_tool("carl_train", {"model": "carl-tiny", "max_steps": 500, "save_steps": 1})
        assert not started.is_error, started.content
        job_id = started.structured_content["job_id"]
        running = await _state(client, job_id, {"running", "failed", "lost"})
        assert running["state"] == "running", running
        with anyio.fail_after(60):
            while not (await client.call_tool("carl_logs", {"job_id": job_id})).structured_content["lines"]:
                await anyio.sleep(0.5)
        stopped = await client.call_tool("carl_stop", {"job_id": job_id, "reason": "test"})
        assert stopped.structured_content["job"]["state"] == "cancelled"
        assert (await _state(client, job_id, {"cancelled"}))["state"] == "cancelled"


@pytest.mark.slow
@pytest.mark.anyio
async def test_carl_tiny_runs_to_success_with_carl_metrics_in_its_status_over_stdio(carl_home):
    params = StdioServerParameters(command=CARL_MCP, env=server_env(carl_home))
    async with Client(params, read_timeout_seconds=180) as client:
        started = await client.call_tool("carl_train", {"max_steps": 2, "cascade": {"gate": "off"}})
        job = await _state(client, started.structured_content["job_id"], {"succeeded", "failed", "lost", "cancelled"})
    assert job["state"] == "succeeded", job.get("error")
    assert job["step"] == 2 and job["checkpoint"]
    for name in ("carl/multiscale", "carl/cloud", "carl/discontinuity", "carl/phi_mean", "gate/carl_weight", "reward"):
        assert name in job["metrics"], name
