"""A built-in task's verifier as a TRL reward function."""

from __future__ import annotations

from typing import Any


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the content of a conversational completion's last message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else str(content)
    return str(completion)


class TaskReward:
    """Scores each completion with a task's `verify(completion, answer)` (1.0 exact, else 0.0).

    The reward's name (in TRL's `rewards/<name>/mean`) is the task's reward name.

    Args:
        task_name: a built-in task (carl_engine.tasks).

    >>> reward = TaskReward("arithmetic")
    >>> reward(prompts=["2+3=", "2+3="], completions=["5", "6"], completion_ids=[[1], [2]], answer=["5", "5"])
    [1.0, 0.0]
    """

    def __init__(self, task_name: str) -> None:
        from carl_engine.tasks import get_task

        self.task = get_task(task_name)
        self.__name__ = self.task.reward_name

    def __call__(self, prompts: list, completions: list, completion_ids: list, **kwargs: Any) -> list[float | None]:
        answers = kwargs.get("answer")
        if answers is None:
            raise ValueError(f"reward {self.__name__!r} needs an 'answer' column in the dataset")
        return [
            None if answer is None else float(self.task.verify(completion_text(c), str(answer)))
            for c, answer in zip(completions, answers, strict=True)
        ]
