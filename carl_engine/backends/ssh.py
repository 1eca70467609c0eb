"""The `ssh` backend: run the job bundle on any machine you can SSH into.

`compute="ssh:user@host[:port]"`. The bundle (bundle.py) is uploaded to
`.carl/jobs/<job-id>/carl-job.py` under the login directory and started detached with
`$CARL_SSH_RUNNER carl-job.py run` (default runner `uv run`, which installs CARL Studio from
the bundle's inline metadata; set `CARL_SSH_RUNNER=python3` on a machine where
carl-studio is installed already). Tracking uses the markers of remote_ssh.py.

Keys: `$CARL_SSH_KEY`, else asyncssh's defaults (~/.ssh/id_ed25519, id_rsa, …); host keys
are checked against `$CARL_SSH_KNOWN_HOSTS`, else ~/.ssh/known_hosts.

State mapping: starting → starting; running → running; exited → the verdict in
run/result.json (else exit 0 → succeeded, non-zero → failed); cancelled → cancelled;
lost (no pid alive and no exit code) and absent (no job directory) → lost.

Each poll mirrors run/events.jsonl and run/result.json into the local run dir, so progress
and metrics read locally; the poll that sees the job end brings home the run dir with its
latest complete checkpoint (what `resume` needs); `artifacts` copies everything. A resumed
job's `resume_from` checkpoint is uploaded next to the bundle and the spec points at it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from carl_engine.backends import remote_ssh
from carl_engine.backends.base import Handle, LogPage, PollResult
from carl_engine.backends.bundle import render_bundle
from carl_engine.jobs.states import JobState
from carl_engine.runs import RunDir

BUNDLE_NAME = "carl-job.py"
DEFAULT_RUNNER = "uv run"
_MIRRORED = ("events.jsonl", "result.json")


def remote_dir_for(job_id: str) -> str:
    """Where the job lives on the remote machine, relative to the login directory."""
    return f".carl/jobs/{job_id}"


def job_command(runner: str) -> str:
    """The shell command that runs the bundle in the remote job directory."""
    return f"{runner} {BUNDLE_NAME} run"


def start_remote(
    target: remote_ssh.SSHTarget, *, job_id: str, run_dir: RunDir, runner: str, options: dict[str, Any]
) -> str:
    """Upload the bundle for `run_dir`'s spec and start it on `target`; returns the remote dir."""
    remote_dir = remote_dir_for(job_id)
    spec = run_dir.read_spec()
    resume = spec.get("resume_from")
    if resume and Path(resume).is_dir():  # a resume: the checkpoint travels with the job
        where = f"{remote_dir}/resume/{Path(resume).name}"
        spec = {**spec, "resume_from": remote_ssh.upload_dir(target, Path(resume), where, options=options)}
    script = render_bundle(spec, name=job_id)
    remote_ssh.launch(target, remote_dir, files={BUNDLE_NAME: script}, command=job_command(runner), options=options)
    return remote_dir


def poll_remote(target: remote_ssh.SSHTarget, remote_dir: str, local_run: RunDir | None,
                options: dict[str, Any]) -> PollResult:
    """Our state for the job in `remote_dir`; mirrors events and result into `local_run` first."""
    seen = remote_ssh.status(target, remote_dir, options=options)  # first: an exited job has written its result
    if local_run is not None and seen.state in ("exited", "cancelled", "lost"):
        remote_ssh.fetch_run(target, f"{remote_dir}/run", local_run.path, options=options)
    elif local_run is not None:
        remote_ssh.fetch(target, f"{remote_dir}/run", local_run.path, names=_MIRRORED, options=options)
    if seen.state == "exited":
        result = local_run.read_result() if local_run is not None else None
        if result is not None:
            return PollResult(JobState(result.status), seen.exit_code, f"exited {seen.exit_code}; {result.status}")
        state = JobState.SUCCEEDED if seen.exit_code == 0 else JobState.FAILED
        return PollResult(state, seen.exit_code, f"exited {seen.exit_code} without result.json")
    mapping = {
        "starting": JobState.STARTING,
        "running": JobState.RUNNING,
        "cancelled": JobState.CANCELLED,
        "lost": JobState.LOST,
        "absent": JobState.LOST,
    }
    detail = "no job directory on the remote host" if seen.state == "absent" else f"remote job {seen.state}"
    return PollResult(mapping[seen.state], None, detail)


class SSHBackend:
    """Runs jobs on `user@host[:port]` over SSH."""

    name: ClassVar[str] = "ssh"
    credentials: ClassVar[tuple[str, ...]] = ()  # key from $CARL_SSH_KEY or ~/.ssh, not a required variable

    def submit(self, *, job_id: str, run_dir: RunDir, target: str | None) -> Handle:
        """Upload the bundle to `target` and start it there.

        Raises:
            InvalidSpecError: `target` is not user@host[:port] (field `compute`).
            BackendError: SSH failed or the remote shell refused.
        """
        parsed = remote_ssh.SSHTarget.parse(target)
        runner = os.environ.get("CARL_SSH_RUNNER") or DEFAULT_RUNNER
        options = remote_ssh.connect_options()
        remote_dir = start_remote(parsed, job_id=job_id, run_dir=run_dir, runner=runner, options=options)
        return {"target": str(parsed), "remote_dir": remote_dir, "run_dir": str(run_dir.path), "runner": runner}

    def poll(self, handle: Handle) -> PollResult:
        target = remote_ssh.SSHTarget.parse(handle["target"])
        local = RunDir(handle["run_dir"]) if handle.get("run_dir") else None
        return poll_remote(target, handle["remote_dir"], local, remote_ssh.connect_options())

    def logs(self, handle: Handle, *, cursor: int = 0, limit: int = 200) -> LogPage:
        """Lines of the remote out.log from byte offset `cursor`."""
        target = remote_ssh.SSHTarget.parse(handle["target"])
        lines, nxt = remote_ssh.read_log(
            target, f"{handle['remote_dir']}/out.log", cursor=cursor, limit=limit, options=remote_ssh.connect_options()
        )
        return LogPage(lines=lines, next_cursor=nxt)

    def cancel(self, handle: Handle) -> None:
        target = remote_ssh.SSHTarget.parse(handle["target"])
        remote_ssh.cancel(target, handle["remote_dir"], options=remote_ssh.connect_options())

    def artifacts(self, handle: Handle, *, dest: Path) -> list[Path]:
        """Copy the remote run dir (events, result, checkpoints) into `dest` over SFTP."""
        target = remote_ssh.SSHTarget.parse(handle["target"])
        return remote_ssh.fetch(target, f"{handle['remote_dir']}/run", Path(dest), options=remote_ssh.connect_options())
