"""Contract tests: the official HfApi against a local stand-in of the Jobs endpoints we call."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from standins.hf_jobs import USER, hf_hub  # noqa: F401  (fixture)

from carl_engine.backends import get_backend
from carl_engine.backends.bundle import EVENT_MARK, RESULT_MARK
from carl_engine.backends.hf_jobs import HFJobsBackend, timeout_seconds
from carl_engine.errors import BackendError, InvalidSpecError, MissingCredentialsError
from carl_engine.jobs.states import JobState
from carl_engine.runs import RunDir

SPEC = {"kind": "train", "method": "sft", "model": "carl-tiny", "task": "arithmetic", "max_steps": 1}
METRICS = EVENT_MARK + json.dumps({"time": 1.0, "kind": "metrics", "step": 1, "metrics": {"loss": 1.5}})
RESULT = RESULT_MARK + json.dumps({"status": "succeeded", "step": 1, "metrics": {"loss": 1.5}})


@pytest.fixture
def run(tmp_path) -> RunDir:
    run = RunDir(tmp_path / "run").create()
    run.write_spec(SPEC)
    return run


def submitted(hf_hub, run, job_id="j1", flavor="a10g-large"):
    handle = HFJobsBackend().submit(job_id=job_id, run_dir=run, target=flavor)
    return handle, hf_hub.jobs[handle["hf_job_id"]]


def test_submit_sends_the_bundle_with_the_token_as_a_secret_a_training_timeout_and_the_flavor(hf_hub, run):
    handle, job = submitted(hf_hub, run)
    body = job["spec"]
    assert body["flavor"] == "a10g-large"
    assert body["timeoutSeconds"] == 6 * 3600  # never the Hub's 30-minute default
    assert body["secrets"] == {"HF_TOKEN": hf_hub.token}
    assert hf_hub.token not in json.dumps(body["environment"]) + json.dumps(body["command"])
    assert body["dockerImage"] == "ghcr.io/astral-sh/uv:python3.12-bookworm"
    assert "uv run /tmp/carl-job.py" in body["command"][-1]
    assert body["labels"]["carl-job-id"] == "j1"
    bundle = base64.b64decode(body["environment"]["CARL_BUNDLE_B64"]).decode()
    assert '"carl-tiny"' in bundle and body["environment"]["CARL_RELAY_EVENTS"] == "1"
    assert handle["namespace"] == USER and [r["path"] for r in hf_hub.requests] == ["/api/whoami-v2", f"/api/jobs/{USER}"]
    assert hf_hub.token not in json.dumps(handle)


def test_a_given_namespace_and_timeout_are_used_as_is(hf_hub, run, monkeypatch):
    monkeypatch.setenv("CARL_HF_NAMESPACE", "my-org")
    monkeypatch.setenv("CARL_HF_JOBS_TIMEOUT", "90m")
    handle, job = submitted(hf_hub, run)
    assert handle["namespace"] == "my-org" and job["spec"]["timeoutSeconds"] == 5400
    assert [r["path"] for r in hf_hub.requests] == ["/api/jobs/my-org"]  # no whoami call


def test_stages_map_to_our_states_and_relayed_events_land_in_the_run_dir(hf_hub, run):
    handle, _ = submitted(hf_hub, run)
    hf_id, backend = handle["hf_job_id"], HFJobsBackend()
    assert backend.poll(handle).state == JobState.STARTING
    hf_hub.set_stage(hf_id, "RUNNING")
    hf_hub.add_logs(hf_id, ["Installed 80 packages", METRICS])
    assert backend.poll(handle).state == JobState.RUNNING
    assert run.iter_events("metrics")[0]["metrics"] == {"loss": 1.5}
    hf_hub.add_logs(hf_id, [RESULT])
    hf_hub.set_stage(hf_id, "COMPLETED")
    polled = backend.poll(handle)
    assert polled.state == JobState.SUCCEEDED and run.read_result().step == 1
    assert len(run.iter_events()) == 1  # replaying again does not duplicate events


@pytest.mark.parametrize(
    ("stage", "state"),
    [("ERROR", JobState.FAILED), ("CANCELED", JobState.CANCELLED), ("DELETED", JobState.LOST), ("COMPLETED", JobState.SUCCEEDED)],
)
def test_terminal_stages_without_a_result_map_to_our_states(hf_hub, run, stage, state):
    handle, _ = submitted(hf_hub, run)
    hf_hub.set_stage(handle["hf_job_id"], stage, message="Job timeout" if stage == "ERROR" else None)
    polled = get_backend("hf_jobs").poll(handle)
    assert polled.state == state
    if stage == "ERROR":
        assert "Job timeout" in polled.detail


def test_an_unknown_job_is_lost(hf_hub, run):
    handle, _ = submitted(hf_hub, run)
    assert HFJobsBackend().poll({**handle, "hf_job_id": "gone"}).state == JobState.LOST


def test_logs_page_with_a_line_cursor_and_hide_relay_lines(hf_hub, run):
    handle, _ = submitted(hf_hub, run)
    hf_hub.set_stage(handle["hf_job_id"], "RUNNING")
    hf_hub.add_logs(handle["hf_job_id"], ["one", METRICS, "two", "three"])
    first = HFJobsBackend().logs(handle, cursor=0, limit=3)
    assert first.lines == ["one", "two"] and first.next_cursor == 3
    rest = HFJobsBackend().logs(handle, cursor=first.next_cursor)
    assert rest.lines == ["three"] and rest.next_cursor == 4


def test_cancel_cancels_a_running_job_and_leaves_a_finished_one(hf_hub, run):
    handle, _ = submitted(hf_hub, run)
    HFJobsBackend().cancel(handle)
    assert hf_hub.jobs[handle["hf_job_id"]]["stage"] == "CANCELED"
    assert HFJobsBackend().poll(handle).state == JobState.CANCELLED
    posts = sum(1 for r in hf_hub.requests if r["path"].endswith("/cancel"))
    HFJobsBackend().cancel(handle)  # idempotent: no second cancel call
    assert sum(1 for r in hf_hub.requests if r["path"].endswith("/cancel")) == posts == 1


def test_bad_input_is_refused_before_any_call(hf_hub, run, monkeypatch):
    with pytest.raises(InvalidSpecError) as err:
        HFJobsBackend().submit(job_id="j", run_dir=run, target="h100x9")
    assert err.value.field == "compute" and "a10g-large" in str(err.value)
    monkeypatch.setenv("CARL_HF_JOBS_TIMEOUT", "forever")
    with pytest.raises(InvalidSpecError, match="CARL_HF_JOBS_TIMEOUT"):
        HFJobsBackend().submit(job_id="j", run_dir=run, target="t4-small")
    monkeypatch.delenv("CARL_HF_JOBS_TIMEOUT")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(MissingCredentialsError, match="HF_TOKEN") as missing:
        HFJobsBackend().submit(job_id="j", run_dir=run, target="t4-small")
    assert missing.value.variable == "HF_TOKEN"
    assert hf_hub.requests == []


def test_a_rejected_token_is_a_backend_error_that_does_not_show_it(hf_hub, run, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_secret_value")
    with pytest.raises(BackendError) as err:
        HFJobsBackend().submit(job_id="j", run_dir=run, target="t4-small")
    assert "hf_wrong_secret_value" not in str(err.value) + repr(err.value.__dict__)


def test_durations_parse_with_units():
    assert timeout_seconds("7200") == 7200 and timeout_seconds("2h") == 7200 and timeout_seconds("1.5d") == 129600


def test_the_artifacts_repo_run_dir_comes_back_with_checkpoints(hf_hub, run, monkeypatch, tmp_path):
    monkeypatch.setenv("CARL_HF_ARTIFACTS_REPO", "carl-user/carl-runs")
    handle, job = submitted(hf_hub, run, job_id="jart")
    assert job["spec"]["environment"]["CARL_HF_ARTIFACTS_REPO"] == "carl-user/carl-runs"
    hf_hub.repos["carl-user/carl-runs"] = {
        "runs/jart/checkpoints/checkpoint-1/trainer_state.json": b'{"global_step": 1}',
        "runs/jart/result.json": json.dumps({"status": "succeeded", "step": 1}).encode(),
        "runs/other/result.json": b"{}",
    }
    hf_hub.add_logs(handle["hf_job_id"], [RESULT])
    hf_hub.set_stage(handle["hf_job_id"], "COMPLETED")
    dest = tmp_path / "back"
    files = HFJobsBackend().artifacts(handle, dest=dest)
    assert dest / "checkpoints/checkpoint-1/trainer_state.json" in files
    assert RunDir(dest).latest_checkpoint() == dest / "checkpoints/checkpoint-1"
    assert not (dest / "other").exists()


def run_shipped_bundle(job: dict, workdir) -> list[str]:
    """Do what the HF container does with the job we sent: decode the bundle and run it (python, not uv)."""
    script = workdir / "carl-job.py"
    script.write_bytes(base64.b64decode(job["spec"]["environment"]["CARL_BUNDLE_B64"]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CARL_RELAY_EVENTS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(workdir / "carl-run")], env=env, capture_output=True,
                          text=True, timeout=240, check=False)
    return (proc.stdout + proc.stderr).splitlines()


def test_a_failing_spec_shipped_to_the_job_ends_failed(hf_hub, tmp_path):
    run = RunDir(tmp_path / "run").create()
    run.write_spec({"kind": "no-such-kind"})
    handle, job = submitted(hf_hub, run, job_id="jbad")
    hf_hub.add_logs(handle["hf_job_id"], run_shipped_bundle(job, tmp_path))
    hf_hub.set_stage(handle["hf_job_id"], "ERROR", message="exit code 1")
    assert HFJobsBackend().poll(handle).state == JobState.FAILED
    assert "kind" in run.read_result().error  # run.py's verdict came back through the log


def test_the_job_manager_follows_an_hf_job_to_success_with_its_relayed_metrics(hf_hub):
    from carl_engine.jobs import JobManager

    spec = {"method": "sft", "model": "carl-tiny", "task": "arithmetic", "max_steps": 1}
    job = JobManager().submit("train", spec, compute="hf_jobs:t4-small")
    assert job.state == JobState.STARTING and job.handle["flavor"] == "t4-small"
    hf_id = job.handle["hf_job_id"]
    hf_hub.set_stage(hf_id, "RUNNING")
    hf_hub.add_logs(hf_id, [METRICS])
    running = JobManager().get(job.job_id)  # the poll brings the relayed events; the same refresh folds them
    assert running.state == JobState.RUNNING and running.metrics == {"loss": 1.5}
    hf_hub.add_logs(hf_id, ["done", RESULT])
    hf_hub.set_stage(hf_id, "COMPLETED")
    job = JobManager().get(job.job_id)
    assert job.state == JobState.SUCCEEDED and job.step == 1
    assert [line for line in JobManager().logs(job.job_id, limit=100).lines] == ["done"]
