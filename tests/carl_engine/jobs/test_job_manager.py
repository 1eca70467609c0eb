"""The job manager follows jobs through the store, the run dir and the backend: submit, refresh,
logs, stop, resume, reconcile — and refuses bad input before writing anything.

The job program is fake_runner.py (run.py's contract, no training) so these run in seconds;
test_job_training.py repeats the key stories with real training of carl-tiny.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from carl_engine.backends import LogPage, PollResult
from carl_engine.backends.local import LocalBackend
from carl_engine.errors import (
    BackendError,
    IllegalTransitionError,
    InvalidSpecError,
    JobNotFoundError,
    MissingCredentialsError,
    NotSupportedError,
)
from carl_engine.jobs.manager import STALE_QUEUED_S, JobManager, parse_compute
from carl_engine.jobs.states import JobState
from carl_engine.jobs.store import JobStore
from carl_engine.paths import runs_dir
from carl_engine.runs import RunDir
from tests.polling import poll, wait_for_job

FAKE_RUNNER = Path(__file__).with_name("fake_runner.py")
SPEC = {"method": "sft", "dataset": "arithmetic", "max_steps": 6, "save_steps": 2}




def fake_local() -> LocalBackend:
    return LocalBackend(grace_s=1.0, command=[sys.executable, str(FAKE_RUNNER)])


@pytest.fixture
def manager() -> JobManager:
    return JobManager(backends={"local": fake_local()})


def behave(monkeypatch, **how) -> None:
    monkeypatch.setenv("CARL_FAKE_RUN", json.dumps(how))


class CloudStandIn:
    """A backend that needs a credential, for the credential check (H5 builds the real ones)."""

    name: ClassVar[str] = "hf_jobs"
    credentials: ClassVar[tuple[str, ...]] = ("HF_TOKEN",)

    def submit(self, *, job_id, run_dir, target):
        raise BackendError("the flavor is sold out", backend="hf_jobs")

    def poll(self, handle):
        return PollResult(JobState.RUNNING)

    def logs(self, handle, *, cursor=0, limit=200):
        return LogPage([], cursor)

    def cancel(self, handle):
        return None

    def artifacts(self, handle, *, dest):
        return []


# a job's life ---------------------------------------------------------------------------
def test_a_submitted_job_starts_runs_and_succeeds_with_its_progress_in_the_row(manager):
    job = manager.submit("train", SPEC)
    assert job.state == JobState.STARTING and job.handle["pid"] > 0
    spec_json = RunDir(job.run_dir).read_spec()
    assert spec_json["kind"] == "train" and spec_json["max_steps"] == 6 and spec_json["model"] == "carl-tiny"
    assert job.max_steps == 6 and job.backend == "local" and job.target is None
    done = wait_for_job(manager, job.job_id, {JobState.SUCCEEDED, JobState.FAILED, JobState.LOST})
    assert done.state == JobState.SUCCEEDED, done.error
    assert (done.step, done.max_steps, done.error) == (6, 6, None)
    assert done.metrics["loss"] == pytest.approx(1 / 6) and done.metrics["final"] == 1.0
    assert done.checkpoint.endswith("checkpoint-6") and done.ended_at >= done.created_at
    path = [(e.from_state, e.to_state) for e in manager.store.events(job.job_id)]
    assert path[:2] == [(None, JobState.QUEUED), (JobState.QUEUED, JobState.STARTING)]
    assert path[-1][1] == JobState.SUCCEEDED
    assert manager.list(state="succeeded")[0].job_id == job.job_id


def test_refresh_reads_only_new_events_and_two_managers_apply_them_once(manager, monkeypatch):
    behave(monkeypatch, hang_at=4)
    job = manager.submit("train", SPEC)
    other = JobManager(backends={"local": fake_local()})  # another process's view of the same store
    poll(lambda: other.get(job.job_id) and manager.get(job.job_id), lambda seen: seen.step >= 3, timeout_s=20, every_s=0.02)
    seen = manager.get(job.job_id)
    assert seen.state == JobState.RUNNING and seen.step == 3 and seen.started_at is not None
    assert seen.events_cursor == RunDir(seen.run_dir).events_path.stat().st_size
    assert seen.metrics == {"loss": pytest.approx(1 / 3), "reward": pytest.approx(0.5)}
    manager.stop(job.job_id)


def test_logs_page_through_train_log_and_events_with_a_cursor(manager):
    job = manager.submit("train", SPEC)
    wait_for_job(manager, job.job_id, {JobState.SUCCEEDED})
    first = manager.logs(job.job_id, limit=2)
    assert first.lines == ["fake run of train from step 0", "step 1/6"]
    rest = manager.logs(job.job_id, cursor=first.next_cursor)
    assert rest.lines[-1] == "step 6/6" and manager.logs(job.job_id, cursor=rest.next_cursor).lines == []
    events = manager.logs(job.job_id, stream="events", limit=1000)
    kinds = [json.loads(line)["kind"] for line in events.lines]
    assert kinds[0] == "progress" and kinds.count("metrics") == 6 and kinds.count("checkpoint") == 3
    with pytest.raises(InvalidSpecError, match="stream: must be 'log' or 'events'"):
        manager.logs(job.job_id, stream="stdout")


# stop -----------------------------------------------------------------------------------
def test_stop_records_cancelled_first_is_idempotent_and_keeps_the_checkpoint(manager, monkeypatch):
    behave(monkeypatch, hang_at=5)
    job = manager.submit("train", SPEC)
    poll(lambda: str(manager.get(job.job_id).checkpoint), lambda c: c.endswith("checkpoint-4"), timeout_s=20, every_s=0.05)
    stopped = manager.stop(job.job_id, reason="enough")
    assert stopped.state == JobState.CANCELLED and stopped.ended_at is not None
    assert manager.store.events(job.job_id)[-1].reason == "stopped: enough"
    run_dir = RunDir(job.run_dir)
    poll(run_dir.read_result, timeout_s=10, every_s=0.05)  # the process got SIGTERM
    assert run_dir.read_result().status == "cancelled"
    recorded = manager.store.events(job.job_id)
    again = manager.stop(job.job_id)
    assert again.state == JobState.CANCELLED and manager.store.events(job.job_id) == recorded
    assert manager.get(job.job_id).state == JobState.CANCELLED  # result.json does not move a terminal job
    checkpoint = run_dir.latest_checkpoint()
    assert checkpoint.name == "checkpoint-4" and json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 4
    assert manager.get(job.job_id).checkpoint == str(checkpoint)


def test_stopping_a_finished_job_changes_nothing(manager):
    job = manager.submit("train", SPEC)
    done = wait_for_job(manager, job.job_id, {JobState.SUCCEEDED})
    assert manager.stop(job.job_id) == done


# crash and resume -----------------------------------------------------------------------
def test_a_killed_job_is_lost_and_its_resume_continues_the_global_step(manager, monkeypatch):
    behave(monkeypatch, hang_at=5)
    job = manager.submit("train", SPEC)
    poll(lambda: str(manager.get(job.job_id).checkpoint), lambda c: c.endswith("checkpoint-4"), timeout_s=20, every_s=0.05)
    os.killpg(job.handle["pid"], signal.SIGKILL)
    lost = wait_for_job(manager, job.job_id, {JobState.LOST, JobState.FAILED})
    assert lost.state == JobState.LOST and "killed by signal 9" in lost.error
    behave(monkeypatch)
    again = manager.resume(job.job_id)
    assert (again.attempt, again.resumes, again.state) == (2, job.job_id, JobState.STARTING)
    assert again.spec["resume_from"] == str(RunDir(job.run_dir).checkpoints_dir / "checkpoint-4")
    assert manager.store.events(again.job_id)[0].reason.startswith(f"resumes {job.job_id} from ")
    done = wait_for_job(manager, again.job_id, {JobState.SUCCEEDED, JobState.FAILED, JobState.LOST})
    assert done.state == JobState.SUCCEEDED and done.step == 6
    steps = [e["step"] for e in RunDir(again.run_dir).iter_events("metrics")]
    assert steps == [5, 6]


def test_a_job_without_checkpoint_resumes_from_scratch_and_says_so(manager, monkeypatch):
    behave(monkeypatch, crash=1)
    job = manager.submit("train", SPEC)
    crashed = wait_for_job(manager, job.job_id, {JobState.FAILED, JobState.LOST, JobState.SUCCEEDED})
    assert crashed.state == JobState.FAILED and "exited with code 3" in crashed.error
    behave(monkeypatch)
    again = manager.resume(job.job_id)
    assert again.spec["resume_from"] is None
    assert manager.store.events(again.job_id)[0].reason == f"resumes {job.job_id}: no checkpoint, starting from scratch"
    assert wait_for_job(manager, again.job_id, {JobState.SUCCEEDED}).step == 6


def test_only_finished_unsuccessful_train_jobs_resume(manager, monkeypatch):
    behave(monkeypatch, hang_at=2)
    job = manager.submit("train", SPEC)
    with pytest.raises(IllegalTransitionError, match="only failed, lost or cancelled jobs resume"):
        manager.resume(job.job_id)
    manager.stop(job.job_id)
    evaluation = manager.submit("eval", {"checkpoint": "/nowhere"})
    manager.stop(evaluation.job_id)
    with pytest.raises(InvalidSpecError, match="only train jobs resume"):
        manager.resume(evaluation.job_id)


# restart and reconcile ------------------------------------------------------------------
def test_a_new_process_reattaches_to_a_job_started_by_one_that_exited(monkeypatch):
    script = (
        "import sys\n"
        "from carl_engine.backends.local import LocalBackend\n"
        "from carl_engine.jobs.manager import JobManager\n"
        f"m = JobManager(backends={{'local': LocalBackend(command=[sys.executable, {str(FAKE_RUNNER)!r}])}})\n"
        "print(m.submit('eval', {'checkpoint': '/some/checkpoint'}).job_id)\n"  # a light spec: no torch to import
    )
    env = {**os.environ, "CARL_FAKE_RUN": json.dumps({"sleep": 0.1}), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=True)
    job_id = out.stdout.strip().splitlines()[-1]
    fresh = JobManager()  # the registry's local backend: it needs only the handle in the row
    done = wait_for_job(fresh, job_id, {JobState.SUCCEEDED, JobState.FAILED, JobState.LOST})
    assert done.state == JobState.SUCCEEDED and done.metrics["final"] == 1.0 and done.step == 6
    assert RunDir(done.run_dir).read_spec()["kind"] == "eval"


def test_reconcile_fails_stale_submissions_and_marks_vanished_processes_lost(manager, monkeypatch):
    store = manager.store
    stale = store.create(kind="train", spec=SPEC, backend="local", target=None, run_dir_for=lambda i: RunDir.for_job(i).path)
    monkeypatch.setattr("carl_engine.jobs.manager.time.time", lambda: stale.created_at.timestamp() + STALE_QUEUED_S + 1)
    gone = store.create(kind="train", spec=SPEC, backend="local", target=None, run_dir_for=lambda i: RunDir.for_job(i).path)
    store.transition(gone.job_id, JobState.STARTING, reason="test", handle={"pid": 1, "start_time": -1, "run_dir": gone.run_dir})
    states = {job.job_id: job for job in manager.reconcile()}
    assert states[stale.job_id].state == JobState.FAILED and "ended before the backend took it" in states[stale.job_id].error
    assert states[gone.job_id].state == JobState.LOST


# bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind,spec,compute,error,words",
    [
        ("train", SPEC, "moon", InvalidSpecError, "compute: unknown backend; use one of local, ray"),
        ("train", SPEC, "local:gpu0", InvalidSpecError, "local takes no target"),
        ("train", SPEC, "hf_jobs", InvalidSpecError, "hf_jobs needs a target"),
        ("train", SPEC, "hf_jobs:A100 Large!", InvalidSpecError, "HF Jobs flavor"),
        ("train", SPEC, "runpod:", InvalidSpecError, "runpod needs a target"),
        ("train", SPEC, "ssh:me@bad_host!", InvalidSpecError, "valid host name"),
        ("train", SPEC, "ssh:me@gpu-box:99999", InvalidSpecError, "port must be a number from 1 to 65535"),
        ("train", SPEC, "ssh:b@d@host", InvalidSpecError, "plain login name"),
        ("train", SPEC, "ray:not a host", InvalidSpecError, "ray takes"),
        ("train", SPEC, "tinker", NotSupportedError, "not supported yet"),
        ("train", SPEC, "hf_jobs:a10g-large", MissingCredentialsError, "the hf_jobs backend needs HF_TOKEN"),
        ("sing", SPEC, "local", InvalidSpecError, "kind: must be one of train, eval, bench, pipeline"),
        ("train", {**SPEC, "max_steps": -1}, "local", InvalidSpecError, "max_steps"),
        ("train", {**SPEC, "learning_rat": 1e-3}, "local", InvalidSpecError, "learning_rat"),
        ("train", {**SPEC, "resume_from": "/no/such/checkpoint"}, "local", InvalidSpecError, "resume_from"),
        ("eval", {"checkpoint": ""}, "local", InvalidSpecError, "checkpoint"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error_and_nothing_written(kind, spec, compute, error, words):
    manager = JobManager(backends={"local": fake_local(), "hf_jobs": CloudStandIn()})
    with pytest.raises(error) as caught:
        manager.submit(kind, spec, compute=compute)
    assert words in str(caught.value)
    assert manager.store.count() == 0 and list(runs_dir().iterdir()) == []


def test_the_credential_error_names_the_variable_and_a_backend_refusal_is_a_failed_job(monkeypatch):
    manager = JobManager(backends={"hf_jobs": CloudStandIn()})
    with pytest.raises(MissingCredentialsError) as caught:
        manager.submit("train", SPEC, compute="hf_jobs:a10g-large")
    assert caught.value.variable == "HF_TOKEN"
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    job = manager.submit("train", SPEC, compute="hf_jobs:a10g-large")
    assert job.state == JobState.FAILED and "sold out" in job.error and "hf_secret_value" not in job.error
    assert (job.backend, job.target) == ("hf_jobs", "a10g-large")


def test_an_unknown_job_id_is_named_by_every_call(manager):
    for call in (manager.get, manager.stop, manager.resume, manager.logs):
        with pytest.raises(JobNotFoundError, match="'nosuchjb'"):
            call("nosuchjb")


def test_compute_targets_parse_into_backend_and_target():
    assert (parse_compute("local").backend, parse_compute("local").target) == ("local", None)
    assert parse_compute("ray").target is None and parse_compute("ray:127.0.0.1:6379").target == "127.0.0.1:6379"
    assert parse_compute("ray:http://127.0.0.1:8265").target == "http://127.0.0.1:8265"
    assert str(parse_compute("hf_jobs:a10g-large")) == "hf_jobs:a10g-large"
    assert parse_compute("runpod:NVIDIA A40").target == "NVIDIA A40"
    for host in ("ssh:me@gpu-box", "ssh:gpu-box:2222", "ssh:ci@10.0.0.7:22"):
        assert parse_compute(host).backend == "ssh"
    with pytest.raises(InvalidSpecError, match="compute"):
        parse_compute("")
    assert isinstance(JobManager().store, JobStore)


def test_a_job_stopped_while_it_was_being_submitted_has_its_process_cancelled(manager, monkeypatch):
    behave(monkeypatch, hang_at=2)
    local = manager.backend("local")
    real_submit = local.submit

    def submit_then_race(**kwargs):
        handle = real_submit(**kwargs)
        manager.stop(kwargs["job_id"], reason="raced")  # another process's stop lands now
        return handle

    monkeypatch.setattr(local, "submit", submit_then_race)
    job = manager.submit("eval", {"checkpoint": "/some/checkpoint"})
    assert job.state == JobState.CANCELLED and job.handle["pid"] > 0
    from carl_engine.backends.local import is_alive

    poll(lambda: is_alive(job.handle), lambda alive: not alive, timeout_s=10, every_s=0.05)  # SIGTERM, early in start-up
    assert not is_alive(job.handle)
    assert manager.get(job.job_id).state == JobState.CANCELLED


def test_missing_credentials_are_listed_by_name_only(monkeypatch):
    from carl_engine.jobs.manager import missing_credentials

    assert missing_credentials(CloudStandIn()) == ["HF_TOKEN"]
    monkeypatch.setenv("HF_TOKEN", "x")
    assert missing_credentials(CloudStandIn()) == [] and missing_credentials(fake_local()) == []


def test_an_attempt_that_saved_nothing_new_resumes_from_the_checkpoint_it_started_from(manager, monkeypatch):
    behave(monkeypatch, fail=3)
    first = manager.submit("train", SPEC)
    assert wait_for_job(manager, first.job_id, {JobState.FAILED}).error == "fake failure"
    behave(monkeypatch, crash=3)  # starts at checkpoint-2 and dies before writing checkpoint-4
    second = manager.resume(first.job_id)
    crashed = wait_for_job(manager, second.job_id, {JobState.FAILED, JobState.LOST})
    assert RunDir(crashed.run_dir).latest_checkpoint() is None
    behave(monkeypatch)
    third = manager.resume(second.job_id)
    assert third.attempt == 3 and third.resumes == second.job_id
    assert third.spec["resume_from"] == str(RunDir(first.run_dir).checkpoints_dir / "checkpoint-2")
    assert wait_for_job(manager, third.job_id, {JobState.SUCCEEDED}).step == 6
