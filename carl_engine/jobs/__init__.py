"""Jobs as resumable tasks: the state machine (states.py), the SQLite store (store.py) and the
manager that follows jobs on any backend (manager.py).

Names are loaded on first use: `carl_engine.backends.base` imports `carl_engine.jobs.states`,
so this package must not import the manager (which imports the backends) eagerly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "JobState": "states",
    "TERMINAL": "states",
    "RESUMABLE": "states",
    "Job": "store",
    "JobEvent": "store",
    "JobStore": "store",
    "JobManager": "manager",
    "Compute": "manager",
    "parse_compute": "manager",
    "validate_spec": "manager",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'carl_engine.jobs' has no attribute {name!r}")
    return getattr(importlib.import_module(f"carl_engine.jobs.{_EXPORTS[name]}"), name)


__all__ = list(_EXPORTS)
