"""What every built-in task is: seeded problems, one exact verifier, four dataset forms.

A task makes `Problem`s (prompt, answer, a plausible wrong answer) from a seed, and
turns them into the rows each training method reads:

    prompt_completion  prompt, completion          (SFT)
    prompt_only        prompt, answer              (GRPO: the answer column reaches reward functions)
    preference         prompt, chosen, rejected    (DPO, ORPO)
    labelled           prompt, completion, label   (KTO: label is True for a correct completion)

Prompts are plain text (not conversational). Completions carry no EOS text: TRL adds it.
The same seed gives the same rows on every machine (`random.Random(seed)`, no global state).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from carl_engine.errors import InvalidSpecError

if TYPE_CHECKING:  # datasets is heavy; imported only when a Dataset is built
    from datasets import Dataset

Form = Literal["prompt_completion", "prompt_only", "preference", "labelled"]
FORMS: tuple[str, ...] = ("prompt_completion", "prompt_only", "preference", "labelled")
COLUMNS: dict[str, tuple[str, ...]] = {
    "prompt_completion": ("prompt", "completion"),
    "prompt_only": ("prompt", "answer"),
    "preference": ("prompt", "chosen", "rejected"),
    "labelled": ("prompt", "completion", "label"),
}
MAX_ROWS = 1_000_000


@dataclass(frozen=True)
class Problem:
    """One generated problem: the prompt, its exact answer, and a wrong answer near it."""

    prompt: str
    answer: str
    wrong: str


class Task(ABC):
    """A built-in task. Subclasses set `name`, `description` and write `problem` and `verify`."""

    name: ClassVar[str]
    description: ClassVar[str]

    @property
    def reward_name(self) -> str:
        """The reward name that selects this task's verifier in `TrainSpec.rewards`."""
        return self.name

    @abstractmethod
    def problem(self, rng: random.Random) -> Problem:
        """Draw one problem using only `rng`."""

    @abstractmethod
    def verify(self, completion: str, answer: str) -> float:
        """Score one completion against the answer: 1.0 when exactly right, else 0.0. Pure."""

    def problems(self, n: int, seed: int) -> list[Problem]:
        """`n` problems drawn from `seed` (the same on every machine).

        Raises:
            InvalidSpecError: `n` outside 1..1,000,000, or `seed` not an int.
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_ROWS:
            raise InvalidSpecError("n", f"must be an integer between 1 and {MAX_ROWS:,}", got=n)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidSpecError("seed", "must be an integer", got=seed)
        rng = random.Random(seed)
        return [self.problem(rng) for _ in range(n)]

    def records(self, form: str, *, n: int = 256, seed: int = 0) -> list[dict[str, object]]:
        """The rows of one dataset form as plain dicts (no `datasets` import).

        Args:
            form: one of `FORMS`.
            n: number of rows.
            seed: generator seed.

        Returns:
            `n` dicts with exactly the columns of `COLUMNS[form]`.

        Raises:
            InvalidSpecError: unknown form, or bad `n`/`seed`.
        """
        if form not in COLUMNS:
            raise InvalidSpecError("form", f"must be one of {', '.join(FORMS)}", got=form)
        problems = self.problems(n, seed)
        if form == "prompt_completion":
            return [{"prompt": p.prompt, "completion": p.answer} for p in problems]
        if form == "prompt_only":
            return [{"prompt": p.prompt, "answer": p.answer} for p in problems]
        if form == "preference":
            return [{"prompt": p.prompt, "chosen": p.answer, "rejected": p.wrong} for p in problems]
        # labelled: alternate correct and wrong completions so both labels are balanced.
        return [
            {"prompt": p.prompt, "completion": p.answer if i % 2 == 0 else p.wrong, "label": i % 2 == 0}
            for i, p in enumerate(problems)
        ]

    def dataset(self, form: str, *, n: int = 256, seed: int = 0) -> Dataset:
        """The rows of `records(form, n=n, seed=seed)` as a `datasets.Dataset`.

        Raises:
            InvalidSpecError: unknown form, or bad `n`/`seed`.
        """
        rows = self.records(form, n=n, seed=seed)
        from datasets import Dataset

        return Dataset.from_dict({col: [row[col] for row in rows] for col in COLUMNS[form]})

    def corpus(self, n: int = 2000, seed: int = 0) -> list[str]:
        """Text this task puts in front of a model (prompt + answer, prompt + wrong answer),
        used to train carl-tiny's tokenizer."""
        return [p.prompt + p.answer for p in self.problems(n, seed)] + [
            p.prompt + p.wrong for p in self.problems(max(1, n // 4), seed + 1)
        ]
