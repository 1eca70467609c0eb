"""`carl status`, `carl logs`, `carl stop`: the job tools (carl_status, carl_logs, carl_stop)."""

from __future__ import annotations

import time
from collections import deque
from typing import Annotated

import typer

from carl_studio.cli.app import guarded, run_tool
from carl_studio.cli.render import err, follow, job_detail, job_table, out, print_json, state_text
from carl_studio.tools.models import TERMINAL_STATES

PAGE = 1000


def status(
    job_id: Annotated[str | None, typer.Argument(help="One job; leave out to list jobs.")] = None,
    state: Annotated[str | None, typer.Option(help="List only jobs in this state.")] = None,
    kind: Annotated[str | None, typer.Option(help="List only jobs of this kind (train, eval, bench, pipeline).")] = None,
    since: Annotated[str | None, typer.Option(help="List only jobs created since (ISO 8601).")] = None,
    limit: Annotated[int, typer.Option(help="List at most this many jobs.")] = 20,
    watch: Annotated[bool, typer.Option("--watch", help="Follow one job with a progress bar until it ends.")] = False,
    all_metrics: Annotated[bool, typer.Option("--all-metrics", help="Show every latest metric, not the main ones.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
) -> None:
    """A job's state, step, latest metrics and checkpoint, or the list of jobs."""
    answer = run_tool("carl_status", {"job_id": job_id, "state": state, "kind": kind, "since": since,
                                      "limit": limit if job_id is None else None,
                                      "metrics": "all" if all_metrics else "main"})
    if job_id is not None and watch:
        from carl_studio.tools.base import ToolContext

        ctx = ToolContext()
        final = guarded(lambda: follow(lambda: run_tool("carl_status", {"job_id": job_id}, ctx).job,
                                       show=not json_output))
        answer = answer.model_copy(update={"job": final})
    if json_output:
        print_json(answer)
    elif answer.job is not None:
        out.print(job_detail(answer.job))
    elif answer.jobs:
        out.print(job_table(answer.jobs))
    else:
        out.print("no jobs yet: start one with carl train")
    if watch and answer.job is not None and answer.job.state != "succeeded":
        raise typer.Exit(1)


def logs(
    job_id: Annotated[str, typer.Argument(help="The job.")],
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the job ends.")] = False,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines (of what exists now).", min=1)] = None,
    events: Annotated[bool, typer.Option("--events", help="The metric events (JSON lines) instead of the log.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the logs pages as JSON (one object a page).")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --follow.", min=0.1, max=60)] = 1.0,
) -> None:
    """A job's log lines (its train.log, or its events with --events)."""
    stream = "events" if events else "log"
    cursor, kept = 0, deque(maxlen=tail) if tail else None
    while True:  # everything that exists now
        page = run_tool("carl_logs", {"job_id": job_id, "cursor": cursor, "limit": PAGE, "stream": stream})
        cursor = page.next_cursor
        if json_output and kept is None:
            print_json(page)
        elif kept is not None:
            kept.extend(page.lines)
        else:
            _emit(page.lines)
        if len(page.lines) < PAGE:
            break
    if kept is not None:
        if json_output:
            print_json(page.model_copy(update={"lines": list(kept)}))
        else:
            _emit(kept)
    ended = False  # read once more after the job is seen ended: its last lines may land just before
    while follow_:
        if len(page.lines) < PAGE:
            if ended:
                break
            ended = page.state in TERMINAL_STATES
            if not ended:
                time.sleep(interval)
        page = run_tool("carl_logs", {"job_id": job_id, "cursor": cursor, "limit": PAGE, "stream": stream})
        cursor = page.next_cursor
        if json_output:
            print_json(page)
        else:
            _emit(page.lines)
    if follow_ and not json_output:
        err.print(f"{job_id} {state_text(page.state)}")


def _emit(lines) -> None:
    for line in lines:
        print(line)


def stop(
    job_id: Annotated[str, typer.Argument(help="The job to cancel.")],
    reason: Annotated[str, typer.Option(help="Why; recorded with the state change.")] = "",
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
) -> None:
    """Cancel a job (idempotent); its last checkpoint stays usable."""
    answer = run_tool("carl_stop", {"job_id": job_id, "reason": reason or "carl stop"})
    if json_output:
        print_json(answer)
        return
    job = answer.job
    if answer.already_ended:
        out.print(f"{job.job_id} had already ended: {state_text(job.state)}")
    else:
        out.print(f"{job.job_id} {state_text(job.state)}" + (f"; last checkpoint {job.checkpoint}" if job.checkpoint else ""))


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("stop")(stop)
