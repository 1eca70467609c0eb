"""Helpers shared by the front-end tests (tools, server, CLI): job managers over scripted job processes."""

from __future__ import annotations

import sys
from pathlib import Path

from carl_engine.backends.local import LocalBackend
from carl_engine.jobs.manager import JobManager
from carl_studio.tools.base import ToolContext
from tests.polling import wait_for  # noqa: F401  (re-exported for the tool tests)

SCRIPT = Path(__file__).with_name("scripted_run.py")
FINAL = {"succeeded", "failed", "cancelled", "lost"}


def scripted_jobs(*, step_s: float = 0.02, fail_at: int = 0) -> JobManager:
    """A real JobManager whose local backend runs scripted_run.py instead of the trainer."""
    command = [sys.executable, str(SCRIPT), "--step-s", str(step_s), "--fail-at", str(fail_at)]
    return JobManager(backends={"local": LocalBackend(command=command, grace_s=5)})


def scripted_context(**kwargs) -> ToolContext:
    return ToolContext(scripted_jobs(**kwargs))


