"""`python -m carl_engine.run`: runs a spec, writes result.json, exits by outcome, cancels on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from carl_engine import run
from carl_engine.runs import RunDir

TINY_TRAIN = {"kind": "train", "max_steps": 2, "batch_size": 4, "num_examples": 16, "max_completion_length": 4}


def run_dir_with(tmp_path, spec: dict) -> RunDir:
    run_dir = RunDir(tmp_path / "job").create()
    run_dir.write_spec(spec)
    return run_dir


@pytest.mark.slow
def test_a_train_spec_runs_to_a_succeeded_result_and_exit_code_zero(tmp_path, capsys):
    run_dir = run_dir_with(tmp_path, TINY_TRAIN)
    assert run.main([str(run_dir.path)]) == 0
    result = run_dir.read_result()
    assert (result.status, result.step, result.max_steps) == ("succeeded", 2, 2)
    assert result.checkpoint.endswith("checkpoint-2")
    assert [e["state"] for e in run_dir.iter_events("state")] == ["running", "succeeded"]
    assert "step 2/2" in capsys.readouterr().out  # one log line per logging step


def test_a_bad_spec_fails_with_the_field_in_result_json_and_exit_code_one(tmp_path):
    run_dir = run_dir_with(tmp_path, {"kind": "train", "max_steps": -1})
    assert run.main([str(run_dir.path / "spec.json")]) == run.EXIT_FAILED
    result = run_dir.read_result()
    assert result.status == "failed"
    assert result.error == "max_steps: must be between 1 and 1,000,000; got -1"


def test_an_unknown_kind_and_a_kind_without_its_module_fail_clearly(tmp_path, monkeypatch):
    run_dir = run_dir_with(tmp_path, {"kind": "juggle"})
    assert run.main([str(run_dir.path)]) == run.EXIT_FAILED
    assert "kind: must be one of train" in run_dir.read_result().error

    monkeypatch.setitem(run.HANDLERS, "later", "carl_engine.not_written_yet:run")
    run_dir.write_spec({"kind": "later"})
    assert run.main([str(run_dir.path)]) == run.EXIT_FAILED
    assert "carl_engine.not_written_yet does not exist" in run_dir.read_result().error


def test_a_spec_file_outside_a_run_dir_gets_a_new_run_dir(tmp_path, carl_home):
    spec_file = tmp_path / "carl.yaml"
    spec_file.write_text("kind: train\nmax_steps: 0\n")
    assert run.main([str(spec_file)]) == run.EXIT_FAILED
    (made,) = list((carl_home / "runs").iterdir())
    assert RunDir(made).read_spec()["max_steps"] == 0
    assert RunDir(made).read_result().status == "failed"


def test_a_missing_target_is_a_usage_error():
    assert run.main(["/nowhere/spec.json"]) == 2


@pytest.mark.slow
def test_sigterm_cancels_the_job_and_writes_a_cancelled_result(tmp_path):
    run_dir = run_dir_with(tmp_path, {**TINY_TRAIN, "max_steps": 100_000, "save_steps": 1})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "carl_engine.run", str(run_dir.path)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while not run_dir.checkpoints() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert run_dir.checkpoints(), "no checkpoint before the deadline"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == run.EXIT_CANCELLED
    finally:
        if proc.poll() is None:
            proc.kill()
    result = run_dir.read_result()
    assert result.status == "cancelled"
    assert result.step >= 1 and result.checkpoint is not None
    assert json.loads((run_dir.path / "result.json").read_text())["error"] == "cancelled by SIGTERM"
