"""Rendering the tools' response models for people (rich) and machines (`--json`).

The CLI never builds its own view of a job: it renders the same `JobStatus`, `LogsResponse`,
`TrainResponse` … that the MCP server returns, so the two cannot disagree. Tables and
progress go to the terminal; `--json` prints the model's JSON on stdout and nothing else.
Progress bars and notes go to stderr so that stdout stays parseable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from carl_studio.tools.models import TERMINAL_STATES, JobStatus

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STATE_STYLE = {
    "queued": "dim", "starting": "cyan", "running": "bold cyan", "succeeded": "bold green",
    "failed": "bold red", "cancelled": "yellow", "lost": "bold magenta",
}  # fmt: skip
#: the metrics shown next to the progress bar and in job lists, in this order
HEADLINE_METRICS = ("reward", "carl/phi_mean", "gate/carl_weight", "loss")
SHORT = {"reward": "reward", "carl/phi_mean": "Φ", "gate/carl_weight": "gate", "loss": "loss"}


def print_json(model: BaseModel) -> None:
    """The model as JSON on stdout (exactly what the MCP tool's structured content holds)."""
    print(model.model_dump_json(indent=2))


def state_text(state: str) -> str:
    return f"[{STATE_STYLE.get(state, '')}]{state}[/]"


def headline(metrics: dict[str, float | None]) -> str:
    """`reward 0.62  Φ 0.41  gate 1` from the latest metrics (those present)."""
    parts = [f"{SHORT[name]} {metrics[name]:.3g}" for name in HEADLINE_METRICS if metrics.get(name) is not None]
    return "  ".join(parts)


def job_table(jobs: Iterable[JobStatus]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("job_id", "kind", "state", "step", "metrics", "backend", "created"):
        table.add_column(column)
    for job in jobs:
        steps = f"{job.step}/{job.max_steps}" if job.max_steps else str(job.step)
        created = (job.created_at or "").replace("T", " ").removesuffix("+00:00")
        table.add_row(job.job_id, job.kind, state_text(job.state), steps, headline(job.metrics),
                      job.backend + (f":{job.target}" if job.target else ""), created)
    return table


def job_detail(job: JobStatus) -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("job_id", job.job_id), ("kind", job.kind), ("state", state_text(job.state)),
        ("step", f"{job.step}/{job.max_steps}" if job.max_steps else str(job.step)),
        ("stage", job.stage), ("backend", job.backend + (f":{job.target}" if job.target else "")),
        ("checkpoint", job.checkpoint), ("run_dir", job.run_dir), ("attempt", str(job.attempt)),
        ("resumes", job.resumes), ("created", job.created_at), ("started", job.started_at), ("ended", job.ended_at),
        ("error", f"[red]{job.error}[/]" if job.error else None),
        ("ask again in", f"{job.poll_after_s} s" if job.poll_after_s else None),
    ]  # fmt: skip
    for name, value in rows:
        if value:
            table.add_row(name, value)
    for name, value in sorted(job.metrics.items()):
        table.add_row(f"  {name}", "nan" if value is None else f"{value:.4g}")
    if job.metrics_omitted:
        table.add_row("", f"[dim]+{job.metrics_omitted} more metrics: --all-metrics[/]")
    return table


def follow(get: Callable[[], JobStatus], *, interval_s: float = 1.0, show: bool = True) -> JobStatus:
    """Poll a job until it reaches a final state, with a progress bar and live reward/Φ on stderr.

    Args:
        get: returns the job's current status (carl_status).
        interval_s: seconds between polls.
        show: draw the progress bar (False for --json).

    Returns:
        The final status.
    """
    job = get()
    if not show:
        while job.state not in TERMINAL_STATES:
            time.sleep(interval_s)
            job = get()
        return job
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[live]}"))
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(_describe(job), total=job.max_steps or None, live="")
        while True:
            progress.update(task, description=_describe(job), completed=job.step, total=job.max_steps or None,
                            live=headline(job.metrics))
            if job.state in TERMINAL_STATES:
                break
            time.sleep(interval_s)
            job = get()
    return job


def _describe(job: JobStatus) -> str:
    stage = f" {job.stage}" if job.stage else ""
    return f"{job.job_id}{stage} [{STATE_STYLE.get(job.state, '')}]{job.state}[/]"
