"""The local backend runs a job as a detached process group that outlives its parent, reattaches
by pid + start time, cancels with SIGTERM then SIGKILL, and reads train.log with a cursor.

The job program here is tests/carl_engine/jobs/fake_runner.py (the run.py contract without
training), so these tests take seconds; the real training runs are in tests/carl_engine/jobs/.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carl_engine.backends import get_backend
from carl_engine.backends.local import LocalBackend, is_alive, process_start_time
from carl_engine.errors import InvalidSpecError
from carl_engine.jobs.states import JobState
from carl_engine.runs import RunDir
from tests.polling import wait_for

FAKE_RUNNER = Path(__file__).parents[1] / "jobs" / "fake_runner.py"




def start(backend: LocalBackend, name: str, spec: dict | None = None) -> tuple[dict, RunDir]:
    run_dir = RunDir.for_job(name).create()
    run_dir.write_spec({"kind": "train", "max_steps": 4, "save_steps": 2, **(spec or {})})
    return backend.submit(job_id=name, run_dir=run_dir, target=None), run_dir


@pytest.fixture
def backend() -> LocalBackend:
    return LocalBackend(grace_s=0.5, command=[sys.executable, str(FAKE_RUNNER)])


def test_the_registry_gives_the_local_backend_which_needs_no_credentials():
    local = get_backend("local")
    assert isinstance(local, LocalBackend)
    assert local.credentials == ()
    assert local.command[1:] == ["-m", "carl_engine.run"]


def test_a_job_runs_detached_with_its_output_in_train_log_and_ends_succeeded(backend, monkeypatch):
    monkeypatch.setenv("CARL_FAKE_RUN", json.dumps({"hang_at": 3}))
    handle, run_dir = start(backend, "detached")
    pid = handle["pid"]
    wait_for(lambda: backend.poll(handle).state == JobState.RUNNING)
    assert os.getsid(pid) == pid and os.getpgid(pid) == pid  # its own session and process group
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{pid}/fd/1") == str(run_dir.log_path)
    assert os.readlink(f"/proc/{pid}/fd/2") == str(run_dir.log_path)
    env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    assert env["CARL_HOME"] == os.environ["CARL_HOME"] and env["CARL_JOB_ID"] == "detached"
    backend.cancel(handle)
    polled = wait_for(lambda: (p := backend.poll(handle)).state in (JobState.CANCELLED,) and p)
    assert polled.detail == "result.json says cancelled"


def test_poll_reports_starting_then_the_result_verdict_and_the_exit_code(backend):
    handle, run_dir = start(backend, "verdict")
    assert backend.poll(handle).state in (JobState.STARTING, JobState.RUNNING, JobState.SUCCEEDED)
    wait_for(lambda: backend.poll(handle).state == JobState.SUCCEEDED)
    assert run_dir.read_result().step == 4
    wait_for(lambda: backend.poll(handle).exit_code == 0)


def test_a_job_survives_the_process_that_started_it(tmp_path):
    script = (
        "import json, sys\n"
        "from carl_engine.backends.local import LocalBackend\n"
        "from carl_engine.runs import RunDir\n"
        "rd = RunDir.for_job('orphan').create()\n"
        "rd.write_spec({'max_steps': 5, 'save_steps': 5})\n"
        f"h = LocalBackend(command=[sys.executable, {str(FAKE_RUNNER)!r}]).submit(job_id='orphan', run_dir=rd, target=None)\n"
        "print(json.dumps(h))\n"
    )
    env = {**os.environ, "CARL_FAKE_RUN": json.dumps({"sleep": 0.2})}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True)
    handle = json.loads(out.stdout)
    assert is_alive(handle)  # the parent is gone, the job is not
    fresh = LocalBackend()  # a new backend object knows nothing of it but the handle
    polled = wait_for(lambda: (p := fresh.poll(handle)).state.is_terminal() and p, timeout_s=30)
    assert polled.state == JobState.SUCCEEDED
    assert polled.exit_code is None  # not our child: the verdict comes from result.json


def test_a_recycled_pid_is_not_mistaken_for_the_job(backend):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        handle = {"pid": sleeper.pid, "start_time": process_start_time(sleeper.pid) - 1, "run_dir": str(RunDir.for_job("r").create().path)}
        assert not is_alive(handle)
        polled = backend.poll(handle)
        assert polled.state == JobState.LOST and "without result.json" in polled.detail
        backend.cancel(handle)  # must not signal the stranger
        time.sleep(0.2)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait(5)


def test_a_crash_without_result_is_failed_with_its_exit_code_and_kill_9_is_lost(backend, monkeypatch):
    monkeypatch.setenv("CARL_FAKE_RUN", json.dumps({"crash": 2}))
    handle, _ = start(backend, "crash")
    polled = wait_for(lambda: (p := backend.poll(handle)).state.is_terminal() and p)
    assert (polled.state, polled.exit_code) == (JobState.FAILED, 3)
    monkeypatch.setenv("CARL_FAKE_RUN", json.dumps({"hang_at": 2}))
    handle, _ = start(backend, "killed")
    wait_for(lambda: backend.poll(handle).state == JobState.RUNNING)
    os.kill(handle["pid"], signal.SIGKILL)
    polled = wait_for(lambda: (p := backend.poll(handle)).state.is_terminal() and p)
    assert polled.state == JobState.LOST and "killed by signal 9" in polled.detail


def test_cancel_returns_at_once_and_kills_a_job_that_ignores_sigterm_after_the_grace(backend, monkeypatch):
    monkeypatch.setenv("CARL_FAKE_RUN", json.dumps({"ignore_term": True, "hang_at": 2}))
    handle, run_dir = start(backend, "stubborn")
    wait_for(lambda: backend.poll(handle).state == JobState.RUNNING)
    began = time.monotonic()
    backend.cancel(handle)
    assert time.monotonic() - began < 0.5
    assert is_alive(handle)  # SIGTERM ignored...
    wait_for(lambda: not is_alive(handle), timeout_s=10)  # ...SIGKILL after 0.5 s
    assert backend.poll(handle).state == JobState.LOST
    backend.cancel(handle)  # idempotent on a dead job
    assert run_dir.latest_checkpoint() is None or run_dir.latest_checkpoint().exists()


def test_logs_are_read_with_a_byte_cursor_and_hold_back_a_partial_line(backend, monkeypatch):
    monkeypatch.setenv("CARL_FAKE_RUN", json.dumps({"hang_at": 3}))
    handle, run_dir = start(backend, "logs")
    wait_for(lambda: run_dir.log_path.exists() and b"step 2/4" in run_dir.log_path.read_bytes())
    first = backend.logs(handle, cursor=0, limit=2)
    assert first.lines == ["fake run of train from step 0", "step 1/4"]
    second = backend.logs(handle, cursor=first.next_cursor, limit=50)
    assert second.lines == ["step 2/4"]
    with open(run_dir.log_path, "ab") as fh:  # a progress bar mid-line, then a finished one
        fh.write(b"bar 10%\rbar 50%")
    assert backend.logs(handle, cursor=second.next_cursor).lines == []  # still being written
    with open(run_dir.log_path, "ab") as fh:
        fh.write(b"\rbar 100%\n")
    assert backend.logs(handle, cursor=second.next_cursor).lines == ["bar 100%"]
    backend.cancel(handle)
    assert backend.logs({**handle, "run_dir": str(run_dir.path / "nowhere")}).lines == []


def test_local_takes_no_target_and_its_artifacts_are_already_local(backend, tmp_path):
    run_dir = RunDir.for_job("t").create()
    with pytest.raises(InvalidSpecError, match="local takes no target"):
        backend.submit(job_id="t", run_dir=run_dir, target="gpu0")
    handle, run_dir = start(backend, "art")
    wait_for(lambda: backend.poll(handle).state == JobState.SUCCEEDED)
    here = backend.artifacts(handle, dest=run_dir.path)
    assert run_dir.result_path in here and run_dir.events_path in here
    copied = backend.artifacts(handle, dest=tmp_path / "copy")
    assert (tmp_path / "copy" / "result.json") in copied
