"""The eval gate: evaluate a checkpoint on a task, decide pass/fail, write eval.json.

Light at import (pydantic only): the sampling code loads torch inside its functions.

    from carl_engine.evaluation import EvalSpec, evaluate
    report = evaluate(EvalSpec(checkpoint="~/.carl/runs/<job>/checkpoints/checkpoint-40",
                               n=32, gate={"min_accuracy": 0.6}))
    report.passed, report.reasons, report.metrics.accuracy
"""

from __future__ import annotations

from carl_engine.evaluation.gate import decide
from carl_engine.evaluation.spec import (
    INLINE_LIMIT,
    EvalMetrics,
    EvalReport,
    EvalSpec,
    GateThresholds,
    Interval,
    read_report,
    validated,
    write_report,
)
from carl_engine.evaluation.stats import mcnemar_exact, mean_interval, wilson_interval

__all__ = [
    "INLINE_LIMIT",
    "EvalMetrics",
    "EvalReport",
    "EvalSpec",
    "GateThresholds",
    "Interval",
    "decide",
    "evaluate",
    "mcnemar_exact",
    "mean_interval",
    "read_report",
    "resolve_checkpoint",
    "validated",
    "wilson_interval",
    "write_report",
]


def __getattr__(name: str):  # evaluate and resolve_checkpoint load lazily (they pull in torch)
    if name in ("evaluate", "resolve_checkpoint"):
        from carl_engine.evaluation import evaluate as _mod

        return getattr(_mod, name)
    raise AttributeError(name)
