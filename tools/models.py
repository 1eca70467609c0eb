"""Response pieces shared by several tools: a job's status in the one job vocabulary.

`JobStatus` is what carl_status, carl_stop and carl_train answer about a job, and what the
CLI's `--json` prints: `job_id`, `state`, `step`, `max_steps`, `checkpoint` (latest),
`metrics` (latest), `error` — the same names as the job store's rows.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import Field

from carl_studio.tools.base import Response

JobStateName = Literal["queued", "starting", "running", "succeeded", "failed", "cancelled", "lost"]
JobKind = Literal["train", "eval", "bench", "pipeline"]
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "lost"})

# How long a caller should wait before asking again, by state (seconds), when nothing better is known.
_WAIT_BEFORE_FIRST_STEP_S = 10
_MIN_WAIT_S, _MAX_WAIT_S = 5, 600


class JobStatus(Response):
    """One job as the store and its run directory know it now."""

    job_id: str = Field(description="The job's id; pass it to carl_status, carl_logs and carl_stop.")
    kind: JobKind = Field(description="What the job does: train, eval, bench or pipeline.")
    state: JobStateName = Field(
        description="queued -> starting -> running -> succeeded | failed | cancelled | lost. "
        "The last four are final; a failed, lost or cancelled train job can be resumed (carl_train resume=<job_id>)."
    )
    step: int = Field(ge=0, description="Global training step reached so far.")
    max_steps: int | None = Field(None, ge=0, description="Steps the job will run in all, when known.")
    progress: float | None = Field(None, ge=0.0, le=1.0, description="step / max_steps, when max_steps is known.")
    metrics: dict[str, float | None] = Field(
        default_factory=dict,
        description="Latest logged metrics: e.g. reward, carl/multiscale, carl/cloud, carl/discontinuity, "
        "carl/phi_mean, carl/kuramoto_r, gate/carl_weight, gate/state, loss. null = not a number.",
    )
    metrics_omitted: int = Field(
        0, ge=0, description="How many more latest metrics carl_status(metrics='all') would show."
    )
    checkpoint: str | None = Field(None, description="Latest complete checkpoint folder, usable to resume or evaluate.")
    error: str | None = Field(None, description="Why the job failed or was lost (no traceback).")
    backend: str = Field(description="Where it runs: local, ray, hf_jobs, runpod or ssh.")
    target: str | None = Field(None, description="The backend's target: flavor, GPU type, host or Ray address.")
    run_dir: str | None = Field(None, description="The job's run directory: spec.json, events.jsonl, train.log, checkpoints/.")
    stage: str | None = Field(None, description="For a pipeline job: the stage it is in (e.g. sft, grpo, eval).")
    attempt: int = Field(1, ge=1, description="1 for a new job; n for the n-th resume of the same run.")
    resumes: str | None = Field(None, description="The job_id this job resumes, if it is a resume.")
    created_at: str | None = Field(None, description="When the job was submitted (ISO 8601, UTC).")
    started_at: str | None = Field(None, description="When the job began running (ISO 8601, UTC).")
    ended_at: str | None = Field(None, description="When the job reached a final state (ISO 8601, UTC).")
    poll_after_s: int | None = Field(
        None,
        ge=0,
        description="Seconds after which asking again is worth it (about a tenth of the remaining run); "
        "null once the job is final.",
    )


#: the metrics carl_status shows unless all are asked for (a pipeline logs ~100 of them)
MAIN_METRICS = frozenset({
    "reward", "loss", "entropy", "mean_token_accuracy", "completions/mean_length", "grad_norm",
    "eval/accuracy", "eval/phi_mean", "eval/diversity", "eval/carl_composite",
})  # fmt: skip


def is_main_metric(name: str) -> bool:
    """Whether `name` is one of the metrics worth an agent's attention at every poll."""
    if name in MAIN_METRICS or name.startswith(("carl/", "gate/")):
        return True
    return name.startswith("rewards/") and name.endswith("/mean")


def job_status(job: Any, *, now: float | None = None, all_metrics: bool = True) -> JobStatus:
    """The `JobStatus` of an engine `Job` (carl_engine.jobs); `all_metrics=False` keeps the main ones."""
    state = getattr(job.state, "value", job.state)
    step = int(job.step or 0)
    max_steps = int(job.max_steps) if job.max_steps else None
    started = _epoch(job.started_at)
    return JobStatus(
        job_id=job.job_id,
        kind=job.kind,
        state=state,
        step=step,
        max_steps=max_steps,
        progress=min(1.0, step / max_steps) if max_steps else None,
        metrics=(metrics := {
            name: _finite(value) for name, value in (job.metrics or {}).items() if all_metrics or is_main_metric(name)
        }),
        metrics_omitted=len(job.metrics or {}) - len(metrics),
        checkpoint=str(job.checkpoint) if job.checkpoint else None,
        error=job.error,
        backend=job.backend,
        target=getattr(job, "target", None),
        run_dir=str(job.run_dir) if getattr(job, "run_dir", None) else None,
        stage=getattr(job, "stage", None),
        attempt=int(getattr(job, "attempt", 1) or 1),
        resumes=getattr(job, "resumes", None),
        created_at=_iso(job.created_at),
        started_at=_iso(job.started_at),
        ended_at=_iso(job.ended_at),
        poll_after_s=poll_after(state, step, max_steps, started, now=now),
    )


def poll_after(state: str, step: int, max_steps: int | None, started: float | None, *, now: float | None = None) -> int | None:
    """Seconds until asking about a job again is worth it; None once it is final.

    A running job with known speed: the time of about a tenth of its remaining steps,
    clamped to [5 s, 10 min]. Before the first step: 10 s.

    >>> poll_after("running", 10, 110, 0.0, now=100.0)   # 10 s a step, 100 steps left -> 100 s
    100
    >>> poll_after("succeeded", 5, 5, 0.0) is None
    True
    """
    if state in TERMINAL_STATES:
        return None
    if state != "running" or step <= 0 or started is None:
        return _WAIT_BEFORE_FIRST_STEP_S
    elapsed = max(0.0, (now if now is not None else time.time()) - started)
    seconds_per_step = elapsed / step
    remaining = max(1, (max_steps or step * 2) - step)
    wait = seconds_per_step * max(1.0, remaining / 10)
    return int(min(_MAX_WAIT_S, max(_MIN_WAIT_S, round(wait))))


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def _iso(value: Any) -> str | None:
    seconds = _epoch(value)
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds")
