"""The one protocol every compute backend speaks.

A backend runs `python -m carl_engine.run <run_dir>` somewhere and reports on it. It knows
nothing of the job store: the job manager calls these methods and records transitions.
Methods are synchronous; async clients (asyncssh) run their own loop inside the call, and
the server calls backends from a worker thread.

A handle is a small JSON-able dict (pid and start time, Ray submission id, HF job id, pod
id, host and remote dir…) stored in the job row; it must be enough to reattach from a
fresh process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from carl_engine.jobs.states import JobState
from carl_engine.runs import RunDir

Handle = dict[str, Any]


@dataclass(frozen=True)
class PollResult:
    """What the backend knows now. `state` is one of ours, mapped from the provider's."""

    state: JobState
    exit_code: int | None = None
    detail: str = ""  # the provider's own words, e.g. "RunPod pod EXITED", for status and errors


@dataclass(frozen=True)
class LogPage:
    lines: list[str]
    next_cursor: int  # pass back as `cursor` to read what came after
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    name: ClassVar[str]
    #: environment variables this backend needs (names only); `carl_compute` reports presence
    credentials: ClassVar[tuple[str, ...]]

    def submit(self, *, job_id: str, run_dir: RunDir, target: str | None) -> Handle:
        """Start the job whose spec is in `run_dir`; `target` is the part after `backend:`."""

    def poll(self, handle: Handle) -> PollResult: ...

    def logs(self, handle: Handle, *, cursor: int = 0, limit: int = 200) -> LogPage: ...

    def cancel(self, handle: Handle) -> None:
        """Stop the job. Idempotent: cancelling a finished job does nothing."""

    def artifacts(self, handle: Handle, *, dest: Path) -> list[Path]:
        """Bring the run's files (events.jsonl, result.json, checkpoints) into `dest`."""
