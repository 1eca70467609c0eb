"""The agent examples against the real server: ci_client.py trains carl-tiny over stdio; configs parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "agent_examples"


def ci_client(*args: str, carl_home) -> subprocess.CompletedProcess:
    env = {**os.environ, "CARL_HOME": str(carl_home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(EXAMPLES / "ci_client.py"), *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_ci_client_trains_carl_tiny_over_stdio_and_exits_zero_on_success(carl_home):
    done = ci_client("--max-steps", "2", "--poll-s", "1", carl_home=carl_home)
    assert done.returncode == 0, done.stderr[-2000:]
    final = json.loads(done.stdout.strip().splitlines()[-1])
    assert final["state"] == "succeeded" and final["step"] == 2 and "carl/phi_mean" in final["metrics"]


def test_ci_client_exits_non_zero_when_the_server_refuses_the_job(carl_home):
    done = ci_client("--max-steps", "0", carl_home=carl_home)
    assert done.returncode == 2 and "carl_train refused" in done.stderr and "max_steps" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(("name", "key"), [("claude_desktop_config.json", "mcpServers"), ("vscode_mcp.json", "servers")])
def test_host_configs_start_carl_mcp_over_stdio(name, key):
    server = json.loads((EXAMPLES / name).read_text())[key]["carl-studio"]
    assert server["command"].endswith("carl-mcp") and server["args"] == []
