"""eval_gating_loop.py against the real server over stdio: retrain until the gate passes, then export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LOOP = Path(__file__).resolve().parents[2] / "agent_examples" / "eval_gating_loop.py"


def gating_loop(*args: str, carl_home) -> subprocess.CompletedProcess:
    env = {**os.environ, "CARL_HOME": str(carl_home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(LOOP), "--poll-s", "1", *args], env=env,
                          capture_output=True, text=True, timeout=420)


@pytest.mark.slow
def test_the_loop_retrains_with_more_steps_until_the_gate_passes_and_exports_that_checkpoint(carl_home, tmp_path):
    done = gating_loop("--min-accuracy", "0.5", "--max-steps", "50", "--budget", "3",
                       "--local-dir", str(tmp_path / "passed"), carl_home=carl_home)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    attempts = outcome["attempts"]
    assert [a["max_steps"] for a in attempts] == [50, 100, 200]  # one setting changed per failed gate
    assert [a["passed"] for a in attempts] == [False, False, True]
    assert attempts[-1]["accuracy"] >= 0.5 > attempts[0]["accuracy"]
    assert outcome["pushed"]["job_id"] == attempts[-1]["job_id"]
    exported = tmp_path / "passed"
    assert (exported / "README.md").is_file() and (exported / "model.safetensors").is_file()


@pytest.mark.slow
def test_the_loop_exits_1_when_no_run_passes_within_the_budget(carl_home, tmp_path):
    done = gating_loop("--min-accuracy", "0.99", "--max-steps", "2", "--budget", "1", "--eval-n", "4",
                       "--local-dir", str(tmp_path / "never"), carl_home=carl_home)
    assert done.returncode == 1, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(outcome["attempts"]) == 1 and outcome["attempts"][0]["passed"] is False
    assert outcome["pushed"] is None and not (tmp_path / "never").exists()


def test_the_loop_exits_2_when_the_server_refuses_the_request(carl_home, tmp_path):
    done = gating_loop("--max-steps", "0", "--local-dir", str(tmp_path / "x"), carl_home=carl_home)
    assert done.returncode == 2 and "max_steps" in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["attempts"] == []
