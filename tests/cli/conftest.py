"""CLI tests run `carl` in-process (typer's CliRunner) over scripted job processes."""

from __future__ import annotations

import pytest

from carl_studio.tools.base import ToolContext
from tests.tools.support import scripted_jobs


@pytest.fixture
def scripted(monkeypatch):
    """Make every ToolContext the CLI creates use one scripted JobManager; returns a setter for its options."""

    def use(**options):
        manager = scripted_jobs(**options)
        monkeypatch.setattr(ToolContext, "jobs", property(lambda self: manager))
        return manager

    use()
    return use
