"""Contract tests: the runpod SDK against a local GraphQL stand-in, and the pod reached over real SSH."""

from __future__ import annotations

import json
import sys

import pytest
from standins.runpod_api import runpod_api  # noqa: F401  (fixture)
from standins.ssh_server import ssh_env, ssh_server  # noqa: F401  (fixtures)

from carl_engine.backends import get_backend, remote_ssh
from carl_engine.backends.runpod import RunPodBackend, gpu_type_id
from carl_engine.errors import InvalidSpecError, MissingCredentialsError
from carl_engine.jobs.states import JobState
from carl_engine.runs import RunDir
from tests.polling import poll

TINY = {"kind": "train", "method": "sft", "model": "carl-tiny", "task": "arithmetic", "max_steps": 1, "seed": 0}


@pytest.fixture
def pod_env(runpod_api, ssh_env, monkeypatch):
    """RunPod stand-in + SSH server; the pod's runner is this Python (carl-studio installed)."""
    monkeypatch.setenv("CARL_RUNPOD_RUNNER", f"OMP_NUM_THREADS=1 {sys.executable}")
    return runpod_api, ssh_env


def new_run(tmp_path, spec) -> RunDir:
    run = RunDir(tmp_path / "run").create()
    run.write_spec(spec)
    return run


def poll_until(handle, done, timeout_s=60.0):
    return poll(lambda: RunPodBackend().poll(handle), done, timeout_s=timeout_s, every_s=0.3)


def test_submit_creates_an_ssh_pod_with_our_public_key_and_no_secrets(pod_env, tmp_path):
    api, ssh = pod_env
    handle = RunPodBackend().submit(job_id="rp1", run_dir=new_run(tmp_path, TINY), target="a40")
    (created,) = api.created
    assert created["gpuTypeId"] == "NVIDIA A40" and created["gpuCount"] == 1
    assert created["startSsh"] and created["ports"] == "22/tcp" and created["name"] == "carl-rp1"
    assert created["env"] == {"PUBLIC_KEY": remote_ssh.public_key_line(ssh.client_key_path)}
    assert not any(api.api_key in query for query in api.queries)
    assert api.api_key not in json.dumps(handle) and handle["pod_id"] == "pod001"


def test_a_missing_api_key_names_the_variable_and_calls_nothing(pod_env, tmp_path, monkeypatch):
    api, _ = pod_env
    monkeypatch.delenv("RUNPOD_API_KEY")
    with pytest.raises(MissingCredentialsError, match="RUNPOD_API_KEY"):
        get_backend("runpod").submit(job_id="x", run_dir=new_run(tmp_path, TINY), target="a40")
    assert api.queries == [] and RunPodBackend.credentials == ("RUNPOD_API_KEY",)


def test_an_unknown_gpu_is_an_invalid_spec_naming_compute(pod_env, tmp_path):
    api, _ = pod_env
    with pytest.raises(InvalidSpecError) as err:
        RunPodBackend().submit(job_id="x", run_dir=new_run(tmp_path, TINY), target="NVIDIA Imaginary 9000")
    assert err.value.field == "compute" and api.created == []
    assert gpu_type_id("h100-sxm") == "NVIDIA H100 80GB HBM3" and gpu_type_id("NVIDIA A40") == "NVIDIA A40"


def test_cancelling_a_booting_pod_terminates_it(pod_env, tmp_path):
    api, _ = pod_env
    handle = RunPodBackend().submit(job_id="rpboot", run_dir=new_run(tmp_path, TINY), target="a40")
    assert RunPodBackend().poll(handle).state == JobState.STARTING  # no SSH port yet
    RunPodBackend().cancel(handle)
    assert api.pods[handle["pod_id"]]["desiredStatus"] == "TERMINATED"
    assert RunPodBackend().poll(handle).state == JobState.LOST  # gone without a verdict
    RunPodBackend().cancel(handle)  # idempotent


def test_cancelling_a_running_job_records_it_kills_it_and_terminates_the_pod(pod_env, tmp_path, monkeypatch):
    api, ssh = pod_env
    monkeypatch.setenv("CARL_RUNPOD_RUNNER", "sleep 60; true")  # a job that just runs
    handle = RunPodBackend().submit(job_id="rpstop", run_dir=new_run(tmp_path, TINY), target="a40")
    api.boot(handle["pod_id"], ssh.port)
    assert poll_until(handle, lambda p: p.state == JobState.RUNNING).state == JobState.RUNNING
    RunPodBackend().cancel(handle)
    assert (ssh.home / ".carl/jobs/rpstop/cancelled").exists()
    assert api.pods[handle["pod_id"]]["desiredStatus"] == "TERMINATED"


def test_a_failing_job_ends_failed_its_run_dir_comes_back_and_the_pod_is_terminated(pod_env, tmp_path):
    api, ssh = pod_env
    run = new_run(tmp_path, {"kind": "no-such-kind"})
    handle = RunPodBackend().submit(job_id="rpfail", run_dir=run, target="rtx4090")
    api.boot(handle["pod_id"], ssh.port)
    polled = poll_until(handle, lambda p: p.state.is_terminal())
    assert polled.state == JobState.FAILED
    assert run.read_result().status == "failed" and "kind" in run.read_result().error
    assert api.pods[handle["pod_id"]]["desiredStatus"] == "TERMINATED"
    assert RunPodBackend().poll(handle).state == JobState.FAILED  # from the files taken before terminating
    assert RunPodBackend().logs(handle).extra["note"] == "the pod is not reachable"


@pytest.mark.slow
def test_a_tiny_training_job_succeeds_on_the_pod(pod_env, tmp_path):
    api, ssh = pod_env
    run = new_run(tmp_path, TINY)
    handle = RunPodBackend().submit(job_id="rptiny", run_dir=run, target="a40")
    api.boot(handle["pod_id"], ssh.port)
    assert poll_until(handle, lambda p: p.state != JobState.STARTING).state in (JobState.RUNNING, JobState.SUCCEEDED)
    assert RunPodBackend().logs(handle, limit=1000).next_cursor >= 0
    polled = poll_until(handle, lambda p: p.state.is_terminal(), timeout_s=240)
    assert polled.state == JobState.SUCCEEDED
    assert run.read_result().step == 1 and run.iter_events("metrics")
    assert api.pods[handle["pod_id"]]["desiredStatus"] == "TERMINATED"
