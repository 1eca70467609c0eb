"""The trainer callback that makes the run directory the truth about a training job.

Appends to `events.jsonl` (through RunDir.append_event, one JSON object a line):
    progress    at the start and after every optimizer step: step, max_steps
    metrics     every dict TRL logs (loss, reward, rewards/<fn>/mean, carl/*, gate/*, ...)
    gate        whenever the cascade gate's state or CARL weight changes: state, carl_weight, reason
    checkpoint  every saved checkpoint: path
and prints one line per logging step to stdout (the job's train.log).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from transformers import TrainerCallback

from carl_engine.runs import RunDir

EventHook = Callable[[str, dict[str, Any]], None]
SHOWN = ("loss", "reward", "carl/phi_mean", "gate/carl_weight", "learning_rate", "train_loss", "train_runtime")


class RunEventsCallback(TrainerCallback):
    """Streams metrics, progress, gate changes and checkpoints into a run directory.

    Args:
        run_dir: the job's run directory.
        max_steps: the step the run ends at.
        gate: the cascade gate to watch (GRPO with carl), or None.
        on_event: also called with (kind, fields) for every event (e.g. a live CLI display).
        stream: where the per-step log line goes (stdout by default).
    """

    def __init__(
        self,
        run_dir: RunDir,
        max_steps: int,
        *,
        gate: Any = None,
        on_event: EventHook | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.max_steps = max_steps
        self.gate = gate
        self.on_event = on_event
        self.stream = stream
        self.last_metrics: dict[str, float] = {}
        self._last_gate: tuple[str, float] | None = None

    def _emit(self, kind: str, step: int, **fields: Any) -> None:
        self.run_dir.append_event(kind, step=step, **fields)
        if self.on_event is not None:
            self.on_event(kind, {"step": step, **fields})

    def on_train_begin(self, args, state, control, **kwargs):
        self._emit("progress", state.global_step, max_steps=self.max_steps)
        self._gate_event(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        metrics = {k: float(v) for k, v in (logs or {}).items() if _is_number(v)}
        if not metrics:
            return
        self.last_metrics.update(metrics)
        self._emit("metrics", state.global_step, metrics=metrics)
        shown = " ".join(f"{k}={metrics[k]:.4g}" for k in SHOWN if k in metrics)
        print(f"step {state.global_step}/{self.max_steps} {shown}", file=self.stream or sys.stdout, flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        self._emit("progress", state.global_step, max_steps=self.max_steps)
        self._gate_event(state.global_step)

    def on_save(self, args, state, control, **kwargs):
        path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        self._emit("checkpoint", state.global_step, path=path)

    def _gate_event(self, step: int) -> None:
        if self.gate is None:
            return
        current = (self.gate.state(step), self.gate.weight(step))
        if current != self._last_gate:
            self._last_gate = current
            self._emit("gate", step, state=current[0], carl_weight=current[1], reason=self.gate.reason)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
