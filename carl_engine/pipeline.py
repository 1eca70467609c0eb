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

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from carl_engine.errors import InvalidSpecError
from carl_engine.evaluation.spec import GateThresholds, validated

STAGES: tuple[str, ...] = ("sft", "sft_gate", "grpo", "eval", "push")

_HUB_REPO = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"


class PipelineSpec(BaseModel):
    """Everything a pipeline run needs; every field has a default (the embedded default job)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("carl-tiny", min_length=1, max_length=4096, description="Base model: carl-tiny, a local path or a Hub name.")
    task: str = Field("arithmetic", min_length=1, max_length=64, description="Built-in task for data, rewards and eval.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of every stage (data, init, sampling).")
    lora: bool = Field(False, description="Train LoRA adapters instead of the full model.")

    sft_steps: int = Field(60, ge=0, le=1_000_000, description="SFT steps; 0 skips SFT (and its gate).")
    sft_learning_rate: float = Field(3e-3, gt=0.0, le=1.0, description="SFT learning rate.")
    sft_batch_size: int = Field(16, ge=1, le=4096, description="SFT batch size per device.")
    sft_gate: GateThresholds = Field(
        default_factory=lambda: GateThresholds(min_accuracy=0.05),
        description="Rules the SFT checkpoint must pass before GRPO starts.",
    )

    grpo_steps: int = Field(8, ge=0, le=1_000_000, description="GRPO steps; 0 skips GRPO.")
    grpo_learning_rate: float = Field(1e-3, gt=0.0, le=1.0, description="GRPO learning rate.")
    num_generations: int = Field(4, ge=2, le=64, description="GRPO group size (completions per prompt).")
    grpo_batch_size: int = Field(8, ge=1, le=4096, description="GRPO batch size per device (a multiple of num_generations).")
    max_completion_length: int = Field(8, ge=1, le=32_768, description="Longest GRPO completion, in tokens.")
    carl_preset: Literal["paper", "guarded"] = Field(
        "guarded", description="CARL weights: 'paper' (0.5/0.3/0.2) or 'guarded' (adds the diversity term)."
    )
    carl_weight: float = Field(0.5, ge=0.0, le=100.0, description="Weight of the CARL reward next to the task reward (1.0).")
    cascade: Literal["off", "steps", "auto"] = Field("steps", description="When CARL switches on: off (from step 0), at a step, or auto.")
    cascade_start_step: int = Field(2, ge=0, le=1_000_000, description="With cascade='steps': the GRPO step at which CARL starts.")
    warmup_steps: int = Field(2, ge=0, le=1_000_000, description="Steps over which CARL's weight ramps from 0 to full.")

    eval_n: int = Field(32, ge=1, le=10_000, description="Prompts per eval.")
    eval_group_size: int = Field(4, ge=1, le=16, description="Sampled completions per eval prompt (diversity, Φ).")
    final_gate: GateThresholds = Field(
        default_factory=lambda: GateThresholds(min_accuracy=0.05),
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
