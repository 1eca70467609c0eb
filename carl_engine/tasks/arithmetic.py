"""`arithmetic`: add or subtract two non-negative integers; the answer is the number.

Prompts are as short as a problem can be (`"12+7="`), so carl-tiny (digit-level tokens)
answers in a few tokens. Subtraction keeps the larger operand first, so answers are never
negative; the verifier still reads a sign, so a model that answers "-3" is scored, not crashed.
"""

from __future__ import annotations

import random
import re
from typing import ClassVar

from carl_engine.errors import InvalidSpecError
from carl_engine.tasks.base import Problem, Task

# difficulty -> largest operand
DIFFICULTIES: dict[str, int] = {"easy": 9, "medium": 99, "hard": 999}
_FIRST_INT = re.compile(r"[-+]?\d+")


def first_integer(text: str) -> int | None:
    """The first integer written in `text`, or None when there is none.

    >>> first_integer(" 19 because 12+7")
    19
    >>> first_integer("-3") , first_integer("no digits")
    (-3, None)
    """
    match = _FIRST_INT.search(text)
    return int(match.group()) if match else None


def verify_integer_answer(completion: str, answer: str) -> float:
    """1.0 when the first integer in `completion` equals `answer`, else 0.0.

    >>> verify_integer_answer("19", "19"), verify_integer_answer(" 19<eos>junk 4", "19")
    (1.0, 1.0)
    >>> verify_integer_answer("190", "19"), verify_integer_answer("", "19"), verify_integer_answer("x=5", "4")
    (0.0, 0.0, 0.0)
    """
    got = first_integer(completion)
    expected = first_integer(answer)
    return 1.0 if got is not None and got == expected else 0.0


class ArithmeticTask(Task):
    """Addition and subtraction of two integers in 0..max_operand.

    Args:
        difficulty: "easy" (0..9), "medium" (0..99) or "hard" (0..999).
        ops: the operators to draw from, a non-empty subset of "+-".

    Raises:
        InvalidSpecError: unknown difficulty or operators.
    """

    name: ClassVar[str] = "arithmetic"
    description: ClassVar[str] = (
        "Add or subtract two integers written like '12+7='; the completion must start with the answer."
    )

    def __init__(self, difficulty: str = "easy", ops: str = "+-") -> None:
        if difficulty not in DIFFICULTIES:
            raise InvalidSpecError("task.difficulty", f"must be one of {', '.join(DIFFICULTIES)}", got=difficulty)
        if not ops or set(ops) - {"+", "-"}:
            raise InvalidSpecError("task.ops", "must be a non-empty string of '+' and '-'", got=ops)
        self.difficulty = difficulty
        self.ops = "".join(sorted(set(ops), key="+-".index))
        self.max_operand = DIFFICULTIES[difficulty]

    def problem(self, rng: random.Random) -> Problem:
        a = rng.randint(0, self.max_operand)
        b = rng.randint(0, self.max_operand)
        op = rng.choice(self.ops)
        if op == "-" and b > a:
            a, b = b, a
        value = a + b if op == "+" else a - b
        offset = rng.choice([-3, -2, -1, 1, 2, 3])
        wrong = value + offset if value + offset >= 0 else value - offset
        return Problem(prompt=f"{a}{op}{b}=", answer=str(value), wrong=str(wrong))

    def verify(self, completion: str, answer: str) -> float:
        """1.0 when the first integer of `completion` is `answer`, else 0.0.

        >>> ArithmeticTask().verify("7", "7"), ArithmeticTask().verify("8", "7")
        (1.0, 0.0)
        """
        return verify_integer_answer(completion, answer)
