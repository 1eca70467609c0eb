"""The pipeline: SFT -> eval gate -> GRPO with the CARL cascade -> eval -> push, as one job.

`carl train --send-it` and `carl_train(pipeline=true)` submit a job of kind "pipeline"
whose spec is a `PipelineSpec`; every field has a default, so the bare command trains
carl-tiny on the arithmetic task on CPU in a few minutes.

Each stage records `stage` events in the pipeline's events.jsonl
(`{"kind": "stage", "stage": "sft", "status": "started"|"completed"|"failed"|"skipped", ...}`),
so carl_status can show where it is. Training stages write their own run directory under
`<run_dir>/stages/<stage>/`; their metrics are mirrored into the pipeline's events with a
global step. A resumed pipeline (same run directory, or a new one whose spec names the
old one in `resume_dir`) skips the stages already completed and continues a stage that
was cut off from its latest checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from carl_engine.errors import InvalidSpecError
from carl_engine.evaluation.spec import EvalReport, EvalSpec, GateThresholds, validated, write_report
from carl_engine.runs import RunDir, RunResult

STAGES: tuple[str, ...] = ("sft", "sft_gate", "grpo", "eval", "push")

_HUB_REPO = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"


class PipelineSpec(BaseModel):
    """Everything a pipeline run needs; every field has a default (the embedded default job)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("carl-tiny", min_length=1, max_length=4096, description="Base model: carl-tiny, a local path or a Hub name.")
    task: str = Field("arithmetic", min_length=1, max_length=64, description="Built-in task for data, rewards and eval.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of every stage (data, init, sampling).")
    lora: bool = Field(False, description="Train LoRA adapters instead of the full model.")

    sft_steps: int = Field(200, ge=0, le=1_000_000, description="SFT steps; 0 skips SFT (and its gate).")
    sft_learning_rate: float = Field(3e-3, gt=0.0, le=1.0, description="SFT learning rate.")
    sft_batch_size: int = Field(16, ge=1, le=4096, description="SFT batch size per device.")
    sft_gate: GateThresholds = Field(
        default_factory=lambda: GateThresholds(min_accuracy=0.3),
        description="Rules the SFT checkpoint must pass before GRPO starts.",
    )

    grpo_steps: int = Field(20, ge=0, le=1_000_000, description="GRPO steps; 0 skips GRPO.")
    grpo_learning_rate: float = Field(1e-4, gt=0.0, le=1.0, description="GRPO learning rate.")
    num_generations: int = Field(4, ge=2, le=64, description="GRPO group size (completions per prompt).")
    grpo_batch_size: int = Field(16, ge=1, le=4096, description="GRPO batch size per device (a multiple of num_generations).")
    max_completion_length: int = Field(8, ge=1, le=32_768, description="Longest GRPO completion, in tokens.")
    carl_preset: Literal["paper", "guarded"] = Field(
        "guarded", description="CARL weights: 'paper' (0.5/0.3/0.2) or 'guarded' (adds the diversity term)."
    )
    carl_weight: float = Field(0.5, ge=0.0, le=100.0, description="Weight of the CARL reward next to the task reward (1.0).")
    cascade: Literal["off", "steps", "auto"] = Field("steps", description="When CARL switches on: off (from step 0), at a step, or auto.")
    cascade_start_step: int = Field(2, ge=0, le=1_000_000, description="With cascade='steps': the GRPO step at which CARL starts.")
    warmup_steps: int = Field(2, ge=0, le=1_000_000, description="Steps over which CARL's weight ramps from 0 to full.")

    eval_n: int = Field(64, ge=1, le=10_000, description="Prompts per eval.")
    eval_group_size: int = Field(4, ge=1, le=16, description="Sampled completions per eval prompt (diversity, Φ).")
    final_gate: GateThresholds = Field(
        default_factory=lambda: GateThresholds(min_accuracy=0.4),
        description="Rules the final checkpoint must pass to be pushed.",
    )
    compare_to_sft: bool = Field(
        True, description="Final gate also requires the GRPO checkpoint to be not worse than the SFT one beyond the intervals."
    )

    push_to: str | None = Field(None, pattern=_HUB_REPO, description="Hub repo id 'owner/name' to push to when the gate passes.")
    push_local_dir: str | None = Field(None, min_length=1, max_length=4096, description="Export the passing checkpoint to this local folder instead of (or besides) the Hub.")
    private: bool = Field(True, description="Create the Hub repo private.")

    sft_overrides: dict[str, Any] = Field(default_factory=dict, description="Extra TrainSpec fields for the SFT stage.")
    grpo_overrides: dict[str, Any] = Field(default_factory=dict, description="Extra TrainSpec fields for the GRPO stage.")
    resume_dir: str | None = Field(None, max_length=4096, description="Run directory of an earlier attempt whose completed stages are reused.")

    @model_validator(mode="after")
    def _rules(self) -> PipelineSpec:
        if self.sft_steps == 0 and self.grpo_steps == 0:
            raise InvalidSpecError("grpo_steps", "sft_steps and grpo_steps cannot both be 0")
        if self.grpo_steps and self.grpo_batch_size % self.num_generations:
            raise InvalidSpecError(
                "grpo_batch_size", f"must be a multiple of num_generations ({self.num_generations}); got {self.grpo_batch_size}"
            )
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None = None) -> PipelineSpec:
        """Validate a plain dict (a job spec; a "kind" key is ignored).

        Raises:
            InvalidSpecError: names the first field that breaks a rule.
        """
        data = {k: v for k, v in (data or {}).items() if k != "kind"}
        return validated(cls, data)

    def check(self) -> None:
        """The checks beyond the fields (the job manager calls this before writing a job row); see `check`."""
        check(self)

    # the plan ------------------------------------------------------------------------
    def plan(self) -> list[str]:
        """The stages this spec will run, one human-readable line each (for --dry-run)."""
        lines: list[str] = []
        what = f"{self.model}{' (LoRA)' if self.lora else ''}"
        if self.sft_steps:
            lines.append(
                f"1. sft: supervised fine-tuning of {what} on {self.task} for {self.sft_steps} steps "
                f"(lr {self.sft_learning_rate:g}, batch {self.sft_batch_size}, seed {self.seed})"
            )
            lines.append(f"2. sft_gate: eval the SFT checkpoint on {self.eval_n} {self.task} prompts; "
                         f"continue only if {_rules_text(self.sft_gate)}")
        else:
            lines.append("1. sft: skipped (sft_steps = 0)")
            lines.append("2. sft_gate: skipped (no SFT)")
        start = "the SFT checkpoint" if self.sft_steps else what
        if self.grpo_steps:
            cascade = {
                "off": "CARL on from step 0",
                "steps": f"cascade: task reward alone, CARL from step {self.cascade_start_step} "
                f"ramped over {self.warmup_steps} steps",
                "auto": f"cascade: CARL switches on when the task reward plateaus, ramped over {self.warmup_steps} steps",
            }[self.cascade]
            lines.append(
                f"3. grpo: GRPO from {start} for {self.grpo_steps} steps, rewards {self.task} (1.0) + carl "
                f"({self.carl_weight:g}, {self.carl_preset} preset), {cascade}; "
                f"{self.num_generations} completions per prompt"
            )
        else:
            lines.append("3. grpo: skipped (grpo_steps = 0)")
        final = "the GRPO checkpoint" if self.grpo_steps else "the SFT checkpoint"
        rules = _rules_text(self.final_gate)
        if self.compare_to_sft and self.sft_steps and self.grpo_steps:
            rules += " and it is not worse than the SFT checkpoint beyond the 95% intervals"
        lines.append(f"4. eval: eval {final} on {self.eval_n} prompts; the gate passes if {rules}")
        targets = [t for t in (self.push_to and f"the Hub repo {self.push_to}", self.push_local_dir and f"the folder {self.push_local_dir}") if t]
        if targets:
            lines.append(f"5. push: if the gate passes, push {final} to {' and '.join(targets)}")
        else:
            lines.append("5. push: skipped (no push_to or push_local_dir given)")
        return lines


