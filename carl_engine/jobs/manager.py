"""The job manager: submit, follow, stop and resume jobs on any backend.

It joins three sources of truth and keeps the store in step with them:
- the store (`JobStore`): the row, its state and the history of transitions;
- the run directory: `events.jsonl` (progress, metrics, checkpoints) and `result.json` (verdict);
- the backend's `poll`: whether the process or remote job still lives.

`get` refreshes a job cheaply: it reads only the bytes of events.jsonl added since the row's
`events_cursor`, asks the backend once, and applies at most one transition. Any process may
refresh any job; when two race, the compare-and-set lets one win and the other re-reads.
Remote backends bring `events.jsonl`/`result.json` into the local run dir from `poll`, or
from `artifacts`, which the manager calls once when the backend reports a finished job whose
result.json is not here yet.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from carl_engine.backends import BACKENDS, NOT_SUPPORTED, Backend, LogPage, get_backend
from carl_engine.errors import (
    CarlError,
    IllegalTransitionError,
    InvalidSpecError,
    MissingCredentialsError,
    NotSupportedError,
)
from carl_engine.jobs.states import RESUMABLE, TERMINAL, JobState
from carl_engine.jobs.store import JOB_KINDS, Job, JobStore
from carl_engine.runs import RunDir

log = logging.getLogger(__name__)

#: kind -> the pydantic model its spec must satisfy ("module:Class"), imported when used.
SPEC_MODELS: dict[str, str] = {
    "train": "carl_engine.training.spec:TrainSpec",
    "eval": "carl_engine.evaluation.spec:EvalSpec",
    "bench": "carl_engine.bench.ab:ABSpec",
    "pipeline": "carl_engine.pipeline:PipelineSpec",
}
#: job kind -> the "kind" written to spec.json for `python -m carl_engine.run` (its HANDLERS)
RUN_KINDS: dict[str, str] = {"train": "train", "eval": "eval", "bench": "bench_ab", "pipeline": "pipeline"}

STALE_QUEUED_S = 120.0  # reconcile: a queued job with no handle this old lost its submitter

_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FLAVOR = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_GPU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,79}$")
_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_HOST = re.compile(rf"^(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*$")
_RAY = re.compile(r"^(auto|(?:(?:ray|https?)://)?[A-Za-z0-9.-]+(?::\d{1,5})?)$")

_FORMS = "local, ray[:address], hf_jobs:<flavor>, runpod:<gpu> or ssh:[user@]host[:port]"
_EXAMPLES = {"hf_jobs": "hf_jobs:a10g-large", "runpod": "runpod:NVIDIA A40", "ssh": "ssh:me@gpu-box"}
_RULES = {
    "ray": "ray takes 'ray', 'ray:auto' or 'ray:<host>:<port>' (or an http:// address)",
    "hf_jobs": "an HF Jobs flavor is lower-case letters, digits and '-' (e.g. a10g-large)",
    "runpod": "a RunPod GPU type is letters, digits, spaces, '.', '_' or '-' (e.g. 'NVIDIA A40')",
}


@dataclass(frozen=True)
class Compute:
    """A parsed compute target: `backend` and the part after `backend:`."""

    backend: str
    target: str | None = None

    def __str__(self) -> str:
        return self.backend if self.target is None else f"{self.backend}:{self.target}"


def parse_compute(text: str) -> Compute:
    """Parse `local`, `ray[:address]`, `hf_jobs:<flavor>`, `runpod:<gpu>` or `ssh:[user@]host[:port]`.

    Only the form is checked here (no network); the backend checks the rest when it submits.

    Raises:
        InvalidSpecError: field `compute`: unknown backend, missing or malformed target.
        NotSupportedError: a listed backend not built yet (tinker, prime).
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidSpecError("compute", f"must be {_FORMS}", got=text)
    name, sep, target = text.strip().partition(":")
    target = target.strip()
    if name in NOT_SUPPORTED:
        raise NotSupportedError(f"backend {name!r} is not supported yet: {NOT_SUPPORTED[name]}", backend=name)
    if name not in BACKENDS:
        raise InvalidSpecError("compute", f"unknown backend; use one of {', '.join(BACKENDS)}", got=text)
    if name == "local":
        if sep:
            raise InvalidSpecError("compute", "local takes no target; write 'local'", got=text)
        return Compute("local")
    if name == "ray":
        if sep and not _RAY.match(target):
            raise InvalidSpecError("compute", _RULES["ray"], got=text)
        return Compute("ray", target or None)
    if not target:
        example = _EXAMPLES.get(name, f"{name}:<target>")
        raise InvalidSpecError("compute", f"{name} needs a target, e.g. {example!r}", got=text)
    pattern = {"hf_jobs": _FLAVOR, "runpod": _GPU}.get(name)
    if pattern is not None and not pattern.match(target):
        raise InvalidSpecError("compute", _RULES[name], got=text)
    if name == "ssh":
        _check_ssh_target(target, text)
    return Compute(name, target)


