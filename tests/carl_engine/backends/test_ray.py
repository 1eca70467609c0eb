"""The ray backend against a real one-machine Ray cluster on 127.0.0.1.

The test cluster runs without token auth: Ray reads RAY_AUTH_MODE once, when it is imported,
so a client in this process could not switch to token mode per test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import ray.job_submission  # noqa: F401  (the dev extra installs ray[default]: CI must never skip these)

from carl_engine.backends import get_backend
from carl_engine.backends.ray_jobs import RayBackend, resolve_address, shared_filesystem
from carl_engine.errors import BackendError, InvalidSpecError
from carl_engine.jobs.states import JobState
from carl_engine.runs import RunDir
from tests.polling import poll

pytestmark = pytest.mark.slow

HEAD = """
import sys, ray
ctx = ray.init(num_cpus=1, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=int(sys.argv[2]),
               _temp_dir=sys.argv[1], configure_logging=False, log_to_driver=False)
print("READY", flush=True)
sys.stdin.read()  # until the test closes our stdin
ray.shutdown()
"""
TINY = {"kind": "train", "method": "sft", "model": "carl-tiny", "task": "arithmetic", "max_steps": 1, "seed": 0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(models_cache):
    """A Ray head with its dashboard on 127.0.0.1; yields its address. Stopped at the end."""
    port = free_port()
    env = {
        **os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `python` is ours
        "CARL_MODELS_DIR": models_cache,
    }
    temp = tempfile.mkdtemp(prefix="rh5", dir="/tmp")  # Ray's socket paths must stay short
    head = subprocess.Popen(
        [sys.executable, "-c", HEAD, temp, str(port)], env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:
        assert head.stdout.readline().strip() == "READY", "the Ray head did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def ray(ray_head, monkeypatch):
    monkeypatch.delenv("CARL_RAY_SHARED_FS", raising=False)
    return ray_head




def new_run(tmp_path: Path, spec: dict) -> RunDir:
    run = RunDir(tmp_path / "run").create()
    run.write_spec(spec)
    return run


def test_addresses_resolve_to_the_dashboard(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(None) == "http://127.0.0.1:8265"
    assert resolve_address("auto") == "http://127.0.0.1:8265"
    assert resolve_address("10.0.0.5") == "http://10.0.0.5:8265"
    assert resolve_address("ray://head:10001") == "http://head:8265"
    assert resolve_address("https://ray.example.org:443") == "https://ray.example.org:443"
    monkeypatch.setenv("RAY_ADDRESS", "10.1.1.1:9000")
    assert resolve_address(None) == "http://10.1.1.1:9000"
    with pytest.raises(InvalidSpecError) as err:
        resolve_address("ftp://x:1")
    assert err.value.field == "compute"
    assert shared_filesystem("http://127.0.0.1:8265") and not shared_filesystem("http://10.0.0.5:8265")


def test_a_failing_spec_fails_and_a_fresh_client_reattaches_by_submission_id(ray, tmp_path):
    run = new_run(tmp_path, {"kind": "no-such-kind"})
    handle = RayBackend().submit(job_id="ray-fail", run_dir=run, target=ray)
    assert handle == {"address": ray, "submission_id": "ray-fail", "mode": "shared", "run_dir": str(run.path)}
    polled = poll(lambda: get_backend("ray").poll(handle), lambda p: p.state.is_terminal())
    assert polled.state == JobState.FAILED
    page = get_backend("ray").logs(handle, cursor=0, limit=1000)
    assert page.lines and get_backend("ray").logs(handle, cursor=page.next_cursor).lines == []
    get_backend("ray").cancel(handle)  # a finished job: nothing happens
    with pytest.raises(BackendError, match="Ray refused job ray-fail"):  # the submission id is taken
        RayBackend().submit(job_id="ray-fail", run_dir=run, target=ray)


def test_an_unknown_submission_id_is_lost(ray):
    handle = {"address": ray, "submission_id": "never-submitted", "mode": "shared", "run_dir": "/nonexistent"}
    assert RayBackend().poll(handle).state == JobState.LOST
    RayBackend().cancel(handle)


def test_an_unreachable_cluster_is_a_backend_error(tmp_path):
    with pytest.raises(BackendError, match="cannot reach the Ray dashboard"):
        RayBackend().submit(job_id="x", run_dir=new_run(tmp_path, TINY), target=f"127.0.0.1:{free_port()}")


def test_stopping_a_running_job_cancels_it(ray, tmp_path):
    run = new_run(tmp_path, {**TINY, "max_steps": 100_000})
    handle = RayBackend().submit(job_id="ray-stop", run_dir=run, target=ray)
    assert poll(lambda: RayBackend().poll(handle), lambda p: p.state != JobState.STARTING).state == JobState.RUNNING
    assert poll(lambda: run.iter_events(), bool, timeout_s=120), "training never started"
    RayBackend().cancel(handle)
    polled = poll(lambda: RayBackend().poll(handle), lambda p: p.state.is_terminal(), timeout_s=60)
    assert polled.state == JobState.CANCELLED
    assert run.read_result().status == "cancelled"  # run.py got SIGTERM and said so


def test_a_tiny_training_job_shipped_as_the_bundle_succeeds_and_its_events_come_back_from_the_log(
    ray, tmp_path, monkeypatch
):
    monkeypatch.setenv("CARL_RAY_SHARED_FS", "0")
    run = new_run(tmp_path, TINY)
    handle = RayBackend().submit(job_id="ray-ship", run_dir=run, target=ray)
    assert handle["mode"] == "ship"
    polled = poll(lambda: RayBackend().poll(handle), lambda p: p.state.is_terminal(), timeout_s=180)
    assert polled.state == JobState.SUCCEEDED, RayBackend().logs(handle, limit=1000).lines[-20:]
    assert run.read_result().step == 1 and run.iter_events("metrics")
    assert RayBackend().poll(handle).state == JobState.SUCCEEDED  # a fresh client reattaches by submission id
    assert (tmp_path / "copy" / "result.json") in RayBackend().artifacts(handle, dest=tmp_path / "copy")
