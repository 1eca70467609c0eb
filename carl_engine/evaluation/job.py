"""The job handler for kind "eval": `python -m carl_engine.run` calls `run(spec, run_dir)`.

Larger evals (n above `INLINE_LIMIT`) run here, in their own process. eval.json goes both
into this job's run directory and next to the checkpoint evaluated (its run directory),
where carl_push looks for it. A failing gate is a verdict, not a failed job: the job
succeeds and its result carries `passed` and the reasons.
"""

from __future__ import annotations

from typing import Any

from carl_engine.evaluation.spec import EvalSpec
from carl_engine.runs import RunDir, RunResult


def run(spec: dict[str, Any], run_dir: RunDir) -> RunResult:
    """Evaluate as the spec says; write eval.json; return the result.

    Raises:
        InvalidSpecError, JobNotFoundError: bad spec, checkpoint or dataset (run.py records the error).
    """
    from carl_engine.evaluation.evaluate import run_eval

    eval_spec = EvalSpec.from_dict(spec)
    run_dir.append_event("stage", stage="eval", status="started", checkpoint=eval_spec.checkpoint)
    report, written = run_eval(eval_spec, also_write_to=run_dir.path)
    metrics = report.metrics.flat()
    run_dir.append_event("metrics", step=0, metrics=metrics)
    run_dir.append_event("stage", stage="eval", status="completed", passed=report.passed, reasons=report.reasons)
    return RunResult(
        status="succeeded",
        metrics=metrics,
        checkpoint=report.checkpoint,
        extra={"passed": report.passed, "verdict": report.verdict, "reasons": report.reasons,
               "eval_json": [str(p) for p in written]},
    )