def _check_ssh_target(target: str, text: str) -> None:
    user, at, hostport = target.rpartition("@")
    host, colon, port = hostport.partition(":")
    if at and not _USER.match(user):
        raise InvalidSpecError("compute", "ssh user must be a plain login name", got=text)
    if not _HOST.match(host):
        rule = "ssh needs [user@]host[:port] with a valid host name or IPv4 address"
        raise InvalidSpecError("compute", rule, got=text)
    if colon and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise InvalidSpecError("compute", "ssh port must be a number from 1 to 65535", got=text)


class JobManager:
    """Submit, follow, stop and resume jobs.

    Args:
        store: the job store; default a `JobStore()` at `paths.jobs_db()`.
        backends: backend instances by name, overriding the registry (tests, custom setups).
    """

    def __init__(self, store: JobStore | None = None, *, backends: Mapping[str, Backend] | None = None) -> None:
        self.store = store if store is not None else JobStore()
        self._backends: dict[str, Backend] = dict(backends or {})

    def backend(self, name: str) -> Backend:
        """The backend instance called `name` (created once per manager)."""
        if name not in self._backends:
            self._backends[name] = get_backend(name)
        return self._backends[name]

    # submit -----------------------------------------------------------------------------
    def submit(self, kind: str, spec: dict[str, Any], *, compute: str = "local") -> Job:
        """Validate, record and start a job.

        Everything is checked before anything is written: the kind, the spec (for "train" a
        TrainSpec, including `check()`), the compute target and the backend's credentials.

        Args:
            kind: "train", "eval", "bench" or "pipeline".
            spec: the job's spec as a dict.
            compute: where to run it (see `parse_compute`).

        Returns:
            The job, `starting` (or `failed` with the backend's error when submission failed).

        Raises:
            InvalidSpecError: a bad kind, spec field or compute target (nothing is written).
            MissingCredentialsError: the backend needs a variable that is not set.
            NotSupportedError: a backend that is listed but not built.
        """
        clean = validate_spec(kind, spec)
        where = parse_compute(compute)
        backend = self._checked_backend(where.backend)
        return self._start(kind, clean, where, backend, attempt=1, resumes=None, reason=f"submitted to {where}")

    def _checked_backend(self, name: str) -> Backend:
        backend = self.backend(name)
        missing = missing_credentials(backend)
        if missing:
            raise MissingCredentialsError(missing[0], f"the {name} backend")
        return backend

    def _start(
        self,
        kind: str,
        spec: dict[str, Any],
        where: Compute,
        backend: Backend,
        *,
        attempt: int,
        resumes: str | None,
        reason: str,
    ) -> Job:
        """Row (queued) -> run dir with spec.json -> backend.submit -> starting (or failed)."""
        job = self.store.create(
            kind=kind,
            spec=spec,
            backend=where.backend,
            target=where.target,
            run_dir_for=lambda job_id: RunDir.for_job(job_id).path,
            max_steps=_max_steps(spec),
            attempt=attempt,
            resumes=resumes,
            reason=reason,
        )
        run_dir = RunDir(job.run_dir)
        try:
            run_dir.create()
            run_dir.write_spec({**spec, "kind": RUN_KINDS[kind]})
            handle = backend.submit(job_id=job.job_id, run_dir=run_dir, target=where.target)
        except Exception as err:  # recorded on the row whatever it is; only the expected ones are swallowed
            failed = self._submission_failed(job.job_id, f"submission to {where} failed: {err}")
            if not isinstance(err, (CarlError, OSError)):
                raise
            log.warning("submitting job %s to %s failed: %s", job.job_id, where, err)
            return failed
        try:
            return self.store.transition(
                job.job_id, JobState.STARTING, reason=f"handed to {where.backend}", handle=handle
            )
        except IllegalTransitionError:  # stopped by another process while we were submitting
            self.store.update(job.job_id, handle=handle)
            backend.cancel(handle)
            return self.store.get(job.job_id)

    def _submission_failed(self, job_id: str, error: str) -> Job:
        try:
            return self.store.transition(job_id, JobState.FAILED, reason="submission failed", error=error,
                                         ended_at=time.time())  # fmt: skip
        except IllegalTransitionError:  # stopped meanwhile: keep `cancelled`, note why nothing runs
            self.store.update(job_id, error=error)
            return self.store.get(job_id)

    # read -------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        """The job, refreshed from its run directory and its backend.

        Raises:
            JobNotFoundError: no such job.
        """
        return self.refresh(self.store.get(job_id))

    def list(
        self,
        *,
        state: JobState | str | None = None,
        kind: str | None = None,
        since: datetime | float | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Stored jobs, newest first (unfinished ones refreshed). Filters as in `JobStore.list`."""
        jobs = self.store.list(state=state, kind=kind, since=since, limit=limit)
        return [job if job.state in TERMINAL else self.refresh(job) for job in jobs]

    def refresh(self, job: Job) -> Job:
        """Apply new events and the backend's view to `job`; returns the stored result."""
        job = self._apply_events(job)
        if job.state in TERMINAL or not job.handle:
            return job
        backend = self.backend(job.backend)
        try:
            polled = backend.poll(job.handle)
        except CarlError as err:  # a provider hiccup is not a verdict: keep the state, say why
            log.warning("polling job %s failed: %s", job.job_id, err)
            return job
        if job.backend != "local":  # remote backends bring new events home during poll
            job = self._apply_events(job)
        run_dir = RunDir(job.run_dir)
        result = run_dir.read_result()
        if result is None and polled.state in TERMINAL and job.backend != "local":
            self._fetch_artifacts(job, backend)
            result = run_dir.read_result()
            job = self._apply_events(job)
        try:
            if result is not None:
                return self._finish(job, result)
            if polled.state in TERMINAL:
                detail = polled.detail or f"{job.backend} reports {polled.state.value}"
                error = None if polled.state == JobState.SUCCEEDED else detail
                return self.store.transition(job.job_id, polled.state, reason=detail, error=error, ended_at=time.time())
            if job.state == JobState.STARTING and (polled.state == JobState.RUNNING or job.events_cursor > 0):
                return self.store.transition(
                    job.job_id, JobState.RUNNING, reason="the job process reported", started_at=time.time()
                )
        except IllegalTransitionError:  # another process moved it first; its view wins
            return self.store.get(job.job_id)
        return job

    def _finish(self, job: Job, result: Any) -> Job:
        """Move `job` to the verdict of its result.json, with the result's final numbers."""
        job = self._apply_events(job)
        fields: dict[str, Any] = {
            "metrics": {**job.metrics, **result.metrics},
            "step": max(job.step, result.step),
            "error": result.error,
            "ended_at": time.time(),
        }
        if result.max_steps is not None:
            fields["max_steps"] = result.max_steps
        if result.checkpoint:
            fields["checkpoint"] = result.checkpoint
        reason = f"result.json: {result.status}"
        return self.store.transition(job.job_id, JobState(result.status), reason=reason, **fields)

    def _apply_events(self, job: Job) -> Job:
        """Fold the events appended since `job.events_cursor` into the row (once, even if raced)."""
        run_dir = RunDir(job.run_dir)
        try:
            if run_dir.events_path.stat().st_size <= job.events_cursor:
                return job
        except FileNotFoundError:
            return job
        events, cursor = run_dir.read_events(job.events_cursor)
        if cursor == job.events_cursor:
            return job
        fields = fold_events(job, events)
        if not self.store.update(job.job_id, cursor_from=job.events_cursor, events_cursor=cursor, **fields):
            return self.store.get(job.job_id)  # another process applied them
        return job.model_copy(update={**fields, "events_cursor": cursor})

    def _fetch_artifacts(self, job: Job, backend: Backend) -> None:
        try:
            backend.artifacts(job.handle, dest=RunDir(job.run_dir).path)
        except (CarlError, OSError) as err:
            log.warning("fetching artifacts of job %s failed: %s", job.job_id, err)

    # logs -------------------------------------------------------------------------------
    def logs(self, job_id: str, *, cursor: int = 0, limit: int = 200, stream: str = "log") -> LogPage:
        """A page of the job's log lines ("log": train.log) or events ("events": events.jsonl lines).

        Args:
            job_id: the job.
            cursor: from a previous page's `next_cursor` (0 for the start).
            limit: at most this many lines (1..10,000).
            stream: "log" or "events".

        Raises:
            JobNotFoundError: no such job.
            InvalidSpecError: a bad stream, cursor or limit.
        """
        if stream not in ("log", "events"):
            raise InvalidSpecError("stream", "must be 'log' or 'events'", got=stream)
        if not 1 <= limit <= 10_000:
            raise InvalidSpecError("limit", "must be between 1 and 10,000", got=limit)
        if cursor < 0:
            raise InvalidSpecError("cursor", "must be 0 or a next_cursor returned before", got=cursor)
        job = self.store.get(job_id)
        run_dir = RunDir(job.run_dir)
        if stream == "events":
            events, next_cursor = run_dir.read_events(cursor, limit)
            return LogPage([json.dumps(e) for e in events], next_cursor)
        if not job.handle:
            return LogPage([], cursor)
        return self.backend(job.backend).logs(job.handle, cursor=cursor, limit=limit)

    # stop and resume --------------------------------------------------------------------
    def stop(self, job_id: str, reason: str = "") -> Job:
        """Cancel a job: `cancelled` is recorded first, then the backend is told. Idempotent.

        The job's checkpoints stay on disk and usable (`resume` starts from the latest).

        Raises:
            JobNotFoundError: no such job.
        """
        job = self.store.get(job_id)
        if job.state in TERMINAL:
            return job
        why = f"stopped: {reason}" if reason else "stopped on request"
        try:
            job = self.store.transition(job_id, JobState.CANCELLED, reason=why, ended_at=time.time())
        except IllegalTransitionError:
            return self.get(job_id)  # it ended on its own meanwhile
        if job.handle:
            try:
                self.backend(job.backend).cancel(job.handle)
            except CarlError as err:
                log.warning("cancelling job %s on %s failed: %s", job_id, job.backend, err)
                self.store.update(job_id, error=f"cancel sent but the backend answered: {err}")
                return self.store.get(job_id)
        return job

    def resume(self, job_id: str) -> Job:
        """Start a new attempt of a failed, lost or cancelled train job from its latest checkpoint.

        The new job has `attempt + 1`, `resumes = job_id` and `spec.resume_from` set to the
        latest complete checkpoint of the old run (or of the run it resumed); the global step
        continues from there. Without any checkpoint it starts from scratch and its first
        event says so.

        Raises:
            JobNotFoundError: no such job.
            IllegalTransitionError: the job is still queued, starting or running.
            InvalidSpecError: the job is not a train (or pipeline) job.
        """
        old = self.get(job_id)
        if old.state not in RESUMABLE:
            raise IllegalTransitionError(
                f"job {job_id} is {old.state.value}; only failed, lost or cancelled jobs resume",
                hint=f"carl_stop {job_id} first" if old.state not in TERMINAL else None,
                job_id=job_id, current=old.state.value, target="resume",
            )  # fmt: skip
        if old.kind == "pipeline":  # the new attempt reuses the stages the old run directory completed
            spec = validate_spec("pipeline", {**old.spec, "resume_dir": str(old.run_dir)})
            return self._start("pipeline", spec, Compute(old.backend, old.target), self._checked_backend(old.backend),
                               attempt=old.attempt + 1, resumes=job_id, reason=f"resumes pipeline {job_id}: "
                               "completed stages are reused, a cut-off stage continues from its checkpoint")
        if old.kind != "train":
            raise InvalidSpecError("job_id", f"only train jobs resume from a checkpoint; {job_id} is a {old.kind} job")
        checkpoint = RunDir(old.run_dir).latest_checkpoint()
        start_from = str(checkpoint) if checkpoint else old.spec.get("resume_from")
        spec = validate_spec("train", {**old.spec, "resume_from": start_from})
        where = Compute(old.backend, old.target)
        backend = self._checked_backend(old.backend)
        reason = f"resumes {job_id} from {start_from}"
        if not start_from:
            reason = f"resumes {job_id}: no checkpoint, starting from scratch"
        return self._start("train", spec, where, backend, attempt=old.attempt + 1, resumes=job_id, reason=reason)

    # start-up ---------------------------------------------------------------------------
    def reconcile(self) -> list[Job]:
        """Bring every unfinished job up to date (server start-up). Returns them, refreshed.

        A queued job with no handle older than STALE_QUEUED_S lost the process that was
        submitting it and is marked failed.
        """
        unfinished = self.store.list(state=[JobState.QUEUED, JobState.STARTING, JobState.RUNNING], limit=10_000)
        now = time.time()
        out = []
        for job in unfinished:
            if job.state == JobState.QUEUED and not job.handle and now - job.created_at.timestamp() > STALE_QUEUED_S:
                try:
                    job = self.store.transition(
                        job.job_id, JobState.FAILED, reason="reconcile: submission interrupted",
                        error="the process submitting this job ended before the backend took it", ended_at=now,
                    )  # fmt: skip
                except IllegalTransitionError:
                    job = self.store.get(job.job_id)
            else:
                job = self.refresh(job)
            out.append(job)
        return out


