"""carl_eval: evaluate a checkpoint and apply an eval gate (pass/fail with reasons).

Small evals (n <= INLINE_LIMIT prompts) answer inline; larger ones (or mode="job") start a
job of kind "eval" and answer at once with its job id. Either way the verdict ends up in
`eval.json` next to the checkpoint (its run directory), where carl_push reads it.
Everything is checked before anything is started or written.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from carl_engine.errors import InvalidSpecError
from carl_engine.evaluation.spec import INLINE_LIMIT, EvalMetrics, EvalSpec, GateThresholds, validated
from carl_studio.tools.base import Request, Response, ToolContext, ToolSpec


class EvalRequest(Request):
    checkpoint: str = Field(
        ..., min_length=1, max_length=4096,
        description="What to evaluate: a checkpoint folder (full model or LoRA adapter), a run directory, or a job "
        "id (its latest checkpoint).",
    )
    task: str = Field("arithmetic", min_length=1, max_length=64, description="Built-in task whose verifier scores answers (and whose prompts are used when no dataset is given).")
    dataset: str | None = Field(None, min_length=1, max_length=4096, description="Local .jsonl/.json/.csv/.parquet file with 'prompt' and 'answer' columns.")
    n: int = Field(32, ge=1, le=10_000, description=f"Prompts to evaluate (1-10000). Above {INLINE_LIMIT} the eval runs as a job.")
    group_size: int = Field(4, ge=1, le=16, description="Sampled completions per prompt, for Φ, CARL and group diversity (1 = no diversity).")
    temperature: float = Field(1.0, gt=0.0, le=2.0, description="Sampling temperature of the sampled completions (accuracy uses greedy decoding).")
    max_new_tokens: int = Field(32, ge=1, le=4096, description="Longest completion, in tokens.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the generated prompts and of sampling.")
    min_accuracy: float | None = Field(None, ge=0.0, le=1.0, description="Gate: pass only if greedy task accuracy >= this.")
    phi_min: float | None = Field(None, ge=0.0, le=1.0, description="Gate: pass only if mean Φ >= this.")
    phi_max: float | None = Field(None, ge=0.0, le=1.0, description="Gate: pass only if mean Φ <= this (Φ near 1 with low diversity means collapse).")
    min_diversity: float | None = Field(None, ge=0.0, le=1.0, description="Gate: pass only if mean group diversity >= this (needs group_size >= 2).")
    baseline: str | None = Field(None, min_length=1, max_length=4096, description="Gate: a checkpoint or job id; pass only if accuracy and diversity are not worse than its beyond the 95% intervals.")
    mode: Literal["auto", "inline", "job"] = Field("auto", description=f"auto: inline up to {INLINE_LIMIT} prompts, else a job. inline: answer in this call. job: always start a job.")
    compute: str = Field("local", max_length=400, description="For a job: where it runs (local, ray[:address], hf_jobs:<flavor>, ...).")


class EvalResponse(Response):
    mode: Literal["inline", "job"] = Field(description="inline: the verdict is below. job: an eval job was started; follow job_id.")
    job_id: str | None = Field(None, description="The eval job's id (mode=job).")
    state: str | None = Field(None, description="The eval job's state right after submission (mode=job).")
    passed: bool | None = Field(None, description="The gate's verdict (inline), null while a job runs.")
    verdict: Literal["pass", "fail"] | None = Field(None, description="'pass' or 'fail' (inline).")
    reasons: list[str] = Field(default_factory=list, description="One line per gate rule, with the numbers.")
    checkpoint: str | None = Field(None, description="The checkpoint folder evaluated.")
    metrics: EvalMetrics | None = Field(None, description="Accuracy (Wilson 95%), Φ, CARL components, diversity, length.")
    baseline_metrics: EvalMetrics | None = Field(None, description="The baseline's metrics on the same prompts.")
    eval_json: list[str] = Field(default_factory=list, description="Where eval.json was written.")
    duration_s: float | None = Field(None, description="Seconds the inline eval took.")
    next: str = Field(description="What to do next.")


def _spec(request: EvalRequest) -> EvalSpec:
    gate = {k: getattr(request, k) for k in GateThresholds.model_fields if getattr(request, k) is not None}
    data: dict[str, Any] = {
        k: getattr(request, k)
        for k in ("checkpoint", "task", "dataset", "n", "group_size", "temperature", "max_new_tokens", "seed")
    }
    return validated(EvalSpec, {**data, "gate": gate})


def _brief(metrics: EvalMetrics | None) -> EvalMetrics | None:
    return None if metrics is None else metrics.model_copy(update={"correct": []})


def carl_eval(request: EvalRequest, ctx: ToolContext) -> EvalResponse:
    """Evaluate a checkpoint on a task and apply the gate; inline for small n, else as a job.

    Raises:
        InvalidSpecError: a bad field, a missing checkpoint folder, an unknown task, a bad dataset file.
        JobNotFoundError: `checkpoint` (or `baseline`) is neither a folder nor a known job id.
    """
    try:
        spec = _spec(request)
        spec.check_inputs()  # checkpoint, baseline, task, dataset: before anything starts
    except InvalidSpecError as err:  # name the request's own (flat) field: gate.phi_min -> phi_min
        if err.field.startswith("gate."):
            raise InvalidSpecError(err.field.removeprefix("gate."), err.rule) from None
        raise
    inline = request.mode == "inline" or (request.mode == "auto" and spec.n <= INLINE_LIMIT)
    if not inline:
        job = ctx.jobs.submit("eval", spec.model_dump(mode="json"), compute=request.compute)
        state = getattr(job.state, "value", job.state)
        return EvalResponse(mode="job", job_id=job.job_id, state=str(state),
                            next=f"call carl_status with job_id={job.job_id}; when it has succeeded its result holds "
                            "the verdict and eval.json sits next to the checkpoint")
    from carl_engine.evaluation.evaluate import run_eval

    report, written = run_eval(spec)
    next_step = (
        "the gate passed: carl_push can publish this checkpoint" if report.passed
        else "the gate failed: change one setting (steps, learning rate, CARL weight) and train again, or evaluate "
        "another checkpoint"
    )
    return EvalResponse(
        mode="inline", passed=report.passed, verdict=report.verdict, reasons=report.reasons,
        checkpoint=report.checkpoint, metrics=_brief(report.metrics), baseline_metrics=_brief(report.baseline_metrics),
        eval_json=[str(p) for p in written], duration_s=round(report.duration_s, 3), next=next_step,
    )


EVAL = ToolSpec(
    name="carl_eval",
    title="Evaluate a checkpoint (eval gate)",
    description="Evaluate a checkpoint (folder, run directory or job id; LoRA adapters too) on a built-in task or a "
    "local prompt/answer file: greedy task accuracy with a Wilson 95% interval, mean Φ, CARL composite and "
    "components, group diversity, mean length. Gate rules (min_accuracy, phi_min/phi_max, min_diversity, baseline) "
    f"give pass/fail with reasons, written to eval.json for carl_push. Up to {INLINE_LIMIT} prompts answer inline; "
    "more start an eval job.",
    request=EvalRequest,
    response=EvalResponse,
    fn=carl_eval,
    open_world=False,
)
