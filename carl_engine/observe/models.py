"""What `observe` answers: pydantic models only (no numpy, no matplotlib at import).

`Observation` is the structured summary of one run's learning: per-metric summaries and
trends, the phases of the run with the transition step, stop-rule verdicts with their
evidence, and the path of the PNG plot. The tool response of `carl_observe` wraps it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

PhaseName = Literal["baseline", "melting", "transition", "crystallization", "converged"]
SourceKind = Literal["run_dir", "trainer_state", "jsonl", "trackio"]
Trend = Literal["rising", "falling", "flat", "too_short"]
RuleStatus = Literal["triggered", "clear", "not_applicable"]


class MetricSummary(BaseModel):
    """One metric over the run: where it started, where it ended, and which way it went."""

    name: str = Field(..., description="Metric name as logged (TRL names: loss, reward, entropy, carl/...).")
    n: int = Field(..., description="Finite values logged.")
    non_finite: int = Field(0, description="NaN or infinite values logged (left out of every statistic).")
    first_step: int | None = Field(None, description="Step of the first finite value.")
    last_step: int | None = Field(None, description="Step of the last finite value.")
    first: float | None = Field(None, description="First finite value.")
    last: float | None = Field(None, description="Last finite value.")
    min: float | None = Field(None, description="Smallest finite value.")
    max: float | None = Field(None, description="Largest finite value.")
    mean: float | None = Field(None, description="Mean of the finite values.")
    slope: float | None = Field(None, description="Least-squares slope per step over the whole run.")
    slope_stderr: float | None = Field(None, description="Standard error of the slope.")
    trend: Trend = Field(
        "too_short",
        description="rising/falling when the slope is more than 2 standard errors from 0, else flat; "
        "too_short below 3 values.",
    )


class Phase(BaseModel):
    """A stretch of steps that behaves alike: one of the five phases of a CARL run."""

    name: PhaseName = Field(..., description="baseline, melting, transition, crystallization or converged.")
    start_step: int = Field(..., description="First step of the phase.")
    end_step: int = Field(..., description="Last step of the phase (inclusive).")
    n_points: int = Field(..., description="Logged points in the phase.")
    task_mean: float | None = Field(None, description="Mean of the task signal (accuracy or reward) in the phase.")
    disorder_mean: float | None = Field(None, description="Mean entropy (or 1 - Φ) in the phase.")


class Signals(BaseModel):
    """Which logged metrics played which role in the analysis (None: not logged)."""

    task: str | None = Field(None, description="Task signal: accuracy if logged, else the reward.")
    disorder: str | None = Field(None, description="Disorder signal: entropy if logged, else 1 - mean Φ.")
    phi: str | None = Field(None, description="Mean order parameter Φ.")
    reward: str | None = Field(None, description="Total reward.")
    diversity: str | None = Field(None, description="Group diversity.")
    length: str | None = Field(None, description="Mean completion length.")


class StopRuleVerdict(BaseModel):
    """One stop rule: did it fire, why, and the numbers behind it."""

    rule: Literal["non_finite", "reward_flat", "coherence_trap", "length_drift"] = Field(
        ..., description="Which rule."
    )
    status: RuleStatus = Field(..., description="triggered, clear, or not_applicable (its metrics were not logged).")
    message: str = Field(..., description="One sentence for the reader, with the numbers.")
    evidence: dict[str, float | int | str | None] = Field(
        default_factory=dict, description="The numbers the verdict rests on."
    )


class Observation(BaseModel):
    """The learning geometry of one run."""

    source: str = Field(..., description="What was read (path, or trackio project).")
    source_kind: SourceKind = Field(..., description="run_dir, trainer_state, jsonl or trackio.")
    job_id: str | None = Field(None, description="The job, when the source was a job or its run directory.")
    n_points: int = Field(..., description="Logged steps read.")
    first_step: int | None = Field(None, description="First logged step.")
    last_step: int | None = Field(None, description="Last logged step.")
    metrics: list[MetricSummary] = Field(default_factory=list, description="Per-metric summaries and trends.")
    signals: Signals = Field(default_factory=Signals, description="Which metrics drove the analysis.")
    change_points: list[int] = Field(
        default_factory=list, description="Steps where the joint task/disorder signal changes its mean."
    )
    phases: list[Phase] = Field(default_factory=list, description="Phases in step order.")
    transition_step: int | None = Field(
        None, description="First step of the transition (the largest rise of the task signal); None if none."
    )
    stop_rules: list[StopRuleVerdict] = Field(default_factory=list, description="Every stop rule's verdict.")
    should_stop: bool = Field(False, description="True when any stop rule triggered.")
    summary: str = Field("", description="A few sentences for the reader.")
    plot_path: str | None = Field(None, description="PNG plot (reward, entropy/Φ, accuracy; phases shaded).")
