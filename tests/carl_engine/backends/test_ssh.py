"""The ssh backend against a real SSH server on 127.0.0.1 running real bash commands."""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest
from standins.ssh_server import ssh_env, ssh_server  # noqa: F401  (fixtures)

from carl_engine.backends import get_backend, remote_ssh
from carl_engine.backends.ssh import SSHBackend, remote_dir_for
from carl_engine.errors import InvalidSpecError
from carl_engine.jobs.states import JobState
from carl_engine.runs import RunDir
from tests.polling import poll




def test_a_detached_command_runs_to_its_exit_code_and_its_log_reads_with_a_cursor(ssh_env):
    target, opts = remote_ssh.SSHTarget.parse(ssh_env.target), remote_ssh.connect_options()
    remote_ssh.launch(target, "jobs/a", files={"note.txt": "hi\n"}, command="cat note.txt; echo two; exit 3", options=opts)
    seen = poll(lambda: remote_ssh.status(target, "jobs/a", options=opts), lambda s: s.state == "exited")
    assert seen == remote_ssh.RemoteStatus("exited", 3)
    lines, cursor = remote_ssh.read_log(target, "jobs/a/out.log", cursor=0, limit=1, options=opts)
    assert lines == ["hi"] and cursor == 3
    rest, end = remote_ssh.read_log(target, "jobs/a/out.log", cursor=cursor, limit=100, options=opts)
    assert rest == ["two"] and end == 7
    assert remote_ssh.read_log(target, "jobs/a/out.log", cursor=end, limit=100, options=opts) == ([], end)


def test_launching_twice_does_not_start_the_job_again(ssh_env):
    target, opts = remote_ssh.SSHTarget.parse(ssh_env.target), remote_ssh.connect_options()
    for _ in range(2):
        remote_ssh.launch(target, "jobs/once", files={}, command="echo ran", options=opts)
    poll(lambda: remote_ssh.status(target, "jobs/once", options=opts), lambda s: s.state == "exited")
    assert (ssh_env.home / "jobs/once/out.log").read_text() == "ran\n"


def test_cancel_records_the_marker_then_kills_the_process_group(ssh_env):
    target, opts = remote_ssh.SSHTarget.parse(ssh_env.target), remote_ssh.connect_options()
    remote_ssh.launch(target, "jobs/c", files={}, command="sleep 60 & sleep 60; wait", options=opts)
    assert poll(lambda: remote_ssh.status(target, "jobs/c", options=opts), lambda s: s.state == "running").state == "running"
    pgid = int((ssh_env.home / "jobs/c/pid").read_text())
    remote_ssh.cancel(target, "jobs/c", options=opts)
    assert (ssh_env.home / "jobs/c/cancelled").exists()
    seen = poll(lambda: remote_ssh.status(target, "jobs/c", options=opts), lambda s: s.state == "cancelled")
    assert seen.state == "cancelled"
    with pytest.raises(ProcessLookupError):  # the whole group, both sleeps, is gone
        os.killpg(pgid, 0)
    remote_ssh.cancel(target, "jobs/c", options=opts)  # idempotent


def test_a_job_killed_behind_our_back_is_lost(ssh_env):
    target, opts = remote_ssh.SSHTarget.parse(ssh_env.target), remote_ssh.connect_options()
    remote_ssh.launch(target, "jobs/k", files={}, command="sleep 60", options=opts)
    poll(lambda: remote_ssh.status(target, "jobs/k", options=opts), lambda s: s.state == "running")
    os.killpg(int((ssh_env.home / "jobs/k/pid").read_text()), signal.SIGKILL)
    assert poll(lambda: remote_ssh.status(target, "jobs/k", options=opts), lambda s: s.state == "lost").state == "lost"
    assert remote_ssh.status(target, "jobs/never-made", options=opts).state == "absent"


@pytest.mark.parametrize("bad", [None, "", "me@", "@box", "me@host:99999", "me@ho st", "me@host;rm -rf /", "a@b@c"])
def test_a_malformed_host_is_an_invalid_spec_naming_compute(bad, tmp_path):
    with pytest.raises(InvalidSpecError) as err:
        SSHBackend().submit(job_id="j1", run_dir=RunDir(tmp_path), target=bad)
    assert err.value.field == "compute"


def test_the_registry_gives_the_ssh_backend_with_no_required_variable():
    backend = get_backend("ssh")
    assert isinstance(backend, SSHBackend) and backend.credentials == ()


