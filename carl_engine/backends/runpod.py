"""The `runpod` backend: a RunPod GPU pod per job, the bundle run there over SSH.

`compute="runpod:<gpu>"`, `<gpu>` a catalogue name (`a40`, `h100-sxm`, … see compute.py) or a
RunPod GPU type id (`NVIDIA A40`). Needs `RUNPOD_API_KEY` (used for the API calls only,
never sent to the pod) and an SSH key (`$CARL_SSH_KEY`, else ~/.ssh/id_ed25519, id_ecdsa,
id_rsa): its public half goes to the pod as `PUBLIC_KEY`, which RunPod's images install
for root's SSH login.

Life of a job (RunPod has no job concept and no logs API, so the pod is tracked over SSH
with the markers of remote_ssh.py, exactly as the ssh backend does):
1. `submit` creates the pod (`create_pod`: image `$CARL_RUNPOD_IMAGE` or `DEFAULT_IMAGE`,
   one GPU, `start_ssh`, port 22/tcp public, `$CARL_RUNPOD_CLOUD` ALL|SECURE|COMMUNITY) and
   returns at once: pods take minutes to boot.
2. Each `poll` reads the pod (`get_pod`). While it has no public SSH port the job is
   `starting`. The first poll that reaches SSH uploads the bundle and starts it
   (`$CARL_RUNPOD_RUNNER`, default: install uv with pip, then `uv run`); later polls
   mirror events.jsonl and result.json into the local run dir, as ssh does.
3. When the job ends (or `cancel` stopped it), the remote run dir with its latest complete
   checkpoint is copied into the local run dir, then the pod is terminated — so a pod never
   outlives its job by more than one poll. A resume uploads its checkpoint with the bundle.
Host keys of fresh pods are unknown, so they are not checked (trust on first use).

State mapping: pod without an SSH port → starting; then the ssh mapping (starting,
running, exited → result.json verdict or exit code, cancelled, lost); a pod that is
EXITED/TERMINATED or gone before its job said anything → lost.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

from carl_engine.backends import remote_ssh
from carl_engine.backends.base import Handle, LogPage, PollResult
from carl_engine.backends.ssh import poll_remote, start_remote
from carl_engine.errors import BackendError, InvalidSpecError, MissingCredentialsError
from carl_engine.jobs.states import JobState
from carl_engine.runs import RunDir

DEFAULT_IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
DEFAULT_RUNNER = "python3 -m pip install -q uv && uv run"
CONTAINER_DISK_GB = 50
CANCEL_WAIT_S = 20  # how long cancel waits for the job to write its verdict before the pod goes


def gpu_type_id(target: str | None) -> str:
    """The RunPod GPU type id for a catalogue name or an id.

    Raises:
        InvalidSpecError: field `compute`, when `target` is empty.
    """
    from carl_engine.compute import catalogue

    wanted = (target or "").strip()
    if not wanted:
        raise InvalidSpecError("compute", "runpod needs a GPU, e.g. runpod:a40 or 'runpod:NVIDIA A40'", got=target)
    for flavor in catalogue("runpod").flavors:
        if wanted.lower() in (flavor.name.lower(), (flavor.gpu_type_id or "").lower()):
            return flavor.gpu_type_id or wanted
    return wanted  # another RunPod GPU id: create_pod checks it with RunPod


def _sdk():
    """The runpod module, its API key set from the environment."""
    key = os.environ.get("RUNPOD_API_KEY")
    if not key:
        raise MissingCredentialsError("RUNPOD_API_KEY", "the runpod backend")
    import runpod

    runpod.api_key = key
    return runpod


def _ssh_endpoint(pod: dict[str, Any] | None) -> tuple[str, int] | None:
    """(public ip, public port) of the pod's port 22, once RunPod reports one."""
    ports = ((pod or {}).get("runtime") or {}).get("ports") or []
    for port in ports:
        if port.get("privatePort") == 22 and port.get("isIpPublic") and port.get("ip") and port.get("publicPort"):
            return port["ip"], int(port["publicPort"])
    return None


