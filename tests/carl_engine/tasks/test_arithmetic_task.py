"""The arithmetic task: seeded problems, an exact verifier, and the four dataset forms."""

from __future__ import annotations

import doctest

import pytest

import carl_engine.tasks.arithmetic as arithmetic_module
from carl_engine.errors import InvalidSpecError
from carl_engine.tasks import COLUMNS, FORMS, get_task
from carl_engine.tasks.arithmetic import first_integer


def test_the_docstring_examples_hold():
    assert doctest.testmod(arithmetic_module).failed == 0


@pytest.mark.parametrize(
    ("completion", "answer", "score"),
    [
        ("19", "19", 1.0),
        (" 19", "19", 1.0),
        ("19<eos>", "19", 1.0),
        ("19 and then 7", "19", 1.0),
        ("7 then 19", "19", 0.0),
        ("190", "19", 0.0),
        ("1 9", "19", 0.0),
        ("", "19", 0.0),
        ("nineteen", "19", 0.0),
        ("-3", "-3", 1.0),
        ("3", "-3", 0.0),
        ("0", "0", 1.0),
    ],
)
def test_the_verifier_scores_only_the_first_integer(completion, answer, score):
    assert get_task("arithmetic").verify(completion, answer) == score


def test_the_same_seed_gives_the_same_rows_and_another_seed_other_rows():
    task = get_task("arithmetic", difficulty="medium")
    assert task.records("prompt_only", n=50, seed=3) == task.records("prompt_only", n=50, seed=3)
    assert task.records("prompt_only", n=50, seed=3) != task.records("prompt_only", n=50, seed=4)


@pytest.mark.parametrize("form", FORMS)
def test_each_dataset_form_has_exactly_its_columns(form):
    ds = get_task("arithmetic").dataset(form, n=12, seed=0)
    assert ds.column_names == list(COLUMNS[form])
    assert len(ds) == 12
    assert all(isinstance(p, str) and p.endswith("=") for p in ds["prompt"])


def test_answers_are_right_and_wrong_answers_are_wrong():
    task = get_task("arithmetic")
    for row in task.records("preference", n=200, seed=1):
        a, op, b = row["prompt"][0], row["prompt"][1], row["prompt"][2:-1]
        expected = int(a) + int(b) if op == "+" else int(a) - int(b)
        assert int(row["chosen"]) == expected >= 0
        assert task.verify(row["chosen"], str(expected)) == 1.0
        assert task.verify(row["rejected"], str(expected)) == 0.0


def test_labelled_rows_are_balanced_and_labelled_by_the_verifier():
    task = get_task("arithmetic")
    answers = [r["answer"] for r in task.records("prompt_only", n=40, seed=2)]
    rows = task.records("labelled", n=40, seed=2)
    assert [r["label"] for r in rows].count(True) == 20
    for row, answer in zip(rows, answers):
        assert isinstance(row["label"], bool)
        assert row["label"] == (task.verify(row["completion"], answer) == 1.0)


@pytest.mark.parametrize(("difficulty", "largest"), [("easy", 9), ("medium", 99), ("hard", 999)])
def test_difficulty_bounds_the_operands(difficulty, largest):
    task = get_task("arithmetic", difficulty=difficulty)
    operands = []
    for row in task.records("prompt_only", n=300, seed=0):
        operands += [first_integer(part) for part in row["prompt"][:-1].replace("-", "+").split("+")]
    assert 0 <= min(operands) and max(operands) <= largest
    assert max(operands) > largest // 2


def test_ops_restricts_the_operators():
    rows = get_task("arithmetic", ops="+").records("prompt_only", n=100, seed=0)
    assert all("-" not in r["prompt"] for r in rows)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda t: t.records("chat", n=2, seed=0), "form"),
        (lambda t: t.records("prompt_only", n=0, seed=0), "n"),
        (lambda t: t.records("prompt_only", n=2, seed="x"), "seed"),
    ],
)
def test_bad_arguments_name_their_field(call, field):
    with pytest.raises(InvalidSpecError) as info:
        call(get_task("arithmetic"))
    assert info.value.field == field


def test_bad_options_name_their_field():
    with pytest.raises(InvalidSpecError) as info:
        get_task("arithmetic", difficulty="insane")
    assert info.value.field == "task.difficulty"
    with pytest.raises(InvalidSpecError) as info:
        get_task("arithmetic", ops="*")
    assert info.value.field == "task.ops"