def _rules_text(gate: GateThresholds) -> str:
    parts = []
    if gate.min_accuracy is not None:
        parts.append(f"accuracy >= {gate.min_accuracy:g}")
    if gate.phi_min is not None or gate.phi_max is not None:
        parts.append(f"mean Φ in [{gate.phi_min if gate.phi_min is not None else 0:g}, "
                     f"{gate.phi_max if gate.phi_max is not None else 1:g}]")
    if gate.min_diversity is not None:
        parts.append(f"diversity >= {gate.min_diversity:g}")
    if gate.baseline:
        parts.append(f"not worse than {gate.baseline}")
    return " and ".join(parts) if parts else "always (no rules)"


def plan(spec: dict[str, Any] | PipelineSpec | None = None) -> list[str]:
    """The plan of a pipeline spec (a dict, a PipelineSpec, or None for the defaults).

    Raises:
        InvalidSpecError: the spec breaks a rule.
    """
    if not isinstance(spec, PipelineSpec):
        spec = PipelineSpec.from_dict(spec)
    return spec.plan()


# running ---------------------------------------------------------------------------------
def check(spec: PipelineSpec) -> None:
    """The checks that need more than the fields (done before a job row is written).

    Raises:
        InvalidSpecError: unknown task; a local model path that does not exist.
        MissingCredentialsError: push_to given without HF_TOKEN.
    """
    import os

    from carl_engine.errors import MissingCredentialsError
    from carl_engine.tasks import get_task

    get_task(spec.task, field="task")
    looks_local = spec.model.startswith(("/", ".", "~")) or spec.model.count("/") > 1
    if looks_local and not Path(spec.model).expanduser().is_dir():
        raise InvalidSpecError("model", "local model path does not exist", got=spec.model)
    if spec.push_to and not os.environ.get("HF_TOKEN"):
        raise MissingCredentialsError("HF_TOKEN", f"pushing to the Hub repo {spec.push_to}")