class RunPodBackend:
    """Runs each job on its own RunPod pod."""

    name: ClassVar[str] = "runpod"
    credentials: ClassVar[tuple[str, ...]] = ("RUNPOD_API_KEY",)

    def submit(self, *, job_id: str, run_dir: RunDir, target: str | None) -> Handle:
        """Create the pod; the bundle starts on the first poll that reaches it over SSH.

        Raises:
            InvalidSpecError: no GPU given, or RunPod does not know it (field `compute`).
            MissingCredentialsError: RUNPOD_API_KEY or an SSH key is missing.
            BackendError: RunPod refused the pod.
        """
        gpu = gpu_type_id(target)
        runpod = _sdk()
        key = remote_ssh.private_key_path()
        if key is None or not key.is_file():
            raise MissingCredentialsError("CARL_SSH_KEY", "the runpod backend (an SSH key to reach the pod)")
        public = remote_ssh.public_key_line(key)
        image = os.environ.get("CARL_RUNPOD_IMAGE") or DEFAULT_IMAGE
        try:
            pod = runpod.create_pod(
                name=f"carl-{job_id}", image_name=image, gpu_type_id=gpu,
                cloud_type=os.environ.get("CARL_RUNPOD_CLOUD") or "ALL", support_public_ip=True, start_ssh=True,
                gpu_count=1, container_disk_in_gb=CONTAINER_DISK_GB, ports="22/tcp", env={"PUBLIC_KEY": public},
            )
        except ValueError as exc:
            raise InvalidSpecError("compute", f"RunPod does not offer this GPU ({exc})", got=target) from None
        except runpod.error.QueryError as exc:
            raise BackendError(f"RunPod refused the pod: {exc}") from None
        return {
            "pod_id": pod["id"], "gpu": gpu, "image": image, "job_id": job_id, "run_dir": str(run_dir.path),
            "remote_dir": f".carl/jobs/{job_id}",
            "runner": os.environ.get("CARL_RUNPOD_RUNNER") or DEFAULT_RUNNER,
        }

    # tracking ---------------------------------------------------------------------------
    def _pod(self, handle: Handle) -> dict[str, Any] | None:
        runpod = _sdk()
        try:
            return runpod.get_pod(handle["pod_id"])
        except runpod.error.QueryError as exc:
            raise BackendError(f"RunPod could not read pod {handle['pod_id']}: {exc}") from None

    @staticmethod
    def _target(endpoint: tuple[str, int]) -> remote_ssh.SSHTarget:
        return remote_ssh.SSHTarget("root", endpoint[0], endpoint[1])

    def poll(self, handle: Handle) -> PollResult:
        local = RunDir(handle["run_dir"])
        pod = self._pod(handle)
        status = (pod or {}).get("desiredStatus")
        endpoint = _ssh_endpoint(pod)
        if pod is None or status in ("EXITED", "TERMINATED"):
            result = local.read_result()
            if result is not None:  # the job ended and we already took its files
                return PollResult(JobState(result.status), None, f"RunPod pod {status or 'gone'}; {result.status}")
            if pod is not None and status != "TERMINATED":
                self._terminate(handle)
            return PollResult(JobState.LOST, None, f"RunPod pod {status or 'gone'} before the job ended")
        if endpoint is None:
            return PollResult(JobState.STARTING, None, f"RunPod pod {status}; waiting for its SSH port")
        return self._poll_over_ssh(handle, self._target(endpoint), local)

    def _poll_over_ssh(self, handle: Handle, target: remote_ssh.SSHTarget, local: RunDir) -> PollResult:
        options = remote_ssh.connect_options(known_hosts="none")
        try:
            seen = remote_ssh.status(target, handle["remote_dir"], options=options)
            if seen.state == "absent":
                start_remote(target, job_id=handle["job_id"], run_dir=local, runner=handle["runner"], options=options)
                return PollResult(JobState.STARTING, None, f"bundle started on pod {handle['pod_id']}")
        except BackendError as exc:  # sshd may come up after RunPod reports the port
            return PollResult(JobState.STARTING, None, f"waiting for SSH on the pod ({exc.message})")
        polled = poll_remote(target, handle["remote_dir"], local, options)  # brings the run dir home at the end
        if polled.state.is_terminal():
            self._terminate(handle)
        return polled

    def _terminate(self, handle: Handle) -> None:
        try:
            _sdk().terminate_pod(handle["pod_id"])
        except Exception as exc:  # noqa: BLE001 - the SDK raises bare errors; say which pod is left
            raise BackendError(f"could not terminate RunPod pod {handle['pod_id']}: {type(exc).__name__}",
                               hint="terminate it in the RunPod console") from None

    def logs(self, handle: Handle, *, cursor: int = 0, limit: int = 200) -> LogPage:
        """Lines of the job's out.log on the pod from byte offset `cursor` (none while it boots or once it is gone)."""
        endpoint = _ssh_endpoint(self._pod(handle))
        if endpoint is None:
            return LogPage(lines=[], next_cursor=cursor, extra={"note": "the pod is not reachable"})
        try:
            lines, nxt = remote_ssh.read_log(self._target(endpoint), f"{handle['remote_dir']}/out.log", cursor=cursor,
                                             limit=limit, options=remote_ssh.connect_options(known_hosts="none"))
        except BackendError as exc:
            return LogPage(lines=[], next_cursor=cursor, extra={"note": exc.message})
        return LogPage(lines=lines, next_cursor=nxt)

    def cancel(self, handle: Handle) -> None:
        """Stop the job on the pod, wait up to CANCEL_WAIT_S for its verdict, take its files, terminate the pod."""
        pod = self._pod(handle)
        if pod is None or pod.get("desiredStatus") == "TERMINATED":
            return
        endpoint = _ssh_endpoint(pod)
        if endpoint is not None:
            target, options = self._target(endpoint), remote_ssh.connect_options(known_hosts="none")
            try:
                remote_ssh.cancel(target, handle["remote_dir"], options=options)
                deadline = time.monotonic() + CANCEL_WAIT_S
                while remote_ssh.status(target, handle["remote_dir"], options=options).state == "running":
                    if time.monotonic() > deadline:
                        break
                    time.sleep(1)
                remote_ssh.fetch_run(target, f"{handle['remote_dir']}/run", Path(handle["run_dir"]), options=options)
            except BackendError:
                pass  # an unreachable pod is terminated all the same
        self._terminate(handle)

    def artifacts(self, handle: Handle, *, dest: Path) -> list[Path]:
        """The run dir from the pod (while it lives), else what was taken when the job ended."""
        import shutil

        dest = Path(dest)
        endpoint = _ssh_endpoint(self._pod(handle))
        if endpoint is not None:
            return remote_ssh.fetch(self._target(endpoint), f"{handle['remote_dir']}/run", dest,
                                    options=remote_ssh.connect_options(known_hosts="none"))
        local = Path(handle["run_dir"])
        if local.resolve() != dest.resolve() and local.is_dir():
            shutil.copytree(local, dest, dirs_exist_ok=True)
        return sorted(p for p in dest.rglob("*") if p.is_file())


__all__ = ["RunPodBackend", "gpu_type_id"]