def test_a_failing_spec_is_reported_failed_with_its_log(ssh_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CARL_SSH_RUNNER", sys.executable)
    run = RunDir(tmp_path / "run").create()
    run.write_spec({"kind": "no-such-kind"})
    backend = SSHBackend()
    handle = backend.submit(job_id="jfail", run_dir=run, target=ssh_env.target)
    assert handle == {"target": ssh_env.target, "remote_dir": remote_dir_for("jfail"), "run_dir": str(run.path),
                      "runner": sys.executable}
    assert (ssh_env.home / ".carl/jobs/jfail/carl-job.py").exists()
    polled = poll(lambda: backend.poll(handle), lambda p: p.state.is_terminal(), timeout_s=60)
    assert polled.state == JobState.FAILED and polled.exit_code != 0
    page = backend.logs(handle, cursor=0, limit=1000)
    assert page.lines and page.next_cursor > 0
    backend.cancel(handle)  # cancelling a finished job does nothing
    assert backend.poll(handle).state == JobState.FAILED


FAKE_RUN = (
    "mkdir -p run/checkpoints/checkpoint-1 run/checkpoints/checkpoint-2 run/checkpoints/checkpoint-3; "
    "echo '{}' > run/checkpoints/checkpoint-1/trainer_state.json; "
    "echo '{}' > run/checkpoints/checkpoint-2/trainer_state.json; "  # checkpoint-3 is incomplete
    "echo '{\"time\": 1, \"kind\": \"progress\", \"step\": 0, \"max_steps\": 2}' > run/events.jsonl; "
    "echo '{\"status\": \"succeeded\", \"step\": 2}' > run/result.json"
)


def test_the_poll_that_sees_the_end_brings_home_the_run_dir_with_its_latest_complete_checkpoint(ssh_env, tmp_path):
    target, opts = remote_ssh.SSHTarget.parse(ssh_env.target), remote_ssh.connect_options()
    remote_ssh.launch(target, "jobs/done", files={}, command=FAKE_RUN, options=opts)
    run = RunDir(tmp_path / "run")
    handle = {"target": ssh_env.target, "remote_dir": "jobs/done", "run_dir": str(run.path)}
    polled = poll(lambda: SSHBackend().poll(handle), lambda p: p.state.is_terminal())
    assert polled.state == JobState.SUCCEEDED and run.read_result().step == 2
    assert run.checkpoints() == [run.checkpoints_dir / "checkpoint-2"]  # only the latest complete one
    assert not (run.checkpoints_dir / "checkpoint-3").exists()
    everything = SSHBackend().artifacts(handle, dest=tmp_path / "all")  # artifacts take every checkpoint
    assert tmp_path / "all/checkpoints/checkpoint-1/trainer_state.json" in everything and len(everything) == 4


def test_a_resumed_job_ships_its_checkpoint_and_points_the_spec_at_it(ssh_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CARL_SSH_RUNNER", "true")  # only the shipping is under test
    checkpoint = tmp_path / "old" / "checkpoint-7"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 7}')
    run = RunDir(tmp_path / "run").create()
    run.write_spec({"kind": "train", "model": "carl-tiny", "resume_from": str(checkpoint)})
    SSHBackend().submit(job_id="jres", run_dir=run, target=ssh_env.target)
    shipped = ssh_env.home / ".carl/jobs/jres/resume/checkpoint-7"
    assert (shipped / "trainer_state.json").read_text() == '{"global_step": 7}'
    bundle = (ssh_env.home / ".carl/jobs/jres/carl-job.py").read_text()
    assert json.dumps(str(shipped))[1:-1] in bundle and str(checkpoint) not in bundle


@pytest.mark.slow
def test_the_job_manager_runs_a_tiny_training_job_over_ssh_to_success_with_its_metrics(ssh_env, monkeypatch, tmp_path):
    from carl_engine.jobs import JobManager

    monkeypatch.setenv("CARL_SSH_RUNNER", f"OMP_NUM_THREADS=1 {sys.executable}")
    spec = {"method": "sft", "model": "carl-tiny", "task": "arithmetic", "max_steps": 1}
    job = JobManager().submit("train", spec, compute=f"ssh:{ssh_env.target}")
    assert job.backend == "ssh" and job.handle["remote_dir"] == remote_dir_for(job.job_id)
    job = poll(lambda: JobManager().get(job.job_id), lambda j: j.state.is_terminal(), timeout_s=240)
    assert job.state == JobState.SUCCEEDED, JobManager().logs(job.job_id, limit=1000).lines[-20:]
    assert job.step == 1 and job.metrics  # events mirrored from the remote run dir
    files = SSHBackend().artifacts(job.handle, dest=tmp_path / "back")
    assert tmp_path / "back" / "result.json" in files


def test_the_user_is_optional_in_a_target():
    assert remote_ssh.SSHTarget.parse("gpu-box") == remote_ssh.SSHTarget(None, "gpu-box", 22)
    assert str(remote_ssh.SSHTarget.parse("me@10.0.0.7:2222")) == "me@10.0.0.7:2222"
