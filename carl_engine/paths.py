"""Where CARL Studio keeps its state: `$CARL_HOME` (default `~/.carl`).

Read at call time, never at import, so tests and job processes can point it elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path


def carl_home() -> Path:
    """The root folder: `$CARL_HOME`, else `~/.carl`. Created on first use."""
    home = Path(os.environ.get("CARL_HOME") or Path.home() / ".carl").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def runs_dir() -> Path:
    path = carl_home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Built and downloaded models: `$CARL_MODELS_DIR`, else `$CARL_HOME/models`."""
    override = os.environ.get("CARL_MODELS_DIR")
    path = Path(override).expanduser() if override else carl_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def jobs_db() -> Path:
    return carl_home() / "jobs.db"
