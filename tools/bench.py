"""carl_bench: `reward` (coherence throughput and GRPO overhead, inline) or `ab` (a seed-matched
A/B training bench: task only vs task + CARL vs task + CARL guarded; runs as a job)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from carl_engine.errors import InvalidSpecError

from carl_engine.bench.ab import ARMS, Arm
from carl_engine.bench.reward import GrpoOverheadResult, ThroughputResult
from carl_studio.tools.base import Request, Response, ToolContext, ToolSpec


# The inline bench answers within seconds: bounds on its work (elements x timed calls incl. warm-up).
MAX_LOGITS = 64 * 2**20  # logits elements of one call (256 MiB of float32)
MAX_LOGIT_PASSES = 2**28  # logits elements x (repeats + 1)
MAX_STAT_PASSES = 2**22  # stats tokens x (repeats + 1); the per-sample reference loops in Python


class BenchRequest(Request):
    bench: Literal["reward", "ab"] = Field(
        "reward", description="reward: time the CARL reward (answers inline, seconds). ab: start a seed-matched A/B "
        "training job comparing task-only, task+CARL and task+CARL+diversity-guard arms."
    )
    # reward
    batch: int = Field(4, ge=1, le=64, description="reward: batch B of the [B, T, V] logits.")
    length: int = Field(128, ge=1, le=4096, description="reward: completion length T of the logits.")
    vocab: int = Field(8000, ge=2, le=262_144, description="reward: vocabulary size V of the logits.")
    stats_batch: int = Field(16, ge=1, le=1024, description="reward: batch of the per-token stats.")
    stats_length: int = Field(256, ge=1, le=16_384, description="reward: length of the per-token stats.")
    repeats: int = Field(3, ge=1, le=50, description="reward: timed calls per arm (median reported).")
    grpo_overhead: bool = Field(
        False, description="reward: also time GRPO steps on carl-tiny, plain vs task+CARL (trains a few steps; slower)."
    )
    grpo_steps: int = Field(4, ge=2, le=10, description="reward with grpo_overhead: GRPO steps per arm (small: it trains inline).")
    # ab
    model: str = Field("carl-tiny", min_length=1, max_length=4096, description="ab: base model.")
    task: str = Field("arithmetic", min_length=1, max_length=64, description="ab: built-in task.")
    arms: list[Arm] = Field(default_factory=lambda: list(ARMS), min_length=2, max_length=3, description="ab: arms to compare.")
    seeds: int = Field(2, ge=1, le=20, description="ab: number of seeds (each arm trains once per seed).")
    sft_steps: int = Field(200, ge=0, le=1_000_000, description="ab: SFT warm-start steps per seed.")
    ab_grpo_steps: int = Field(20, ge=1, le=1_000_000, description="ab: GRPO steps per arm and seed.")
    carl_weight: float = Field(0.5, gt=0.0, le=100.0, description="ab: CARL weight next to the task reward (1.0).")
    eval_n: int = Field(64, ge=1, le=10_000, description="ab: eval prompts per arm and seed.")
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="ab: significance level of the verdict.")
    compute: str = Field("local", max_length=400, description="ab: where the job runs (local, ray[:address], hf_jobs:<flavor>, ...).")

    @model_validator(mode="after")
    def _inline_size(self) -> BenchRequest:
        logits = self.batch * self.length * self.vocab
        if logits > MAX_LOGITS:
            raise InvalidSpecError("vocab", f"batch x length x vocab must be at most {MAX_LOGITS:,} (inline bench); "
                                   f"got {logits:,}")
        if logits * (self.repeats + 1) > MAX_LOGIT_PASSES:
            raise InvalidSpecError("repeats", f"batch x length x vocab x (repeats + 1) must be at most "
                                   f"{MAX_LOGIT_PASSES:,} (inline bench); got {logits * (self.repeats + 1):,}")
        stats = self.stats_batch * self.stats_length * (self.repeats + 1)
        if stats > MAX_STAT_PASSES:
            raise InvalidSpecError("stats_length", f"stats_batch x stats_length x (repeats + 1) must be at most "
                                   f"{MAX_STAT_PASSES:,} (inline bench); got {stats:,}")
        return self


class BenchResponse(Response):
    bench: Literal["reward", "ab"] = Field(description="Which bench ran.")
    throughput: ThroughputResult | None = Field(None, description="reward: medians and speed-ups (reference / ours) from logits and from stats.")
    grpo_overhead: GrpoOverheadResult | None = Field(None, description="reward: GRPO step times and their ratios to plain GRPO, when asked.")
    ratios: dict[str, float] = Field(default_factory=dict, description="The headline ratios, by name.")
    job_id: str | None = Field(None, description="ab: the bench job's id; follow it with carl_status.")
    state: str | None = Field(None, description="ab: the job's state after submission.")
    next: str = Field(description="What to do next.")


def carl_bench(request: BenchRequest, ctx: ToolContext) -> BenchResponse:
    """Run the reward benchmark inline, or start the A/B bench job.

    Raises:
        InvalidSpecError: a field breaks a rule (named), before anything is started.
    """
    if request.bench == "ab":
        from carl_engine.bench.ab import ABSpec

        spec = ABSpec.from_dict({
            "model": request.model, "task": request.task, "arms": list(request.arms), "seeds": request.seeds,
            "sft_steps": request.sft_steps, "grpo_steps": request.ab_grpo_steps, "carl_weight": request.carl_weight,
            "eval_n": request.eval_n, "alpha": request.alpha,
        })
        job = ctx.jobs.submit("bench", spec.model_dump(mode="json"), compute=request.compute)
        return BenchResponse(bench="ab", job_id=job.job_id, state=str(getattr(job.state, "value", job.state)),
                             next=f"call carl_status with job_id={job.job_id}; when it has succeeded, its result "
                             "holds per-arm accuracy, Φ and diversity with intervals and the verdict (also ab.json)")
    from carl_engine.bench.reward import coherence_throughput

    result = coherence_throughput(batch=request.batch, length=request.length, vocab=request.vocab,
                                  stats_batch=request.stats_batch, stats_length=request.stats_length,
                                  repeats=request.repeats)
    ratios = {"from_logits_speedup": result.from_logits.speedup, "from_stats_speedup": result.from_stats.speedup}
    overhead = None
    if request.grpo_overhead:
        from carl_engine.bench.reward import grpo_overhead

        overhead = grpo_overhead(steps=request.grpo_steps)
        ratios.update(grpo_ours_ratio=overhead.ours_ratio, grpo_paper_ratio=overhead.paper_ratio)
    return BenchResponse(bench="reward", throughput=result, grpo_overhead=overhead, ratios=ratios,
                         next="speed-ups are reference time / ours (higher is better); overhead ratios are step "
                         "time / plain GRPO step time (1.0 = free)")


BENCH = ToolSpec(
    name="carl_bench",
    title="Benchmark the CARL reward, or A/B-test whether CARL helps",
    description="bench=reward: time the CARL coherence computation against a per-sample numpy reference (from logits "
    "and from per-token stats) and, with grpo_overhead=true, CARL-GRPO step time vs plain GRPO; answers inline with "
    "the ratios. bench=ab: start a job that trains seed-matched arms (task only; task+CARL; task+CARL with the "
    "diversity guard) on a built-in task over several seeds, evaluates each and reports accuracy, Φ and diversity "
    "with intervals and a verdict (exact McNemar, Holm-corrected).",
    request=BenchRequest,
    response=BenchResponse,
    fn=carl_bench,
    open_world=False,
)