def _mirror(dest: RunDir, offset: int, stage: str):
    """An `on_event` hook that copies a training stage's metrics, gate and checkpoint events into
    the pipeline's events.jsonl, with the step shifted by `offset` (a global step)."""

    def hook(kind: str, fields: dict[str, Any]) -> None:
        if kind not in ("metrics", "gate", "checkpoint"):
            return
        step = fields.get("step")
        rest = {k: v for k, v in fields.items() if k != "step"}
        dest.append_event(kind, step=None if step is None else step + offset, stage=stage, **rest)

    return hook


class _StageFailed(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class StageRunner:
    """Runs the stages of a pipeline spec in a run directory, reusing what is already done
    (see the module docstring); the A/B bench uses it for its training stages too."""

    def __init__(self, spec: PipelineSpec, run_dir: RunDir) -> None:
        self.spec, self.run_dir = spec, run_dir
        self.earlier = [run_dir] + ([RunDir(spec.resume_dir)] if spec.resume_dir else [])
        self.done = self._completed()
        self.metrics: dict[str, float] = {}

    def _completed(self) -> dict[str, dict[str, Any]]:
        """Stages completed by this run directory or the earlier attempt: stage -> its event."""
        done: dict[str, dict[str, Any]] = {}
        for run in reversed(self.earlier):
            for event in run.iter_events("stage"):
                if event.get("status") in ("completed", "reused"):
                    done[event["stage"]] = event
                elif event.get("status") in ("started", "failed"):
                    done.pop(event["stage"], None)
        return done

    def stage_dir(self, name: str) -> RunDir:
        return RunDir(self.run_dir.path / "stages" / name)

    def event(self, stage: str, status: str, **fields: Any) -> None:
        self.run_dir.append_event("stage", stage=stage, status=status, **fields)

    # stages ----------------------------------------------------------------------------
    def train(self, name: str, data: dict[str, Any], offset: int) -> str:
        """Run (or reuse, or continue) a training stage; returns its final checkpoint."""
        if name in self.done and Path(self.done[name].get("checkpoint", "")).is_dir():
            self.event(name, "reused", checkpoint=self.done[name]["checkpoint"])
            return self.done[name]["checkpoint"]
        from carl_engine.training.runner import train
        from carl_engine.training.spec import TrainSpec

        stage = self.stage_dir(name).create()
        for run in self.earlier:  # a stage that was cut off continues from its latest checkpoint
            latest = RunDir(run.path / "stages" / name).latest_checkpoint()
            if latest is not None:
                data = {**data, "resume_from": str(latest)}
                break
        spec = TrainSpec.parse(data)
        stage.write_spec({**spec.model_dump(mode="json"), "kind": "train"})
        self.event(name, "started", resume_from=data.get("resume_from"))
        started = time.time()
        try:
            result = train(spec, stage, on_event=_mirror(self.run_dir, offset, name))
        except Exception as err:  # recorded as the stage's failure, then the job's (run.py)
            self.event(name, "failed", error=f"{type(err).__name__}: {err}")
            raise
        stage.write_result(result)
        checkpoint = result.checkpoint or (str(stage.latest_checkpoint()) if stage.latest_checkpoint() else None)
        if result.status != "succeeded" or checkpoint is None:
            why = result.error or f"training {result.status} without a checkpoint"
            self.event(name, "failed", error=why)
            raise _StageFailed(name, f"{name} stage {result.status}: {why}")
        self.metrics.update({f"{name}/{k}": v for k, v in result.metrics.items()})
        self.event(name, "completed", checkpoint=checkpoint, seconds=round(time.time() - started, 2))
        return checkpoint

    def evaluate(self, name: str, checkpoint: str, gate: GateThresholds, *, root: bool = False) -> EvalReport:
        """Evaluate a checkpoint with a gate; eval.json goes to the stage folder (and the run root)."""
        from carl_engine.evaluation.evaluate import evaluate, report_folder
        from carl_engine.evaluation.spec import read_report

        earlier = read_report(self.stage_dir(name).path) if name in self.done else None
        if earlier is not None and earlier.checkpoint == str(Path(checkpoint).resolve()):
            self.event(name, "reused", passed=earlier.passed, reasons=earlier.reasons, checkpoint=checkpoint)
            return earlier
        s = self.spec
        spec = EvalSpec(checkpoint=checkpoint, task=s.task, n=s.eval_n, group_size=s.eval_group_size,
                        max_new_tokens=s.max_completion_length, seed=s.seed, gate=gate)
        self.event(name, "started", checkpoint=checkpoint)
        report = evaluate(spec)
        folders = [self.stage_dir(name).create().path, report_folder(report.checkpoint)]  # the latter: carl_push's
        for folder in dict.fromkeys(f for f in folders + [self.run_dir.path if root else None] if f is not None):
            write_report(report, folder)
        named = {f"{name}/{k.removeprefix('eval/')}": v for k, v in report.metrics.flat().items()}  # eval/accuracy, ...
        self.metrics.update(named)
        self.run_dir.append_event("metrics", step=None, stage=name, metrics=named)
        status = "completed" if report.passed else "failed"
        self.event(name, status, passed=report.passed, reasons=report.reasons, checkpoint=checkpoint)
        return report

    def push(self, checkpoint: str) -> dict[str, Any]:
        """Export and/or push the checkpoint that passed, with its model card (carl_engine.hub)."""
        if "push" in self.done:
            fields = {k: v for k, v in self.done["push"].items() if k in ("local_dir", "repo_id", "url")}
            self.event("push", "reused", **fields)
            return fields
        from carl_engine.errors import CarlError
        from carl_engine.hub import push

        s = self.spec
        self.event("push", "started", checkpoint=checkpoint)
        out: dict[str, Any] = {}
        try:
            if s.push_local_dir:
                out["local_dir"] = push(checkpoint, local_dir=s.push_local_dir).local_dir
            if s.push_to:
                pushed = push(checkpoint, repo_id=s.push_to, private=s.private)
                out.update(repo_id=pushed.repo_id, url=pushed.url)
        except CarlError as err:
            self.event("push", "failed", error=str(err))
            raise _StageFailed("push", f"push failed: {err}") from None
        self.event("push", "completed", checkpoint=checkpoint, **out)
        return out


def sft_train_spec(s: PipelineSpec) -> dict[str, Any]:
    """The TrainSpec fields of the SFT stage (overrides last)."""
    data: dict[str, Any] = {
        "method": "sft", "model": s.model, "dataset": s.task, "max_steps": s.sft_steps,
        "learning_rate": s.sft_learning_rate, "batch_size": s.sft_batch_size, "seed": s.seed,
        "save_steps": s.sft_steps,
    }
    if s.lora:
        data["lora"] = {}
    return {**data, **s.sft_overrides}


def grpo_train_spec(s: PipelineSpec, start: str) -> dict[str, Any]:
    """The TrainSpec fields of the GRPO stage, starting from the model/checkpoint `start` (overrides last)."""
    data: dict[str, Any] = {
        "method": "grpo", "model": start, "dataset": s.task, "max_steps": s.grpo_steps,
        "rewards": {"task": 1.0, "carl": s.carl_weight}, "carl": {"preset": s.carl_preset},
        "cascade": {"gate": s.cascade, "start_step": s.cascade_start_step, "warmup_steps": s.warmup_steps},
        "learning_rate": s.grpo_learning_rate, "batch_size": s.grpo_batch_size,
        "num_generations": s.num_generations, "max_completion_length": s.max_completion_length,
        "seed": s.seed, "save_steps": s.grpo_steps,
    }
    if s.lora:
        data["lora"] = {}
    return {**data, **s.grpo_overrides}


def merge_adapter(checkpoint: str, dest: Path) -> str:
    """A LoRA checkpoint merged into its base model, saved as a full model folder (for the next stage)."""
    if not (Path(checkpoint) / "adapter_config.json").is_file():
        return checkpoint
    if (dest / "config.json").is_file():
        return str(dest)
    from carl_engine.evaluation.evaluate import load_checkpoint, resolve_checkpoint

    model, tokenizer = load_checkpoint(resolve_checkpoint(checkpoint))
    model.merge_and_unload().save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return str(dest)


def run(spec: dict[str, Any], run_dir: RunDir) -> RunResult:
    """Run the pipeline (the job handler of kind "pipeline").

    Returns:
        succeeded when the final gate passed (and the push, when asked, went through);
        failed with the failing stage's reasons otherwise. `extra` holds each stage's outcome.

    Raises:
        InvalidSpecError: a bad spec (before anything runs).
    """
    s = PipelineSpec.from_dict(spec)
    p = StageRunner(s, run_dir)
    run_dir.append_event("progress", max_steps=s.sft_steps + s.grpo_steps)
    extra: dict[str, Any] = {"plan": s.plan()}
    try:
        checkpoint = s.model
        sft_checkpoint = None
        if s.sft_steps:
            sft_checkpoint = checkpoint = p.train("sft", sft_train_spec(s), offset=0)
            gate = p.evaluate("sft_gate", checkpoint, s.sft_gate)
            extra["sft_gate"] = {"passed": gate.passed, "reasons": gate.reasons}
            if not gate.passed:
                raise _StageFailed("sft_gate", "the SFT gate failed: " + "; ".join(gate.reasons))
        else:
            p.event("sft", "skipped", reason="sft_steps = 0")
        if s.grpo_steps:
            start = merge_adapter(checkpoint, p.stage_dir("sft").path / "merged") if sft_checkpoint else s.model
            checkpoint = p.train("grpo", grpo_train_spec(s, start), offset=s.sft_steps)
        else:
            p.event("grpo", "skipped", reason="grpo_steps = 0")
        final = s.final_gate
        if s.compare_to_sft and sft_checkpoint and s.grpo_steps:
            final = final.model_copy(update={"baseline": sft_checkpoint})
        report = p.evaluate("eval", checkpoint, final, root=True)
        extra["eval"] = {"passed": report.passed, "reasons": report.reasons, "checkpoint": checkpoint}
        if not report.passed:
            raise _StageFailed("eval", "the final eval gate failed: " + "; ".join(report.reasons))
        if s.push_to or s.push_local_dir:
            extra["push"] = p.push(checkpoint)
        else:
            p.event("push", "skipped", reason="no push_to or push_local_dir given")
    except _StageFailed as failed:
        return RunResult(status="failed", step=_step(s, failed.stage), max_steps=s.sft_steps + s.grpo_steps,
                         metrics=p.metrics, checkpoint=_latest(p), error=str(failed), extra=extra)
    return RunResult(status="succeeded", step=s.sft_steps + s.grpo_steps, max_steps=s.sft_steps + s.grpo_steps,
                     metrics=p.metrics, checkpoint=checkpoint, extra=extra)


def _step(s: PipelineSpec, stage: str) -> int:
    return {"sft": 0, "sft_gate": s.sft_steps, "grpo": s.sft_steps}.get(stage, s.sft_steps + s.grpo_steps)


def _latest(p: StageRunner) -> str | None:
    for name in ("grpo", "sft"):
        latest = p.stage_dir(name).latest_checkpoint()
        if latest is not None:
            return str(latest)
    return None
