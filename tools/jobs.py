"""carl_status, carl_logs and carl_stop: follow and end jobs that carl_train started.

All three answer at once; none of them waits for a job. A running job's status carries
`poll_after_s`, the time after which asking again is worth it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from carl_studio.tools.base import JobId, Request, Response, ToolContext, ToolSpec
from carl_studio.tools.models import JobKind, JobStateName, JobStatus, job_status

MAX_LIST = 500
MAX_LOG_LINES = 1000


# carl_status --------------------------------------------------------------------------------
class StatusRequest(Request):
    job_id: JobId | None = Field(None, description="One job to report on. Leave out to list jobs instead.")
    state: JobStateName | None = Field(None, description="When listing: only jobs in this state.")
    kind: JobKind | None = Field(None, description="When listing: only jobs of this kind.")
    since: datetime | None = Field(
        None, description="When listing: only jobs created at or after this time (ISO 8601, e.g. 2026-11-25T17:00:00Z)."
    )
    limit: int = Field(50, ge=1, le=MAX_LIST, description=f"When listing: at most this many jobs, newest first (1-{MAX_LIST}).")
    metrics: Literal["main", "all"] = Field(
        "main",
        description="main: reward, loss, entropy, carl/*, gate/*, task rewards' means and eval results; "
        "all: every latest metric (TRL's clip ratios, runtimes, per-stage copies…).",
    )


class StatusResponse(Response):
    job: JobStatus | None = Field(None, description="The job asked for by job_id (null when listing).")
    jobs: list[JobStatus] = Field(
        default_factory=list, description="When listing: the matching jobs, newest first. When job_id was given: empty."
    )


def carl_status(request: StatusRequest, ctx: ToolContext) -> StatusResponse:
    """One job's state, progress, latest metrics and checkpoint, or a filtered list of jobs.

    Raises:
        JobNotFoundError: `job_id` names no job.
    """
    everything = request.metrics == "all"
    if request.job_id is not None:
        return StatusResponse(job=job_status(ctx.jobs.get(request.job_id), all_metrics=everything))
    found = ctx.jobs.list(state=request.state, kind=request.kind, since=request.since, limit=request.limit)
    return StatusResponse(jobs=[job_status(job, all_metrics=everything) for job in found])


# carl_logs ----------------------------------------------------------------------------------
class LogsRequest(Request):
    job_id: JobId
    stream: Literal["log", "events"] = Field(
        "log",
        description="log: the job process's output (train.log). events: its metric/gate/checkpoint events, "
        "one JSON object a line.",
    )
    cursor: int = Field(
        0, ge=0, le=2**53, description="Where to continue from: 0 for the start, else the next_cursor of the last call."
    )
    limit: int = Field(200, ge=1, le=MAX_LOG_LINES, description=f"At most this many lines (1-{MAX_LOG_LINES}).")


class LogsResponse(Response):
    job_id: str = Field(description="The job the lines belong to.")
    stream: Literal["log", "events"] = Field(description="Which stream the lines come from.")
    lines: list[str] = Field(description="The lines after `cursor`, oldest first, without trailing newlines.")
    next_cursor: int = Field(ge=0, description="Pass back as `cursor` to read what comes after these lines.")
    state: JobStateName = Field(description="The job's state now.")
    more: bool = Field(
        description="True when more lines may follow: a full page was returned, or the job is still going."
    )


def carl_logs(request: LogsRequest, ctx: ToolContext) -> LogsResponse:
    """A page of a job's log lines or metric events after a cursor.

    Raises:
        JobNotFoundError: `job_id` names no job.
    """
    page = ctx.jobs.logs(request.job_id, cursor=request.cursor, limit=request.limit, stream=request.stream)
    job = ctx.jobs.get(request.job_id)
    state = getattr(job.state, "value", job.state)
    lines = [line.rstrip("\n") for line in page.lines]
    finished = state in {"succeeded", "failed", "cancelled", "lost"}
    return LogsResponse(
        job_id=request.job_id,
        stream=request.stream,
        lines=lines,
        next_cursor=page.next_cursor,
        state=state,
        more=len(lines) >= request.limit or not finished,
    )


# carl_stop ----------------------------------------------------------------------------------
class StopRequest(Request):
    job_id: JobId
    reason: str = Field(
        "", max_length=500, description="Why it is stopped; recorded with the job's state change (optional)."
    )


class StopResponse(Response):
    job: JobStatus = Field(description="The job after the stop: cancelled, or the final state it had already reached.")
    already_ended: bool = Field(description="True when the job had already ended; stopping it again changed nothing.")


def carl_stop(request: StopRequest, ctx: ToolContext) -> StopResponse:
    """Cancel a job; idempotent. Its last checkpoint stays usable (resume or evaluate it).

    Raises:
        JobNotFoundError: `job_id` names no job.
    """
    before = ctx.jobs.get(request.job_id)
    already_ended = getattr(before.state, "value", before.state) in {"succeeded", "failed", "cancelled", "lost"}
    after = ctx.jobs.stop(request.job_id, reason=request.reason or "stopped through carl_stop")
    return StopResponse(job=job_status(after), already_ended=already_ended)


STATUS = ToolSpec(
    name="carl_status",
    title="Job status",
    description="State, step / max_steps, latest metrics (reward, CARL components, gate state), latest checkpoint "
    "and error of one job (job_id), or a list of jobs filtered by state, kind and creation time. "
    "A running job's poll_after_s says when asking again is worth it.",
    request=StatusRequest,
    response=StatusResponse,
    fn=carl_status,
    read_only=True,
    idempotent=True,
    open_world=True,
)

LOGS = ToolSpec(
    name="carl_logs",
    title="Job logs",
    description="A page of a job's log lines (stream=log) or metric events (stream=events) after `cursor`; "
    "pass next_cursor back to read on.",
    request=LogsRequest,
    response=LogsResponse,
    fn=carl_logs,
    read_only=True,
    idempotent=True,
    open_world=True,
)

STOP = ToolSpec(
    name="carl_stop",
    title="Stop a job",
    description="Cancel a job. Idempotent: stopping an ended job changes nothing. The last checkpoint is kept, "
    "so a cancelled train job can be resumed with carl_train resume=<job_id>.",
    request=StopRequest,
    response=StopResponse,
    fn=carl_stop,
    destructive=True,
    idempotent=True,
    open_world=True,
)
