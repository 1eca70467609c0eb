"""The task registry: names, lookups, and errors that name the field."""

from __future__ import annotations

import pytest

from carl_engine.errors import InvalidSpecError
from carl_engine.tasks import Task, get_task, is_task, list_tasks


def test_arithmetic_is_registered_with_its_reward_name():
    assert "arithmetic" in list_tasks() and is_task("arithmetic")
    task = get_task("arithmetic")
    assert isinstance(task, Task)
    assert task.name == task.reward_name == "arithmetic"
    assert task.description


def test_an_unknown_task_names_the_field_and_the_known_tasks():
    with pytest.raises(InvalidSpecError) as info:
        get_task("poetry", field="dataset")
    assert info.value.field == "dataset"
    assert "arithmetic" in str(info.value) and "poetry" in str(info.value)
    assert not is_task("poetry")


def test_an_option_the_task_does_not_take_is_an_error():
    with pytest.raises(InvalidSpecError) as info:
        get_task("arithmetic", colour="red")
    assert info.value.field == "task.options"
