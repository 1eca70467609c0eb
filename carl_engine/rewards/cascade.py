"""The cascade gate (CARL_MATH.md): task rewards first, then CARL ramped in.

CARL is length- and confidence-biased; on from step 0 it can drown a sparse task signal.
The gate decides, per step, the multiplier on the CARL reward's weight:

    off     1.0 from step 0 (no cascade)
    steps   0 before `start_step`, then a linear ramp to 1 over `warmup_steps`
    auto    0 until the task reward has risen and plateaued, then the same ramp:
            with W = window, m0/s0 = mean/std of the first W task-reward means,
            rolling(t) = mean of the last W,
            risen     rolling(t) - m0 >= s0 and rolling(t) > m0
            plateau   |rolling(t) - rolling(t - W)| <= std(last W) / sqrt(W)
            (needs 2W observations); `max_closed_steps` opens it regardless.

The ramp: at the step the gate opens the weight is 1/warmup_steps, reaching 1 after
warmup_steps steps. States: closed (weight 0), ramping (0 < weight < 1), open (1).
A decision made after observing step t applies from step t + 1.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Literal

GateMode = Literal["off", "steps", "auto"]
STATE_CODES = {"closed": 0.0, "ramping": 1.0, "open": 2.0}


class CascadeGate:
    """Per-step CARL weight multiplier with the cascade's state.

    Args:
        mode: off | steps | auto.
        start_step: for steps, the step at which the ramp starts.
        warmup_steps: ramp length (0 = full weight at once).
        window: W for auto.
        max_closed_steps: for auto, the step by which the gate opens regardless.

    >>> gate = CascadeGate("steps", start_step=2, warmup_steps=2)
    >>> [gate.weight(s) for s in range(5)]
    [0.0, 0.0, 0.5, 1.0, 1.0]
    """

    def __init__(
        self,
        mode: GateMode = "auto",
        *,
        start_step: int = 0,
        warmup_steps: int = 10,
        window: int = 10,
        max_closed_steps: int = 200,
    ) -> None:
        if mode not in ("off", "steps", "auto"):
            raise ValueError(f"gate mode must be off, steps or auto; got {mode!r}")
        if window < 2:
            raise ValueError(f"window must be >= 2; got {window}")
        self.mode = mode
        self.start_step = start_step
        self.warmup_steps = warmup_steps
        self.window = window
        self.max_closed_steps = max_closed_steps
        self.history: list[tuple[int, float]] = []  # (step, task reward mean)
        self.opened_at: int | None = {"off": 0, "steps": start_step, "auto": None}[mode]
        self.reason = {"off": "no cascade", "steps": f"opens at step {start_step}", "auto": "waiting"}[mode]

    @classmethod
    def from_spec(cls, cascade: Any) -> CascadeGate:
        """Build from a `CascadeSpec` (carl_engine.training.spec)."""
        return cls(
            cascade.gate,
            start_step=cascade.start_step,
            warmup_steps=cascade.warmup_steps,
            window=cascade.window,
            max_closed_steps=cascade.max_closed_steps,
        )

    # the weight ---------------------------------------------------------------------
    def weight(self, step: int) -> float:
        """The CARL weight multiplier in [0, 1] at `step`."""
        if self.mode == "off":
            return 1.0
        if self.mode == "auto" and self.opened_at is None and step >= self.max_closed_steps:
            self._open(self.max_closed_steps, f"max_closed_steps ({self.max_closed_steps}) reached")
        if self.opened_at is None or step < self.opened_at:
            return 0.0
        if self.warmup_steps == 0:
            return 1.0
        return min(1.0, (step - self.opened_at + 1) / self.warmup_steps)

    def state(self, step: int) -> str:
        """closed, ramping or open at `step`."""
        w = self.weight(step)
        return "closed" if w == 0 else "open" if w >= 1 else "ramping"

    # observing the task signal -----------------------------------------------------------
    def observe(self, step: int, task_reward: float) -> None:
        """Record the task reward mean of `step`; in auto mode, maybe open the gate for step + 1."""
        if not math.isfinite(task_reward):
            return
        if self.history and self.history[-1][0] == step:
            self.history[-1] = (step, task_reward)  # a second generation batch in the same step
        else:
            self.history.append((step, task_reward))
        if self.mode == "auto" and self.opened_at is None:
            reason = self.should_open()
            if reason:
                self._open(step + 1, reason)

    def should_open(self) -> str | None:
        """Why the auto gate should open now (risen and plateaued), or None."""
        values = [v for _, v in self.history]
        w = self.window
        if len(values) < 2 * w:
            return None
        first = values[:w]
        m0, s0 = statistics.fmean(first), statistics.pstdev(first)
        last, before = values[-w:], values[-2 * w : -w]
        rolling, rolling_before = statistics.fmean(last), statistics.fmean(before)
        risen = rolling - m0 >= s0 and rolling > m0
        standard_error = statistics.pstdev(last) / math.sqrt(w)
        plateau = abs(rolling - rolling_before) <= standard_error
        if risen and plateau:
            return f"task reward rose from {m0:.3f} to {rolling:.3f} and plateaued"
        return None

    def _open(self, step: int, reason: str) -> None:
        self.opened_at = step
        self.reason = reason

    # checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after a resume (JSON-safe)."""
        return {"mode": self.mode, "opened_at": self.opened_at, "reason": self.reason, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()` (the mode of the saved gate must match)."""
        if state.get("mode") != self.mode:
            return  # the resumed run changed the gate: start its decision afresh
        self.opened_at = state.get("opened_at")
        self.reason = state.get("reason", self.reason)
        self.history = [(int(s), float(v)) for s, v in state.get("history", [])]
