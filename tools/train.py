"""carl_train: start a training job (or a pipeline, or a resume) and answer at once.

The request carries every field of `TrainSpec` (same names, descriptions and bounds: the
spec is the one description of a run), all optional, plus what only the tool decides:
where it runs (`compute`), a YAML/JSON `config` to start from, `resume`, `pipeline`,
`dry_run` and `smoke`. Fields given in the request override the config file's.

`smoke=true` first runs the same spec for one step as a local job and starts the real job
only if that succeeds — a cheap way to catch a configuration error before paying for
remote GPUs. It is the one mode that waits (at most `smoke_timeout_s`).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field, create_model
from pydantic.fields import FieldInfo

from carl_engine.errors import InvalidSpecError, TrainingError
from carl_engine.training.spec import TrainSpec
from carl_studio.tools.base import JobId, Request, Response, ToolContext, ToolSpec
from carl_studio.tools.estimate import Estimate, estimate_run
from carl_studio.tools.models import TERMINAL_STATES, JobStatus, job_status

COMPUTE_PATTERN = r"^(local|ray(:[^\s]{1,200})?|hf_jobs:[A-Za-z0-9._-]{1,64}|runpod:[^\s]{1,100}|ssh:[^\s]{1,300}|[a-z_]{1,32}(:[^\s]{0,300})?)$"
PIPELINE_FIELDS = ("model", "task", "seed")  # TrainSpec fields that carry over to a pipeline


def _optional(info: FieldInfo) -> tuple[Any, FieldInfo]:
    """A TrainSpec field as an optional request field: same type, description and bounds, default None."""
    copy = FieldInfo.merge_field_infos(info, default=None)
    copy.default_factory = None
    return (info.annotation | None, copy)


_SPEC_FIELDS = {name: _optional(info) for name, info in TrainSpec.model_fields.items()}

#: Every TrainSpec field, optional, with the spec's own description and bounds.
_TrainSpecFields = create_model("_TrainSpecFields", __base__=Request, **_SPEC_FIELDS)


class TrainRequest(_TrainSpecFields):
    """Start a training job: TrainSpec fields (all optional; defaults: carl-tiny GRPO on arithmetic with task +
    CARL rewards), then where and how to start it."""

    compute: str = Field(
        "local",
        max_length=400,
        pattern=COMPUTE_PATTERN,
        description="Where to run: local | ray[:address] | hf_jobs:<flavor> | runpod:<gpu type> | "
        "ssh:<user@host[:port]>. carl_compute lists backends, flavors and whether credentials are set.",
    )
    config: str | None = Field(
        None,
        max_length=4096,
        description="Path of a YAML (carl.yaml) or JSON spec to start from; fields given here override its values.",
    )
    resume: JobId | None = Field(
        None,
        description="Resume this failed, lost or cancelled job from its latest checkpoint (a new attempt; the global "
        "step continues). No other spec field may be given with it.",
    )
    pipeline: bool = Field(
        False,
        description="Run the whole pipeline as one job: SFT, an eval gate, GRPO with the CARL cascade, a final eval "
        "(and a push when configured). model, task and seed carry over; other settings go in pipeline_options.",
    )
    pipeline_options: dict[str, Any] | None = Field(
        None,
        description="With pipeline=true: PipelineSpec fields (e.g. sft_steps, grpo_steps, carl_weight, push_to).",
    )
    dry_run: bool = Field(
        False, description="Validate everything and return the plan and estimate without starting a job."
    )
    smoke: bool = Field(
        False,
        description="First run the same spec for 1 step as a local job; start the real job only if it succeeds "
        "(the call then waits up to smoke_timeout_s).",
    )
    smoke_timeout_s: int = Field(240, ge=10, le=3600, description="With smoke=true: the longest the smoke run may take.")


class SmokeResult(Response):
    job_id: str = Field(description="The smoke job's id (a 1-step local job).")
    state: Literal["succeeded", "failed", "cancelled", "lost", "timed_out"] = Field(description="How the smoke run ended.")
    seconds: float = Field(ge=0, description="How long it took.")
    error: str | None = Field(None, description="Why it failed, when it did.")


class TrainResponse(Response):
    job_id: str | None = Field(None, description="The new job's id (null for a dry run). Pass it to carl_status.")
    kind: Literal["train", "pipeline"] = Field(description="train: one TRL run. pipeline: SFT -> gate -> GRPO -> eval.")
    state: str | None = Field(None, description="The job's state right after submission (usually queued or starting).")
    error: str | None = Field(None, description="Why the submission failed (state failed): e.g. the backend is unreachable.")
    backend: str = Field(description="Where it runs: local, ray, hf_jobs, runpod or ssh.")
    target: str | None = Field(None, description="The backend's target (flavor, GPU type, host, Ray address).")
    run_dir: str | None = Field(None, description="The job's run directory (spec.json, events.jsonl, train.log, checkpoints/).")
    resumes: str | None = Field(None, description="For a resume: the job it continues.")
    dry_run: bool = Field(False, description="True when nothing was started.")
    plan: list[str] = Field(default_factory=list, description="What the job will do, one line a stage.")
    estimate: Estimate = Field(description="Steps, the model's size and whether it fits the target's memory.")
    smoke: SmokeResult | None = Field(None, description="The smoke run's outcome, when smoke=true.")
    poll_after_s: int | None = Field(None, description="Seconds after which carl_status is worth calling.")
    next: str = Field(description="What to do next.")


def carl_train(request: TrainRequest, ctx: ToolContext) -> TrainResponse:
    """Validate a training (or pipeline) spec and submit it as a job; returns at once.

    Raises:
        InvalidSpecError: a field breaks a rule (named), before anything is written.
        MissingCredentialsError: the compute backend needs a variable that is not set.
        JobNotFoundError: `resume` names no job.
        TrainingError: the smoke run failed (its job id and error are in the message).
    """
    given = _spec_fields_given(request)
    if request.resume is not None:
        if given or request.pipeline or request.config:
            raise InvalidSpecError("resume", "takes no other spec field; the resumed job keeps its own spec",
                                   hint=f"drop {', '.join(sorted(given) or ['pipeline/config'])}")
        job = ctx.jobs.resume(request.resume)
        return _submitted(job, kind=job.kind, plan=[f"resume {request.resume} from its latest checkpoint"],
                          estimate=Estimate(max_steps=job.max_steps))
    kind, spec, plan = (_pipeline_spec if request.pipeline else _train_spec)(request, given)
    estimate = estimate_run(kind, spec, request.compute)
    if request.dry_run:
        where = _dry_run_checks(kind, spec, request.compute)
        return TrainResponse(kind=kind, backend=where.backend, target=where.target, dry_run=True, plan=plan,
                             estimate=estimate, next="nothing was started; call carl_train again without dry_run to start it")
    smoke = _smoke(ctx, kind, spec, request.smoke_timeout_s) if request.smoke else None
    job = ctx.jobs.submit(kind, spec, compute=request.compute)
    return _submitted(job, kind=kind, plan=plan, estimate=estimate, smoke=smoke)


def _dry_run_checks(kind: str, spec: dict[str, Any], compute: str) -> Any:
    """The checks `JobManager.submit` makes before writing anything, without submitting."""
    import os

    from carl_engine.backends import get_backend
    from carl_engine.errors import MissingCredentialsError
    from carl_engine.jobs.manager import parse_compute, validate_spec

    validate_spec(kind, spec)
    where = parse_compute(compute)
    for variable in get_backend(where.backend).credentials:
        if not os.environ.get(variable):
            raise MissingCredentialsError(variable, f"the {where.backend} backend")
    return where


def _spec_fields_given(request: Any) -> set[str]:
    return {name for name in request.model_fields_set if name in _SPEC_FIELDS}


def _train_spec(request: Any, given: set[str]) -> tuple[str, dict[str, Any], list[str]]:
    """The TrainSpec as a dict: the config file's fields, then the request's given fields."""
    if request.pipeline_options is not None:
        raise InvalidSpecError("pipeline_options", "applies with pipeline=true only")
    base = TrainSpec.from_file(request.config).model_dump(exclude_unset=True) if request.config else {}
    for name in given:
        value = getattr(request, name)
        base[name] = value.model_dump(exclude_unset=True) if hasattr(value, "model_dump") else value
    spec = TrainSpec.parse(base)
    rewards = spec.effective_rewards()
    what = f"{spec.method} on {spec.model} with {spec.dataset}"
    if rewards:
        what += ", rewards " + " + ".join(f"{name} ({weight:g})" for name, weight in rewards.items())
        if "carl" in rewards:
            what += f", CARL {spec.carl.preset} preset, cascade gate {spec.cascade.gate}"
    what += f", {'LoRA r=' + str(spec.lora.r) if spec.lora else 'full fine-tuning'}, {spec.max_steps} steps, seed {spec.seed}"
    return "train", spec.model_dump(mode="json"), [what]


def _pipeline_spec(request: Any, given: set[str]) -> tuple[str, dict[str, Any], list[str]]:
    from carl_engine.pipeline import PipelineSpec

    data: dict[str, Any] = {}
    if request.config:
        data.update(_read_mapping(request.config))
    data.update(request.pipeline_options or {})
    for name in sorted(given):
        value = getattr(request, name)
        if name in PIPELINE_FIELDS:
            data[name] = value
        elif name == "dataset":
            data["task"] = value
        elif name == "lora":
            data["lora"] = value is not None
        else:
            raise InvalidSpecError(
                name, "does not apply with pipeline=true", hint="set PipelineSpec fields in pipeline_options instead"
            )
    spec = PipelineSpec.from_dict(data)
    return "pipeline", spec.model_dump(mode="json"), spec.plan()


def _read_mapping(path: str) -> dict[str, Any]:
    """A YAML/JSON file's top-level mapping (for pipeline configs)."""
    import json
    from pathlib import Path

    file = Path(path).expanduser()
    if not file.is_file():
        raise InvalidSpecError("config", "file does not exist", got=path)
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(file.read_text())
        else:
            import yaml

            data = yaml.safe_load(file.read_text()) or {}
    except Exception as exc:  # json/yaml parse errors
        raise InvalidSpecError("config", f"is not valid YAML/JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise InvalidSpecError("config", "must hold a mapping of field names to values")
    return data


def smoke_spec(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The same spec cut to one step (a pipeline: one step a training stage, a small eval, no push)."""
    if kind == "pipeline":
        return {**spec, "sft_steps": min(1, spec.get("sft_steps", 1)), "grpo_steps": min(1, spec.get("grpo_steps", 1)),
                "eval_n": min(4, spec.get("eval_n", 4)), "push_to": None, "push_local_dir": None, "resume_dir": None}
    return {**spec, "max_steps": 1, "save_steps": None, "resume_from": None}


def _smoke(ctx: ToolContext, kind: str, spec: dict[str, Any], timeout_s: int) -> SmokeResult:
    """Run `spec` cut to one step as a local job and wait for it (bounded)."""
    started = time.monotonic()
    job = ctx.jobs.submit(kind, smoke_spec(kind, spec), compute="local")
    state = getattr(job.state, "value", job.state)
    while state not in TERMINAL_STATES and time.monotonic() - started < timeout_s:
        time.sleep(0.5)
        job = ctx.jobs.get(job.job_id)
        state = getattr(job.state, "value", job.state)
    seconds = round(time.monotonic() - started, 2)
    if state not in TERMINAL_STATES:
        ctx.jobs.stop(job.job_id, reason=f"smoke run exceeded {timeout_s} s")
        raise TrainingError(f"smoke run {job.job_id} did not finish within {timeout_s} s; nothing else was started",
                            hint="raise smoke_timeout_s, or run without smoke", job_id=job.job_id)
    if state != "succeeded":
        raise TrainingError(f"smoke run {job.job_id} {state}: {job.error or 'no error recorded'}; nothing else was "
                            "started", hint=f"carl_logs job_id={job.job_id} shows its output", job_id=job.job_id)
    return SmokeResult(job_id=job.job_id, state="succeeded", seconds=seconds)


def _submitted(job: Any, *, kind: str, plan: list[str], estimate: Estimate, smoke: SmokeResult | None = None) -> TrainResponse:
    status: JobStatus = job_status(job)
    return TrainResponse(
        job_id=status.job_id,
        kind=kind if kind in ("train", "pipeline") else "train",
        state=status.state,
        backend=status.backend,
        target=status.target,
        run_dir=status.run_dir,
        resumes=status.resumes,
        plan=plan,
        estimate=estimate,
        smoke=smoke,
        poll_after_s=status.poll_after_s,
        error=status.error if status.state == "failed" else None,
        next="the submission failed: fix what the error names (or pick another compute) and call carl_train again"
        if status.state == "failed"
        else f"call carl_status with job_id={status.job_id} in about {status.poll_after_s or 10} s; "
        f"carl_logs shows its output, carl_stop ends it",
    )


TRAIN = ToolSpec(
    name="carl_train",
    title="Start training",
    description="Start a training job and return its job_id at once: method (sft, grpo, dpo, kto, orpo), model "
    "(carl-tiny, a local folder or a Hub name), dataset/task, GRPO rewards with weights (task, carl, diversity), "
    "the CARL preset and cascade gate, LoRA, steps, seed, TRL pass-through (trl), compute target; or a YAML config; "
    "or resume=<job_id>; or pipeline=true for SFT -> gate -> GRPO -> eval. dry_run validates only; smoke runs one "
    "local step first. Defaults: carl-tiny GRPO on arithmetic with task + CARL rewards, locally.",
    request=TrainRequest,
    response=TrainResponse,
    fn=carl_train,
    open_world=True,
)
