"""`bench ab`: does CARL help? Seed-matched arms, trained and evaluated the same way.

For each seed: one SFT warm start (shared by every arm of that seed), then one GRPO run per
arm from it, all with the same seed, data order and settings except the rewards:

    task              the task verifier alone
    task+carl         task + CARL (paper preset, 0.5/0.3/0.2), behind the cascade
    task+carl+guard   task + CARL with the diversity term (guarded preset)

Each arm's checkpoint is evaluated on the same prompts. Per arm: greedy accuracy pooled
over seeds with its Wilson 95% interval, mean Φ and group diversity with 95% intervals.
The verdict uses the exact McNemar test on the paired per-prompt outcomes (same prompts,
same seeds) for every pair of arms, Holm-corrected at `alpha`: an arm wins only if it is
significantly more accurate than every other arm; otherwise "no significant difference".
Runs as a job of kind "bench" (spec.json kind "bench_ab"); writes ab.json in its run dir.
"""

from __future__ import annotations

import json
from itertools import combinations
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from carl_engine.errors import InvalidSpecError
from carl_engine.evaluation.spec import EvalSpec, GateThresholds, Interval, validated
from carl_engine.evaluation.stats import mcnemar_exact, mean_interval, wilson_interval
from carl_engine.runs import RunDir, RunResult

Arm = Literal["task", "task+carl", "task+carl+guard"]
ARMS: tuple[str, ...] = ("task", "task+carl", "task+carl+guard")
TEST = "exact McNemar test on paired per-prompt greedy outcomes, pooled over seeds, Holm-corrected"


class ABSpec(BaseModel):
    """A seed-matched A/B(/C) training bench on a built-in task."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("carl-tiny", min_length=1, max_length=4096, description="Base model (carl-tiny by default).")
    task: str = Field("arithmetic", min_length=1, max_length=64, description="Built-in task: data, task reward, eval.")
    arms: list[Arm] = Field(default_factory=lambda: list(ARMS), min_length=2, max_length=3,
                            description="Arms to compare: task, task+carl, task+carl+guard.")
    seeds: int = Field(2, ge=1, le=20, description="Number of seeds; arms are trained once per seed.")
    seed_start: int = Field(0, ge=0, le=2**31 - 1, description="First seed; seeds are seed_start .. seed_start+seeds-1.")
    sft_steps: int = Field(200, ge=0, le=1_000_000, description="SFT warm-start steps per seed (shared by the arms).")
    grpo_steps: int = Field(20, ge=1, le=1_000_000, description="GRPO steps per arm.")
    carl_weight: float = Field(0.5, gt=0.0, le=100.0, description="Weight of CARL next to the task reward (1.0).")
    cascade: Literal["off", "steps", "auto"] = Field("steps", description="When CARL switches on in the CARL arms.")
    eval_n: int = Field(64, ge=1, le=10_000, description="Eval prompts per arm and seed.")
    eval_group_size: int = Field(4, ge=2, le=16, description="Sampled completions per eval prompt (diversity, Φ).")
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="Significance level of the verdict.")
    pipeline: dict[str, Any] = Field(default_factory=dict, description="Other PipelineSpec fields for every arm (e.g. grpo_learning_rate).")

    @model_validator(mode="after")
    def _unique(self) -> ABSpec:
        if len(set(self.arms)) != len(self.arms):
            raise InvalidSpecError("arms", f"must not repeat an arm; got {self.arms}")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None = None) -> ABSpec:
        """Validate a dict (a "kind" key is ignored). Raises InvalidSpecError naming the field."""
        spec = validated(cls, {k: v for k, v in (data or {}).items() if k != "kind"})
        try:
            spec.stage_spec(ARMS[0], spec.seed_start)  # the pipeline fields must validate too
        except InvalidSpecError as err:
            raise InvalidSpecError(f"pipeline.{err.field}", err.rule) from None
        return spec

    def check(self) -> None:
        """Checks beyond the fields (called before a job row is written): the task must exist."""
        from carl_engine.tasks import get_task

        get_task(self.task, field="task")

    def stage_spec(self, arm: str, seed: int):
        """The PipelineSpec holding one arm's settings (used for its SFT and GRPO train specs)."""
        from carl_engine.pipeline import PipelineSpec

        rewards = {"task": 1.0} if arm == "task" else {"task": 1.0, "carl": self.carl_weight}
        data = {
            **self.pipeline, "model": self.model, "task": self.task, "seed": seed, "sft_steps": self.sft_steps,
            "grpo_steps": self.grpo_steps, "carl_weight": self.carl_weight, "cascade": self.cascade,
            "carl_preset": "guarded" if arm == "task+carl+guard" else "paper",
            "grpo_overrides": {**self.pipeline.get("grpo_overrides", {}), "rewards": rewards},
        }
        return PipelineSpec.from_dict(data)