def missing_credentials(backend: Backend) -> list[str]:
    """The names of the backend's `credentials` variables that are unset or empty (never their values)."""
    return [variable for variable in getattr(backend, "credentials", ()) if not os.environ.get(variable)]


# specs and events -------------------------------------------------------------------------
def validate_spec(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Check `spec` against its kind's model; returns it normalised (defaults filled in, JSON).

    Raises:
        InvalidSpecError: unknown kind (field `kind`) or a spec field that breaks a rule.
        NotSupportedError: the kind's spec module is not installed.
    """
    if kind not in JOB_KINDS:
        raise InvalidSpecError("kind", f"must be one of {', '.join(JOB_KINDS)}", got=kind)
    if not isinstance(spec, dict):
        raise InvalidSpecError("spec", "must be a JSON object", got=type(spec).__name__)
    data = dict(spec)
    if data.pop("kind", kind) not in (kind, RUN_KINDS[kind]):
        raise InvalidSpecError("spec.kind", f"must match the job kind {kind!r}", got=spec.get("kind"))
    module_name, _, class_name = SPEC_MODELS[kind].partition(":")
    try:
        model_cls: type[BaseModel] = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise NotSupportedError(f"jobs of kind {kind!r} are not available: {err}", kind=kind) from err
    build = getattr(model_cls, "parse", None) or getattr(model_cls, "from_dict", None) or model_cls.model_validate
    try:
        model = build(data)
    except ValidationError as err:
        raise _spec_error(err) from None
    check = getattr(model, "check", None)
    if callable(check):
        check()
    return json.loads(model.model_dump_json())


def _spec_error(err: ValidationError) -> InvalidSpecError:
    first = err.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidSpecError):
        return cause
    loc = ".".join(str(part) for part in first["loc"]) or "spec"
    return InvalidSpecError(loc, str(first["msg"]).removeprefix("Value error, "), got=first.get("input"))


def fold_events(job: Job, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The row fields that `events` (in order) change: step, max_steps, metrics, checkpoint, stage."""
    fields: dict[str, Any] = {}
    metrics = dict(job.metrics)
    for event in events:
        kind, step = event.get("kind"), event.get("step")
        if isinstance(step, int) and step > fields.get("step", job.step):
            fields["step"] = step
        if kind == "metrics" and isinstance(event.get("metrics"), dict):
            metrics.update({k: float(v) for k, v in event["metrics"].items() if isinstance(v, (int, float))})
        elif kind == "progress" and isinstance(event.get("max_steps"), int):
            fields["max_steps"] = event["max_steps"]
        elif kind == "checkpoint" and event.get("path"):
            fields["checkpoint"] = str(event["path"])
        elif kind == "stage" and event.get("stage"):
            fields["stage"] = str(event["stage"])
    if metrics != job.metrics:
        fields["metrics"] = metrics
    return fields


def _max_steps(spec: dict[str, Any]) -> int | None:
    value = spec.get("max_steps")
    return value if isinstance(value, int) and value > 0 else None
