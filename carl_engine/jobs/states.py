"""The job state machine. Every change of state goes through `check_transition`.

```
queued    -> starting   the backend accepted the submission
queued    -> cancelled  stopped before it was handed to a backend
queued    -> failed     submission failed (bad credentials, backend refused)
starting  -> running    the job process reported its first sign of life
starting  -> failed     the process ended before training began
starting  -> cancelled  stopped while starting
starting  -> lost       the process or remote job vanished without a verdict
running   -> succeeded  result.json says succeeded
running   -> failed     result.json says failed, or a non-zero exit
running   -> cancelled  carl_stop
running   -> lost       the process or remote job vanished without a verdict
starting  -> succeeded  a job so short that it ended between two polls
```
Terminal: succeeded, failed, cancelled, lost. A resume is a new attempt (a new job row
that names the job it resumes), never a transition out of a terminal state.
"""

from __future__ import annotations

from enum import Enum

from carl_engine.errors import IllegalTransitionError


class JobState(str, Enum):
    QUEUED = "queued"  # written to the store, not yet handed to a backend
    STARTING = "starting"  # handed to a backend, no sign of life yet
    RUNNING = "running"  # the job process is working
    SUCCEEDED = "succeeded"  # finished with a result
    FAILED = "failed"  # finished with an error
    CANCELLED = "cancelled"  # stopped on request; its last checkpoint is kept
    LOST = "lost"  # vanished without a verdict (killed, machine gone)

    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST})

ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.STARTING, JobState.CANCELLED, JobState.FAILED}),
    JobState.STARTING: frozenset(
        {JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST}
    ),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST}),
}

RESUMABLE = frozenset({JobState.FAILED, JobState.LOST, JobState.CANCELLED})


def sources_of(target: JobState) -> frozenset[JobState]:
    """The states from which `target` may be reached (for compare-and-set updates)."""
    return frozenset(src for src, targets in ALLOWED.items() if target in targets)


def check_transition(current: JobState, target: JobState) -> None:
    if target not in ALLOWED.get(current, frozenset()):
        raise IllegalTransitionError(
            f"a job cannot go from {current.value} to {target.value}",
            current=current.value,
            target=target.value,
        )
