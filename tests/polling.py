"""Bounded polling for tests: every wait has a deadline, none sleeps unboundedly."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

T = TypeVar("T")


def poll(read: Callable[[], T], done: Callable[[T], Any] = bool, *, timeout_s: float = 30.0, every_s: float = 0.2) -> T:
    """Call `read()` until `done(value)` or `timeout_s` passes; returns the last value (assert on it)."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(every_s)
        value = read()
    return value


def wait_for(predicate: Callable[[], T], *, timeout_s: float = 30.0, every_s: float = 0.05) -> T:
    """Poll `predicate()` until it returns something truthy and return it; fail after `timeout_s`."""
    value = poll(predicate, bool, timeout_s=timeout_s, every_s=every_s)
    if not value:
        raise AssertionError(f"condition not met within {timeout_s} s")
    return value


def wait_for_job(manager: Any, job_id: str, states: Collection[Any] | None = None, *, timeout_s: float = 30.0) -> Any:
    """The job once `manager.get` shows it in one of `states` (default: any final state)."""
    from carl_engine.jobs.states import TERMINAL

    wanted = TERMINAL if states is None else states
    job = poll(lambda: manager.get(job_id), lambda j: j.state in wanted, timeout_s=timeout_s, every_s=0.05)
    if job.state not in wanted:
        raise AssertionError(f"job {job_id} still {job.state.value} after {timeout_s} s")
    return job
