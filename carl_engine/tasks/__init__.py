"""Built-in tasks with verifiers: one file per task, listed in `_REGISTRY`.

    get_task("arithmetic").dataset("prompt_only", n=64, seed=0)   # columns prompt, answer
    get_task("arithmetic", difficulty="medium").verify("19", "19") # 1.0

To add a task: write `carl_engine/tasks/<name>.py` with a `Task` subclass and add one line
to `_REGISTRY`. Modules are imported on first use, so listing tasks stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from carl_engine.errors import InvalidSpecError
from carl_engine.tasks.base import COLUMNS, FORMS, Problem, Task

__all__ = ["COLUMNS", "FORMS", "Problem", "Task", "get_task", "list_tasks", "is_task"]

# task name -> "module:class"
_REGISTRY: dict[str, str] = {
    "arithmetic": "carl_engine.tasks.arithmetic:ArithmeticTask",
}


def list_tasks() -> list[str]:
    """The names of the built-in tasks, sorted."""
    return sorted(_REGISTRY)


def is_task(name: str) -> bool:
    """Whether `name` is a built-in task (so a dataset field can be told from a path or Hub name)."""
    return name in _REGISTRY


def get_task(name: str, *, field: str = "task", **options: Any) -> Task:
    """The built-in task called `name`.

    Args:
        name: a name from `list_tasks()`.
        field: the spec field to name in errors (e.g. "dataset").
        **options: passed to the task's constructor (e.g. `difficulty="medium"`).

    Returns:
        A `Task` instance.

    Raises:
        InvalidSpecError: unknown task name, or an option the task does not take.
    """
    if name not in _REGISTRY:
        raise InvalidSpecError(field, f"unknown built-in task; known tasks: {', '.join(list_tasks())}", got=name)
    module_name, class_name = _REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise InvalidSpecError(f"{field}.options", f"not accepted by task {name!r}: {exc}", got=sorted(options)) from None
