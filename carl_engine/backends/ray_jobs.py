"""The `ray` backend: Ray Jobs through `JobSubmissionClient` (needs the `[ray]` extra).

`compute="ray"` uses `$RAY_ADDRESS`, else `http://127.0.0.1:8265`; `compute="ray:<address>"`
names the dashboard (`host:port` or `http(s)://host:port`). The Ray submission id is our
job id, so a fresh client reattaches by it. A cluster with token authentication needs
`$RAY_AUTH_MODE=token` and `$RAY_AUTH_TOKEN` (read by Ray's client, never by us).

What ships where (two modes):
- shared (the default for a loopback address, or `CARL_RAY_SHARED_FS=1`): the cluster sees
  our filesystem, so the entrypoint is `python -m carl_engine.run <run_dir>` and the job
  writes the local run dir itself — events, checkpoints and result.json appear as it runs.
- ship (the default for any other address, or `CARL_RAY_SHARED_FS=0`): the bundle goes up
  as the job's `runtime_env.working_dir` and runs as `python carl-job.py run` with the event
  relay on; each poll rebuilds events.jsonl and result.json in the local run dir from the
  job's log. Checkpoints stay in the working dir on the cluster (use shared storage and
  the shared mode to keep them). Either way the cluster's Python must have carl-studio
  installed (the usual Ray practice: deps live in the cluster's image).
`CARL_RAY_GPUS` (default 0) reserves GPUs for the entrypoint.

State mapping: PENDING → starting; RUNNING → running; STOPPED → cancelled; SUCCEEDED and
FAILED → the verdict in result.json when there is one, else succeeded / failed; an unknown
submission id (the cluster was restarted: Ray jobs die with their cluster) → lost.
Logs: `get_job_logs` text, the cursor a byte offset into it.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

from carl_engine.backends.base import Handle, LogPage, PollResult
from carl_engine.backends.bundle import render_bundle, replay_relay
from carl_engine.errors import BackendError, InvalidSpecError
from carl_engine.jobs.states import JobState
from carl_engine.runs import RunDir, RunResult

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_STATES = {"PENDING": JobState.STARTING, "RUNNING": JobState.RUNNING, "STOPPED": JobState.CANCELLED}


def resolve_address(target: str | None) -> str:
    """The dashboard URL (where the job API lives) for `target`.

    `None` or `auto` -> `$RAY_ADDRESS`, else the default; `host` -> `http://host:8265`;
    `ray://host[:port]` (a Ray Client address) -> the dashboard on that host, `http://host:8265`.

    Raises:
        InvalidSpecError: field `compute`, when the address is not [http(s)://]host[:port].
    """
    raw = (target or "").strip()
    if raw in ("", "auto"):
        raw = os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    if raw.startswith("ray://"):
        raw = "http://" + raw[len("ray://") :].rsplit(":", 1)[0]
    url = raw if "://" in raw else f"http://{raw}"
    parsed = urlparse(url)
    try:
        port = parsed.port or 8265
    except ValueError:
        port = None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None or parsed.path not in ("", "/"):
        raise InvalidSpecError("compute", "ray address must be [http(s)://]host[:port]", got=raw, hint="e.g. ray:10.0.0.5:8265")
    return f"{parsed.scheme}://{parsed.hostname}:{port}"


def shared_filesystem(address: str) -> bool:
    """Whether jobs on `address` write our run dir directly (see the module docstring)."""
    forced = os.environ.get("CARL_RAY_SHARED_FS")
    if forced in ("0", "1"):
        return forced == "1"
    return urlparse(address).hostname in _LOOPBACK


def _client(address: str):
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise BackendError("the ray backend needs Ray's job SDK", hint="pip install 'carl-studio[ray]'") from None
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, OSError) as exc:
        raise BackendError(f"cannot reach the Ray dashboard at {address}: {_first_line(exc)}", address=address) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _not_found(exc: RuntimeError) -> bool:
    return "status code 404" in str(exc)


class RayBackend:
    """Runs jobs as Ray Jobs on a Ray cluster's dashboard address."""

    name: ClassVar[str] = "ray"
    credentials: ClassVar[tuple[str, ...]] = ()  # RAY_AUTH_TOKEN only for clusters with token auth

    def submit(self, *, job_id: str, run_dir: RunDir, target: str | None) -> Handle:
        """Submit `python -m carl_engine.run` (shared) or the bundle (ship) with submission id = `job_id`.

        Raises:
            InvalidSpecError: a malformed address (field `compute`).
            BackendError: the cluster is unreachable or refused the job (e.g. the id exists).
        """
        address = resolve_address(target)
        shared = shared_filesystem(address)
        try:
            gpus = float(os.environ.get("CARL_RAY_GPUS") or 0)
        except ValueError:
            raise InvalidSpecError("CARL_RAY_GPUS", "must be a number of GPUs", got=os.environ["CARL_RAY_GPUS"]) from None
        kwargs: dict[str, Any] = {"submission_id": job_id, "metadata": {"carl_job_id": job_id}}
        if gpus:
            kwargs["entrypoint_num_gpus"] = gpus
        client = _client(address)
        if shared:
            entrypoint = f"python -m carl_engine.run {shlex.quote(str(run_dir.path.resolve()))}"
            return self._submit(client, address, entrypoint, kwargs, job_id, run_dir, "shared")
        with tempfile.TemporaryDirectory(prefix="carl-ray-") as folder:
            (Path(folder) / "carl-job.py").write_text(render_bundle(run_dir.read_spec(), name=job_id))
            kwargs["runtime_env"] = {"working_dir": folder, "env_vars": {"CARL_RELAY_EVENTS": "1"}}
            return self._submit(client, address, "python carl-job.py run", kwargs, job_id, run_dir, "ship")

    @staticmethod
    def _submit(client, address: str, entrypoint: str, kwargs: dict[str, Any], job_id: str, run_dir: RunDir,
                mode: str) -> Handle:
        try:
            client.submit_job(entrypoint=entrypoint, **kwargs)
        except RuntimeError as exc:
            raise BackendError(f"Ray refused job {job_id}: {_first_line(exc)}", address=address) from None
        return {"address": address, "submission_id": job_id, "mode": mode, "run_dir": str(run_dir.path)}

    def poll(self, handle: Handle) -> PollResult:
        client = _client(handle["address"])
        try:
            status = str(client.get_job_status(handle["submission_id"]))
        except RuntimeError as exc:
            if _not_found(exc):
                return PollResult(JobState.LOST, None, "Ray has no such job (was the cluster restarted?)")
            raise BackendError(f"Ray status failed: {_first_line(exc)}", address=handle["address"]) from None
        local = RunDir(handle["run_dir"])
        if handle.get("mode") == "ship":
            replay_relay(self._log_text(client, handle).splitlines(), local)
        if status in _STATES:
            return PollResult(_STATES[status], None, f"Ray job {status}")
        result: RunResult | None = local.read_result()
        if result is not None:
            return PollResult(JobState(result.status), None, f"Ray job {status}; {result.status}")
        return PollResult(JobState.SUCCEEDED if status == "SUCCEEDED" else JobState.FAILED, None, f"Ray job {status}")

    @staticmethod
    def _log_text(client, handle: Handle) -> str:
        try:
            return client.get_job_logs(handle["submission_id"])
        except RuntimeError as exc:
            if _not_found(exc):
                return ""
            raise BackendError(f"Ray logs failed: {_first_line(exc)}", address=handle["address"]) from None

    def logs(self, handle: Handle, *, cursor: int = 0, limit: int = 200) -> LogPage:
        """Whole lines of the job's Ray log from byte offset `cursor`."""
        data = self._log_text(_client(handle["address"]), handle).encode()[cursor:]
        lines, offset = [], cursor
        for raw in data.splitlines(keepends=True):
            if len(lines) >= limit or not raw.endswith(b"\n"):
                break
            offset += len(raw)
            lines.append(raw.rstrip(b"\r\n").decode(errors="replace"))
        return LogPage(lines=lines, next_cursor=offset)

    def cancel(self, handle: Handle) -> None:
        """`stop_job`; nothing for a finished or unknown job."""
        client = _client(handle["address"])
        try:
            client.stop_job(handle["submission_id"])
        except RuntimeError as exc:
            if not _not_found(exc):
                raise BackendError(f"Ray stop failed: {_first_line(exc)}", address=handle["address"]) from None

    def artifacts(self, handle: Handle, *, dest: Path) -> list[Path]:
        """The run's files in `dest`: copied from the shared run dir, or rebuilt from the log (ship mode)."""
        import shutil

        dest = Path(dest)
        local = RunDir(handle["run_dir"])
        if handle.get("mode") == "ship":
            replay_relay(self._log_text(_client(handle["address"]), handle).splitlines(), local)
        if local.path.resolve() != dest.resolve() and local.path.is_dir():
            shutil.copytree(local.path, dest, dirs_exist_ok=True)
        return sorted(p for p in dest.rglob("*") if p.is_file())


__all__ = ["RayBackend", "resolve_address", "shared_filesystem"]