class SeedResult(BaseModel):
    seed: int
    accuracy: float
    phi_mean: float | None
    diversity: float | None
    checkpoint: str


class ArmResult(BaseModel):
    arm: str = Field(description="task, task+carl or task+carl+guard.")
    accuracy: Interval = Field(description="Greedy accuracy pooled over seeds, Wilson 95% interval.")
    phi_mean: Interval = Field(description="Mean Φ over seeds (95% interval over seeds; one seed: its own interval).")
    diversity: Interval = Field(description="Mean group diversity, same intervals as phi_mean.")
    n: int = Field(description="Prompts evaluated in total (eval_n x seeds).")
    per_seed: list[SeedResult] = Field(default_factory=list)


class Comparison(BaseModel):
    a: str
    b: str
    a_only: int = Field(description="Prompts only arm a answered correctly.")
    b_only: int = Field(description="Prompts only arm b answered correctly.")
    p_value: float = Field(description="Exact two-sided McNemar p-value.")
    p_holm: float = Field(description="Holm-adjusted p-value.")
    significant: bool


class ABReport(BaseModel):
    """ab.json: per-arm metrics, pairwise tests and the verdict."""

    arms: list[ArmResult]
    comparisons: list[Comparison]
    test: str = TEST
    alpha: float
    winner: str | None = Field(None, description="The arm significantly more accurate than every other, if any.")
    verdict: str = Field(description="Which arm wins, or that there is no significant difference.")


def _spread(values: list[float | None], single: Interval) -> Interval:
    xs = [v for v in values if v is not None]
    if len(xs) < 2:
        return single
    mean, low, high = mean_interval(xs)  # type: ignore[misc]
    return Interval(value=mean, low=max(0.0, low), high=min(1.0, high))


def holm(p_values: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given)."""
    order = sorted(range(len(p_values)), key=p_values.__getitem__)
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def summarize(spec: ABSpec, outcomes: dict[str, list[tuple[int, Any, str]]]) -> ABReport:
    """Per-arm intervals, pairwise McNemar tests and the verdict from each arm's (seed, EvalMetrics, checkpoint)."""
    arms = []
    correct: dict[str, list[bool]] = {}
    for arm in spec.arms:
        runs = outcomes[arm]
        correct[arm] = [c for _, m, _ in runs for c in m.correct]
        k, n = sum(correct[arm]), len(correct[arm])
        low, high = wilson_interval(k, n)
        arms.append(ArmResult(
            arm=arm, n=n, accuracy=Interval(value=k / n, low=low, high=high),
            phi_mean=_spread([m.phi_mean.value for _, m, _ in runs], runs[0][1].phi_mean),
            diversity=_spread([m.diversity.value for _, m, _ in runs], runs[0][1].diversity),
            per_seed=[SeedResult(seed=s, accuracy=m.accuracy.value, phi_mean=m.phi_mean.value,
                                 diversity=m.diversity.value, checkpoint=c) for s, m, c in runs],
        ))
    pairs = list(combinations(spec.arms, 2))
    tests = [mcnemar_exact(correct[a], correct[b]) for a, b in pairs]
    adjusted = holm([p for _, _, p in tests])
    comparisons = [
        Comparison(a=a, b=b, a_only=ao, b_only=bo, p_value=p, p_holm=ph, significant=ph < spec.alpha)
        for (a, b), (ao, bo, p), ph in zip(pairs, tests, adjusted, strict=True)
    ]
    winner = None
    for arm in spec.arms:
        beats = [c for c in comparisons if arm in (c.a, c.b)]
        if all(c.significant and (c.a_only > c.b_only if c.a == arm else c.b_only > c.a_only) for c in beats):
            winner = arm
    if winner:
        verdict = f"{winner} wins: significantly more accurate than every other arm ({TEST}, alpha {spec.alpha:g})"
    else:
        verdict = f"no significant difference in accuracy between the arms ({TEST}, alpha {spec.alpha:g})"
    return ABReport(arms=arms, comparisons=comparisons, alpha=spec.alpha, winner=winner, verdict=verdict)


