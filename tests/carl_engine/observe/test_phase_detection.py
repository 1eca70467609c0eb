"""The phases of a run are found by change-point detection, not by thresholds on the metrics."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from standins.carl_runs import paper_run

from carl_engine.observe.changepoint import noise_scale, segment
from carl_engine.observe.phases import find_phases


def _brute_force(z: np.ndarray, beta: float, min_size: int) -> list[int]:
    """Exhaustive optimal partitioning, to check the pruned dynamic programme against."""
    n = len(z)
    best = {0: (-beta, [])}
    for end in range(min_size, n + 1):
        options = []
        for start in [0, *range(min_size, end - min_size + 1)]:
            if start in best:
                seg = z[start:end]
                cost = float(((seg - seg.mean()) ** 2).sum())
                options.append((best[start][0] + cost + beta, best[start][1] + ([start] if start else [])))
        if options:
            best[end] = min(options, key=lambda o: o[0])
    return best[n][1]


@pytest.mark.parametrize("seed", range(6))
def test_segmentation_is_the_exact_penalized_least_squares_optimum(seed):
    rng = np.random.default_rng(seed)
    z = np.r_[np.zeros(12), np.full(9, 2.5), np.full(10, -1.0)] + rng.normal(0, 1, 31)
    beta = 2 * math.log(31)
    assert segment(z, min_size=2, penalty=beta) == _brute_force(z, beta, 2)


def test_noise_scale_ignores_jumps_in_the_mean():
    rng = np.random.default_rng(0)
    x = np.r_[np.zeros(100), np.full(100, 50.0)] + rng.normal(0, 1.0, 200)
    assert 0.8 < noise_scale(x) < 1.2


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5, 6, 7])
def test_the_papers_phase_table_comes_back_with_the_transition_at_steps_20_to_25(seed):
    records = paper_run(seed)
    steps = [r["step"] for r in records]
    phases, transition, cuts = find_phases(steps, [r["accuracy"] for r in records], [r["entropy"] for r in records])

    assert 20 <= transition <= 25
    by_name = {p.name: p for p in phases}
    assert [p.name for p in phases] == ["baseline", "melting", "transition", "crystallization", "converged"]
    assert 19 <= by_name["transition"].start_step <= 21 and 23 <= by_name["transition"].end_step <= 25
    assert by_name["transition"].start_step == transition
    assert 0.5 < by_name["transition"].task_mean < 0.8
    assert by_name["converged"].end_step == 46 and by_name["baseline"].start_step == 0
    assert transition in cuts


@pytest.mark.parametrize("seed", [0, 3])
def test_phi_and_reward_stand_in_for_entropy_and_accuracy(seed):
    records = paper_run(seed)
    phases, transition, _ = find_phases(
        [r["step"] for r in records], [r["reward"] for r in records], [1 - r["carl/phi_mean"] for r in records]
    )
    assert 20 <= transition <= 25
    assert "melting" in [p.name for p in phases]


def test_a_flat_noisy_run_has_no_transition_and_one_phase():
    rng = random.Random(1)
    steps = list(range(120))
    phases, transition, cuts = find_phases(
        steps, [0.5 + rng.gauss(0, 0.05) for _ in steps], [2.0 + rng.gauss(0, 0.1) for _ in steps]
    )
    assert transition is None and cuts == []
    assert [(p.name, p.start_step, p.end_step) for p in phases] == [("baseline", 0, 119)]


def test_a_step_change_found_whatever_the_metric_scale():
    """The same shape at accuracy scale and at reward-in-hundreds scale gives the same transition."""
    rng = random.Random(2)
    steps = list(range(60))
    base = [0.1 if s < 30 else 0.9 for s in steps]
    noise = [rng.gauss(0, 0.03) for _ in steps]
    small = find_phases(steps, [b + e for b, e in zip(base, noise)], None)[1]
    large = find_phases(steps, [300 * (b + e) for b, e in zip(base, noise)], None)[1]
    assert small == large == 30


def test_long_runs_are_binned_and_still_located():
    rng = random.Random(3)
    steps = list(range(0, 30000, 3))  # 10,000 logged points
    task = [(0.2 if s < 12000 else 0.8) + rng.gauss(0, 0.05) for s in steps]
    phases, transition, _ = find_phases(steps, task, None)
    assert abs(transition - 12000) <= 60
    assert phases[-1].end_step == steps[-1]


def test_too_few_points_give_no_phases():
    assert find_phases([0, 1, 2], [0.1, 0.2, 0.3], None) == ([], None, [])
    assert find_phases([0, 1, 2, 3, 4], None, None) == ([], None, [])
