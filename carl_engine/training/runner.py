"""train(spec, run_dir) -> RunResult: one training run, start to finish, in this process.

Writes only the run directory: events.jsonl (through the events callback), checkpoints/
(TRL's checkpoint-N folders, each with model, optimizer, scheduler, RNG state and, for
GRPO with carl, the cascade gate). `resume_from` continues a checkpoint: model, optimizer,
scheduler and RNG state are restored and the global step goes on to `max_steps`.
The caller (carl_engine.run) writes result.json.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from carl_engine.runs import RunDir, RunResult
from carl_engine.training.callbacks import EventHook, RunEventsCallback
from carl_engine.training.spec import TrainSpec

log = logging.getLogger(__name__)


def train(spec: TrainSpec | dict[str, Any], run_dir: RunDir | str | os.PathLike[str], *, on_event: EventHook | None = None) -> RunResult:
    """Train per `spec`, writing events and checkpoints into `run_dir`.

    Args:
        spec: a TrainSpec (or its dict form).
        run_dir: the run directory (created if needed).
        on_event: called with (kind, fields) for every event written to events.jsonl.

    Returns:
        A succeeded RunResult: the global step, final logged metrics, latest checkpoint.

    Raises:
        InvalidSpecError: bad input, found before training starts.
        Exception: whatever training raised (the caller records it as a failed result).
    """
    from transformers import set_seed

    from carl_engine.training.builder import build_trainer
    from carl_engine.training.checks import resume_checkpoint

    spec = spec if isinstance(spec, TrainSpec) else TrainSpec.parse(spec)
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    run_dir.create()
    resume = resume_checkpoint(spec.resume_from) if spec.resume_from else None
    set_seed(spec.seed)

    events = RunEventsCallback(run_dir, spec.max_steps, on_event=on_event)
    trainer = build_trainer(spec, run_dir, callbacks=[events])
    events.gate = getattr(trainer, "gate", None)
    log.info("training %s on %s with %s for %d steps", spec.model, spec.dataset, spec.method, spec.max_steps)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    latest = run_dir.latest_checkpoint()
    return RunResult(
        status="succeeded",
        step=trainer.state.global_step,
        max_steps=spec.max_steps,
        metrics=_final_metrics(events.last_metrics),
        checkpoint=str(latest) if latest else None,
        extra=_extra(trainer, resume),
    )


def run(spec: dict[str, Any], run_dir: RunDir) -> RunResult:
    """The "train" job handler of carl_engine.run: `train(TrainSpec.parse(spec), run_dir)`."""
    return train(TrainSpec.parse(spec), run_dir)


def _final_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("train_")} | {
        k: v for k, v in metrics.items() if k in ("train_loss", "train_runtime")
    }


def _extra(trainer: Any, resume: Path | None) -> dict[str, Any]:
    extra: dict[str, Any] = {"resumed_from": str(resume) if resume else None}
    if getattr(trainer, "gate", None) is not None:
        gate = trainer.gate
        extra["gate"] = {"mode": gate.mode, "opened_at": gate.opened_at, "reason": gate.reason}
    if hasattr(trainer, "capture_path"):
        extra["capture_path"] = trainer.capture_path
    return extra
