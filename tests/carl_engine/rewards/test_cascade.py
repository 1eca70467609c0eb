"""The cascade gate: off, steps and the self-calibrating auto gate on synthetic reward series."""

from __future__ import annotations

import random

from carl_engine.rewards.cascade import CascadeGate


def run(gate: CascadeGate, series: list[float]) -> list[float]:
    """Feed a task-reward series step by step; return the weight used at each step."""
    weights = []
    for step, value in enumerate(series):
        weights.append(gate.weight(step))
        gate.observe(step, value)
    return weights


def test_the_off_gate_gives_carl_full_weight_from_step_zero():
    assert run(CascadeGate("off"), [0.0] * 5) == [1.0] * 5


def test_the_steps_gate_ramps_linearly_from_its_start_step():
    gate = CascadeGate("steps", start_step=3, warmup_steps=4)
    assert run(gate, [0.0] * 9) == [0, 0, 0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [gate.state(s) for s in (0, 4, 8)] == ["closed", "ramping", "open"]


def test_the_auto_gate_opens_after_the_task_reward_rises_and_plateaus():
    rng = random.Random(0)
    rising = [0.1 + 0.6 * min(1.0, t / 30) + rng.uniform(-0.02, 0.02) for t in range(80)]
    gate = CascadeGate("auto", window=10, warmup_steps=5, max_closed_steps=1000)
    weights = run(gate, rising)
    opened = next(step for step, w in enumerate(weights) if w > 0)
    assert 30 <= opened <= 60, opened  # after the rise ends at step 30, well before the series ends
    assert weights[opened : opened + 5] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert "plateaued" in gate.reason


def test_the_auto_gate_stays_closed_while_the_task_reward_still_rises():
    steady_rise = [t / 100 for t in range(100)]
    assert max(run(CascadeGate("auto", window=10, max_closed_steps=1000), steady_rise)) == 0.0


def test_the_auto_gate_stays_closed_on_a_flat_noisy_signal_until_max_closed_steps():
    rng = random.Random(1)
    noise = [0.3 + rng.uniform(-0.05, 0.05) for _ in range(60)]
    gate = CascadeGate("auto", window=10, warmup_steps=0, max_closed_steps=40)
    weights = run(gate, noise)
    assert weights[:40] == [0.0] * 40
    assert weights[40:] == [1.0] * 20
    assert "max_closed_steps" in gate.reason


def test_the_gate_state_survives_a_checkpoint_round_trip():
    gate = CascadeGate("auto", window=2, warmup_steps=2, max_closed_steps=100)
    run(gate, [0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    restored = CascadeGate("auto", window=2, warmup_steps=2, max_closed_steps=100)
    restored.load_state_dict(gate.state_dict())
    assert restored.opened_at == gate.opened_at is not None
    assert [restored.weight(s) for s in range(8)] == [gate.weight(s) for s in range(8)]
