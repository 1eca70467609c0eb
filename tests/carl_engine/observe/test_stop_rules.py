"""Each stop rule fires on the series that should fire it, stays clear otherwise, and shows its evidence."""

from __future__ import annotations

import math
import random

from carl_engine.observe.stop_rules import (
    check_coherence_trap,
    check_length_drift,
    check_non_finite,
    check_reward_flat,
)


def _series(values):
    return list(enumerate(values))


def _noisy(f, n=100, sd=0.02, seed=0):
    rng = random.Random(seed)
    return _series([f(i) + rng.gauss(0, sd) for i in range(n)])


def test_non_finite_values_trigger_with_the_metric_and_first_step():
    verdict = check_non_finite({"loss": _series([1.0, 0.9, math.nan, 0.8]), "reward": _series([0, math.inf, 1, 1])})
    assert verdict.status == "triggered"
    assert verdict.evidence["first_step"] == 1 and verdict.evidence["count"] == 2
    assert verdict.evidence["metrics"] == "reward, loss"


def test_finite_values_leave_non_finite_clear():
    assert check_non_finite({"loss": _series([1.0, 0.5])}).status == "clear"


def test_a_reward_flat_over_the_last_fifth_triggers():
    reward = _noisy(lambda i: min(i / 50, 1.0))  # rises, then flat from step 50
    verdict = check_reward_flat(reward, tail_fraction=0.2)
    assert verdict.status == "triggered"
    assert verdict.evidence["window_start"] == 80 and verdict.evidence["window_end"] == 99
    assert abs(verdict.evidence["window_mean"] - 1.0) < 0.02


def test_a_reward_still_rising_leaves_reward_flat_clear():
    verdict = check_reward_flat(_noisy(lambda i: i / 100), tail_fraction=0.2)
    assert verdict.status == "clear" and "rising" in verdict.message
    assert verdict.evidence["slope_per_step"] > 0


def test_reward_flat_needs_enough_points():
    assert check_reward_flat(_series([0.1, 0.2]), tail_fraction=0.2).status == "not_applicable"
    assert check_reward_flat(None, tail_fraction=0.2).status == "not_applicable"


def test_phi_near_one_while_diversity_falls_is_the_coherence_trap():
    phi = _noisy(lambda i: 0.97, sd=0.005)
    diversity = _noisy(lambda i: 0.6 - 0.5 * i / 100, sd=0.02, seed=1)
    verdict = check_coherence_trap(phi, diversity, tail_fraction=0.2, phi_high=0.9)
    assert verdict.status == "triggered"
    assert verdict.evidence["phi_tail_mean"] > 0.95
    assert verdict.evidence["diversity_last"] < verdict.evidence["diversity_first"]
    assert "guarded" in verdict.message


def test_high_phi_with_steady_diversity_is_no_trap():
    phi = _noisy(lambda i: 0.97, sd=0.005)
    diversity = _noisy(lambda i: 0.6, sd=0.02, seed=1)
    assert check_coherence_trap(phi, diversity, tail_fraction=0.2, phi_high=0.9).status == "clear"


def test_falling_diversity_with_moderate_phi_is_no_trap():
    phi = _noisy(lambda i: 0.6, sd=0.01)
    diversity = _noisy(lambda i: 0.6 - 0.5 * i / 100, sd=0.02, seed=1)
    verdict = check_coherence_trap(phi, diversity, tail_fraction=0.2, phi_high=0.9)
    assert verdict.status == "clear" and "falling" in verdict.message


def test_the_trap_needs_phi_and_diversity():
    assert check_coherence_trap(None, _noisy(lambda i: 0.5), tail_fraction=0.2, phi_high=0.9).status == "not_applicable"
    assert check_coherence_trap(_noisy(lambda i: 0.9), None, tail_fraction=0.2, phi_high=0.9).status == "not_applicable"


def test_completion_length_doubling_is_drift():
    verdict = check_length_drift(_noisy(lambda i: 20 + 0.3 * i, sd=1.0), tail_fraction=0.2, max_ratio=0.5)
    assert verdict.status == "triggered"
    assert verdict.evidence["relative_change"] > 0.5


def test_completion_length_collapse_is_drift_too():
    verdict = check_length_drift(_noisy(lambda i: 60 - 0.5 * i, sd=1.0), tail_fraction=0.2, max_ratio=0.5)
    assert verdict.status == "triggered" and verdict.evidence["relative_change"] < -0.5


def test_steady_or_slightly_moving_length_is_no_drift():
    assert check_length_drift(_noisy(lambda i: 20, sd=1.0), tail_fraction=0.2, max_ratio=0.5).status == "clear"
    small = check_length_drift(_noisy(lambda i: 20 + 0.05 * i, sd=0.5), tail_fraction=0.2, max_ratio=0.5)
    assert small.status == "clear" and small.evidence["z"] > 3  # significant but below the ratio


def test_length_drift_needs_the_length_metric():
    assert check_length_drift(None, tail_fraction=0.2, max_ratio=0.5).status == "not_applicable"