def run(spec: dict[str, Any], run_dir: RunDir) -> RunResult:
    """The job handler of kind "bench" (spec.json kind "bench_ab"): train, evaluate, compare.

    Raises:
        InvalidSpecError: a bad spec, before anything runs.
    """
    from carl_engine.evaluation.evaluate import load_prompts, measure, resolve_checkpoint
    from carl_engine.pipeline import StageRunner, grpo_train_spec, sft_train_spec

    ab = ABSpec.from_dict(spec)
    per_seed = ab.sft_steps + ab.grpo_steps * len(ab.arms)
    run_dir.append_event("progress", max_steps=per_seed * ab.seeds)
    outcomes: dict[str, list[tuple[int, Any, str]]] = {arm: [] for arm in ab.arms}
    done_steps = 0
    for seed in range(ab.seed_start, ab.seed_start + ab.seeds):
        base = ab.stage_spec(ab.arms[0], seed)
        seed_dir = RunDir(run_dir.path / f"seed-{seed}").create()
        start = ab.model
        if ab.sft_steps:
            start = StageRunner(base, seed_dir).train("sft", sft_train_spec(base), offset=0)
            done_steps += ab.sft_steps
        eval_spec = EvalSpec(checkpoint=start, task=ab.task, n=ab.eval_n, group_size=ab.eval_group_size,
                             max_new_tokens=base.max_completion_length, seed=seed, gate=GateThresholds())
        prompts, answers = load_prompts(eval_spec)
        for arm in ab.arms:
            arm_spec = ab.stage_spec(arm, seed)
            name = "grpo-" + arm.replace("+", "-")
            run_dir.append_event("stage", step=done_steps, stage=f"seed {seed}: {arm}", status="started")
            checkpoint = StageRunner(arm_spec, seed_dir).train(name, grpo_train_spec(arm_spec, start), offset=done_steps)
            done_steps += ab.grpo_steps
            metrics = measure(resolve_checkpoint(checkpoint), prompts, answers, eval_spec)
            outcomes[arm].append((seed, metrics, checkpoint))
            run_dir.append_event("metrics", step=done_steps, metrics={f"{arm}/accuracy": metrics.accuracy.value or 0.0})
            run_dir.append_event("stage", step=done_steps, stage=f"seed {seed}: {arm}", status="completed",
                                 accuracy=metrics.accuracy.value, checkpoint=checkpoint)
    report = summarize(ab, outcomes)
    (run_dir.path / "ab.json").write_text(report.model_dump_json(indent=2))
    run_dir.append_event("stage", stage="verdict", status="completed", verdict=report.verdict)
    metrics = {f"{a.arm}/accuracy": a.accuracy.value or 0.0 for a in report.arms}
    return RunResult(status="succeeded", step=done_steps, max_steps=per_seed * ab.seeds, metrics=metrics,
                     extra=json.loads(report.model_dump_json()))
