"""The `hf_jobs` backend: Hugging Face Jobs through huggingface_hub's Jobs API.

`compute="hf_jobs:<flavor>"`, the flavor one of the catalogue's (carl_engine/compute.py:
cpu-basic, t4-small, a10g-large, a100-large, h200, …). Needs `HF_TOKEN`: it authenticates
our calls and goes to the job as a *secret* (encrypted by the Hub, never in the job's env,
our handle, logs or errors). The namespace is `$CARL_HF_NAMESPACE`, else the token's owner.

What runs there: the bundle (bundle.py) in the uv image that `run_uv_job` uses
(`ghcr.io/astral-sh/uv:python3.12-bookworm`, or `$CARL_HF_JOBS_IMAGE`). The bundle travels
base64-encoded in the job's environment (`CARL_BUNDLE_B64`, a few KB; the spec is not a
secret) and the container runs `uv run /tmp/carl-job.py /tmp/carl-run`. We do not let
`run_uv_job` upload the script: for a local file it creates a Xet-backed bucket and mounts
it, which adds write access to a bucket to what the token needs; the submission here is one
`POST /api/jobs/<namespace>`.

Timeout: `$CARL_HF_JOBS_TIMEOUT` (seconds, or with s/m/h/d), default **6h** — never the
Hub's 30-minute default, which cuts training runs off.

Artifacts: the job relays its events and its result through the log (`@@carl-event`,
`@@carl-result` lines, see bundle.py); `poll` and `artifacts` rebuild events.jsonl and
result.json in the local run dir from `fetch_job_logs`. With `$CARL_HF_ARTIFACTS_REPO`
(a model repo id) the job also uploads its whole run dir, checkpoints included, to
`<repo>/runs/<job-id>/` when it ends (`hf upload`, private repo, using the HF_TOKEN secret),
and `artifacts` downloads that folder into the local run dir.

State mapping (`JobStage`): SCHEDULING → starting; RUNNING → running; COMPLETED and ERROR →
the verdict in result.json when one was relayed, else succeeded / failed; CANCELED →
cancelled; DELETED → lost. Logs: the cursor counts log lines from the job's start.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import ClassVar

from carl_engine.backends.base import Handle, LogPage, PollResult
from carl_engine.backends.bundle import EVENT_MARK, RESULT_MARK, render_bundle, replay_relay
from carl_engine.errors import BackendError, InvalidSpecError, MissingCredentialsError
from carl_engine.jobs.states import JobState
from carl_engine.runs import RunDir

DEFAULT_IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"
DEFAULT_TIMEOUT = "6h"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_STAGES = {"SCHEDULING": JobState.STARTING, "RUNNING": JobState.RUNNING, "CANCELED": JobState.CANCELLED,
           "DELETED": JobState.LOST}
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
BOOT = (
    'printf %s "$CARL_BUNDLE_B64" | base64 -d > /tmp/carl-job.py && '
    "uv run /tmp/carl-job.py /tmp/carl-run; status=$?; "
    'if [ -n "$CARL_HF_ARTIFACTS_REPO" ]; then '
    'uvx --from huggingface_hub hf upload "$CARL_HF_ARTIFACTS_REPO" /tmp/carl-run "runs/$CARL_JOB_ID" '
    "--repo-type model --private || echo 'carl: uploading the run dir failed'; fi; exit $status"
)


def flavor_names() -> list[str]:
    """HF Jobs flavors from the shipped catalogue (no network)."""
    from carl_engine.compute import catalogue

    return [flavor.name for flavor in catalogue("hf_jobs").flavors]


def check_flavor(target: str | None) -> str:
    """`target` if it names a known flavor.

    Raises:
        InvalidSpecError: field `compute`, naming the known flavors.
    """
    names = flavor_names()
    if target not in names:
        raise InvalidSpecError("compute", f"unknown HF Jobs flavor; use one of {', '.join(names)}", got=target)
    return target


def timeout_seconds(text: str | None = None) -> int:
    """The job timeout in seconds from `text` or `$CARL_HF_JOBS_TIMEOUT` (default 6h).

    Raises:
        InvalidSpecError: field `CARL_HF_JOBS_TIMEOUT`, when it is not a positive number with s/m/h/d.
    """
    raw = (text or os.environ.get("CARL_HF_JOBS_TIMEOUT") or DEFAULT_TIMEOUT).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", raw)
    seconds = int(float(match[1]) * _UNITS[match[2] or "s"]) if match else 0
    if seconds <= 0:
        raise InvalidSpecError("CARL_HF_JOBS_TIMEOUT", "must be a positive duration like 7200, 90m or 6h", got=raw)
    return seconds


def _token() -> str:
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise MissingCredentialsError("HF_TOKEN", "the hf_jobs backend")
    return token


def _api(token: str):
    from huggingface_hub import HfApi

    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)


def _hub_error(action: str, exc: Exception) -> BackendError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return BackendError(f"HF Jobs {action} failed: {first}")


class HFJobsBackend:
    """Runs jobs on Hugging Face Jobs."""

    name: ClassVar[str] = "hf_jobs"
    credentials: ClassVar[tuple[str, ...]] = ("HF_TOKEN",)

    def submit(self, *, job_id: str, run_dir: RunDir, target: str | None) -> Handle:
        """Start the bundle for `run_dir`'s spec on flavor `target`.

        Raises:
            InvalidSpecError: unknown flavor (field `compute`), bad timeout or artifacts repo.
            MissingCredentialsError: HF_TOKEN is not set.
            BackendError: the Hub refused the job.
        """
        from huggingface_hub.errors import HfHubHTTPError

        flavor, timeout = check_flavor(target), timeout_seconds()
        token = _token()
        repo = os.environ.get("CARL_HF_ARTIFACTS_REPO") or ""
        if repo and not _REPO.match(repo):
            raise InvalidSpecError("CARL_HF_ARTIFACTS_REPO", "must be a repo id like me/carl-runs", got=repo)
        script = render_bundle(run_dir.read_spec(), name=job_id)
        env = {
            "CARL_BUNDLE_B64": base64.b64encode(script.encode()).decode(),
            "CARL_RELAY_EVENTS": "1",
            "CARL_JOB_ID": job_id,
            "CARL_HF_ARTIFACTS_REPO": repo,
        }
        api = _api(token)
        try:
            namespace = os.environ.get("CARL_HF_NAMESPACE") or api.whoami()["name"]
            info = api.run_job(
                image=os.environ.get("CARL_HF_JOBS_IMAGE") or DEFAULT_IMAGE,
                command=["bash", "-c", BOOT],
                env=env,
                secrets={"HF_TOKEN": token},
                flavor=flavor,
                timeout=timeout,
                labels={"carl-job-id": job_id},
                name=f"carl-{job_id}",
                namespace=namespace,
            )
        except HfHubHTTPError as exc:
            raise _hub_error("submit", exc) from None
        return {"job_id": job_id, "hf_job_id": info.id, "namespace": namespace, "flavor": flavor, "timeout_s": timeout,
                "url": info.url, "artifacts_repo": repo or None, "run_dir": str(run_dir.path)}

    def _lines(self, handle: Handle) -> list[str]:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            return list(_api(_token()).fetch_job_logs(job_id=handle["hf_job_id"], namespace=handle["namespace"]))
        except HfHubHTTPError as exc:
            raise _hub_error("logs", exc) from None

    def _stage(self, handle: Handle) -> tuple[str, str]:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            info = _api(_token()).inspect_job(job_id=handle["hf_job_id"], namespace=handle["namespace"])
        except HfHubHTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return "DELETED", "HF has no such job"
            raise _hub_error("inspect", exc) from None
        return str(getattr(info.status.stage, "value", info.status.stage)), info.status.message or ""

    def poll(self, handle: Handle) -> PollResult:
        """The job's stage, mapped; rebuilds events.jsonl and result.json locally from its log."""
        stage, message = self._stage(handle)
        detail = f"HF job {stage}" + (f": {message}" if message else "")
        local = RunDir(handle["run_dir"])
        if stage not in ("SCHEDULING", "DELETED"):
            replay_relay(self._lines(handle), local)
        if stage in _STAGES:
            return PollResult(_STAGES[stage], None, detail)
        result = local.read_result()
        if result is not None:
            return PollResult(JobState(result.status), None, f"{detail}; {result.status}")
        return PollResult(JobState.SUCCEEDED if stage == "COMPLETED" else JobState.FAILED, None, detail)

    def logs(self, handle: Handle, *, cursor: int = 0, limit: int = 200) -> LogPage:
        """Log lines from line `cursor` (relay lines are counted but not shown)."""
        lines = self._lines(handle)
        page = lines[cursor : cursor + limit]
        shown = [line for line in page if not line.startswith((EVENT_MARK, RESULT_MARK))]
        return LogPage(lines=shown, next_cursor=cursor + len(page))

    def cancel(self, handle: Handle) -> None:
        """`cancel_job` unless the job has ended already."""
        from huggingface_hub.errors import HfHubHTTPError

        stage, _ = self._stage(handle)
        if stage in ("COMPLETED", "CANCELED", "ERROR", "DELETED"):
            return
        try:
            _api(_token()).cancel_job(job_id=handle["hf_job_id"], namespace=handle["namespace"])
        except HfHubHTTPError as exc:
            raise _hub_error("cancel", exc) from None

    def artifacts(self, handle: Handle, *, dest: Path) -> list[Path]:
        """Rebuild events.jsonl and result.json in `dest` from the log; with an artifacts repo,
        download the run dir the job uploaded there (checkpoints included) into `dest` as well."""
        run = RunDir(dest)
        replay_relay(self._lines(handle), run)
        if handle.get("artifacts_repo"):
            download_run(handle["artifacts_repo"], handle["job_id"], run.path)
        return sorted(p for p in run.path.rglob("*") if p.is_file())


def download_run(repo: str, job_id: str, dest: Path) -> None:
    """Copy `runs/<job_id>/` of the model repo `repo` into `dest` (files already there are replaced).

    Raises:
        BackendError: the Hub refused or the folder is not there.
    """
    import shutil
    import tempfile

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    with tempfile.TemporaryDirectory(prefix="carl-hf-") as tmp:
        try:
            snapshot_download(repo, allow_patterns=[f"runs/{job_id}/**"], local_dir=tmp, token=_token(),
                              endpoint=os.environ.get("HF_ENDPOINT") or None)
        except HfHubHTTPError as exc:
            raise _hub_error(f"download of {repo}", exc) from None
        folder = Path(tmp) / "runs" / job_id
        if not folder.is_dir():
            raise BackendError(f"{repo} has no runs/{job_id}/ (did the job's upload fail? see its log)")
        shutil.copytree(folder, dest, dirs_exist_ok=True)
