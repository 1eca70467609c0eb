"""The job stories with real training: carl-tiny, SFT on the arithmetic task, a few dozen tiny
steps through `python -m carl_engine.run` on the local backend.

- restart: a job started by a process that has exited is followed to `succeeded` by a new one;
- crash: kill -9 mid-run -> `lost` -> resume -> `succeeded`, steps continuing from the checkpoint;
- cancel: stop is idempotent and the last checkpoint loads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from carl_engine.jobs.manager import JobManager
from carl_engine.jobs.states import JobState
from carl_engine.runs import RunDir
from tests.polling import poll, wait_for, wait_for_job

pytestmark = pytest.mark.slow

SPEC = {"method": "sft", "dataset": "arithmetic", "num_examples": 64, "batch_size": 2, "max_steps": 60, "save_steps": 5}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job process inherits it


def first_checkpoint(run_dir: RunDir, timeout_s: float = 120.0):
    """Wait (polling the folder every 10 ms) until the first complete checkpoint exists."""
    return wait_for(run_dir.checkpoints, timeout_s=timeout_s, every_s=0.01)[0]


def test_a_new_process_follows_a_training_job_to_succeeded_with_its_metrics():
    script = (
        "from carl_engine.jobs.manager import JobManager\n"
        f"print(JobManager().submit('train', {dict(SPEC, max_steps=6, save_steps=3)!r}).job_id)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    job_id = out.stdout.strip().splitlines()[-1]
    fresh = JobManager()  # nothing in memory from the submitter
    done = wait_for_job(fresh, job_id, timeout_s=120)
    assert done.state == JobState.SUCCEEDED, done.error
    assert (done.step, done.max_steps) == (6, 6)
    assert done.metrics["loss"] > 0 and "train_loss" in done.metrics
    assert done.checkpoint.endswith("checkpoint-6")
    assert [e.to_state for e in fresh.store.events(job_id)][-2:] == [JobState.RUNNING, JobState.SUCCEEDED]


def test_a_training_job_killed_mid_run_is_lost_and_resumes_from_its_checkpoint():
    manager = JobManager()
    job = manager.submit("train", SPEC)
    run_dir = RunDir(job.run_dir)
    checkpoint = first_checkpoint(run_dir)
    os.killpg(job.handle["pid"], signal.SIGKILL)
    lost = wait_for_job(manager, job.job_id, timeout_s=120)
    assert lost.state == JobState.LOST, lost.error
    saved = run_dir.latest_checkpoint()
    saved_step = json.loads((saved / "trainer_state.json").read_text())["global_step"]
    assert saved_step >= int(checkpoint.name.split("-")[1]) and saved_step < 60

    again = manager.resume(job.job_id)
    assert (again.attempt, again.resumes, again.spec["resume_from"]) == (2, job.job_id, str(saved))
    done = wait_for_job(manager, again.job_id, timeout_s=120)
    assert done.state == JobState.SUCCEEDED, done.error
    assert done.step == 60
    steps = [e["step"] for e in RunDir(again.run_dir).iter_events("metrics") if "loss" in e.get("metrics", {})]
    assert steps[0] == saved_step + 1 and steps[-1] == 60  # the global step goes on


def test_stopping_a_training_job_is_idempotent_and_leaves_a_loadable_checkpoint():
    manager = JobManager()
    job = manager.submit("train", SPEC)
    run_dir = RunDir(job.run_dir)
    first_checkpoint(run_dir)
    stopped = manager.stop(job.job_id, reason="test")
    assert stopped.state == JobState.CANCELLED
    poll(run_dir.read_result, timeout_s=60, every_s=0.1)
    result = run_dir.read_result()
    assert result.status == "cancelled" and result.step < 60
    assert manager.stop(job.job_id).state == JobState.CANCELLED
    assert manager.get(job.job_id).state == JobState.CANCELLED

    from carl_engine.models import load_model_and_tokenizer

    latest = run_dir.latest_checkpoint()
    model, tokenizer = load_model_and_tokenizer(str(latest))
    assert model.num_parameters() > 0 and tokenizer.eos_token is not None
