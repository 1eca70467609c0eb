"""The reward benchmarks as library functions: coherence throughput and GRPO overhead.

`coherence_throughput()` times, side by side in one process, `CoherenceField` + `scores()`
against the per-sample numpy transcription of the spec (`carl_engine.coherence.reference`)
on the same random inputs: once from logits `[B, T, V]`, once from per-token stats `[B, T]`.
It returns medians and the speed-up ratios (reference time / ours). The benchmark script
`benchmarks/coherence_throughput.py` runs the paper-sized shapes; `carl bench reward` and
`carl_bench` run small shapes by default so that they answer in seconds.

`grpo_overhead()` runs the GRPO step-time benchmark (`carl_engine.bench.grpo_overhead`, the
core of `benchmarks/grpo_overhead.py`) at a small size: CARL-GRPO step time over plain GRPO.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field


class Timing(BaseModel):
    """Median seconds per call of ours and of the reference, on the same inputs."""

    shape: list[int] = Field(description="Input shape: [B, T, V] from logits, [B, T] from stats.")
    ours_s: float = Field(description="Median seconds per call (timed alternately with the reference), CoherenceField + scores().")
    reference_s: float = Field(description="Median seconds per call, per-sample numpy reference.")
    speedup: float = Field(description="reference_s / ours_s: how many times faster ours is.")
    max_abs_diff: float = Field(description="Largest |ours - reference| over the composite scores (agreement check).")


class ThroughputResult(BaseModel):
    from_logits: Timing
    from_stats: Timing
    repeats: int = Field(description="Timed calls per arm (after one warm-up); the median is reported.")
    threads: int = Field(description="torch intra-op threads used.")


def _interleaved(ours: Callable[[], Any], base: Callable[[], Any], repeats: int) -> tuple[float, float, Any, Any]:
    """Median seconds of each call, timed alternately after one warm-up each (both see the same load).

    Returns:
        (ours_s, base_s, ours' output, base's output).
    """
    out_ours, out_base = ours(), base()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for call, into in ((ours, times[0]), (base, times[1])):
            start = time.perf_counter()
            call()
            into.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1]), out_ours, out_base


def _diff(ours: Any, reference: list[dict[str, float]]) -> float:
    import math

    worst = 0.0
    for value, ref in zip(ours["composite"].tolist(), reference, strict=True):
        if math.isfinite(value) and math.isfinite(ref["composite"]):
            worst = max(worst, abs(value - ref["composite"]))
    return worst


def coherence_throughput(
    *,
    batch: int = 4,
    length: int = 128,
    vocab: int = 8000,
    stats_batch: int = 16,
    stats_length: int = 256,
    repeats: int = 3,
    seed: int = 0,
) -> ThroughputResult:
    """Time CoherenceField against the numpy reference, from logits and from stats.

    Args:
        batch, length, vocab: the logits shape [B, T, V] (the issue's goal uses 8, 256, 32000).
        stats_batch, stats_length: the stats shape [B, T] (the issue's goal uses 64, 1024).
        repeats: timed calls per arm after one warm-up; the median is reported.
        seed: seed of the random inputs.

    Returns:
        A `ThroughputResult` with medians, speed-ups and the largest composite disagreement.
    """
    import numpy as np
    import torch

    from carl_engine.coherence import CARLWeights, CoherenceField
    from carl_engine.coherence import reference as ref

    rng = np.random.default_rng(seed)
    weights = CARLWeights.paper()
    logits = (rng.standard_normal((batch, length, vocab)) * 3).astype(np.float32)
    ids = rng.integers(0, vocab, size=(batch, length))
    logits_t, ids_t = torch.from_numpy(logits), torch.from_numpy(ids)
    ours_l, ref_l, out_l, out_rl = _interleaved(
        lambda: CoherenceField.from_logits(logits_t, ids_t).scores(weights),
        lambda: ref.batch_scores_from_logits(logits, ids, weights=weights), repeats)
    del logits, logits_t

    entropy = rng.uniform(0.0, np.log(vocab), size=(stats_batch, stats_length))
    logprob = -rng.exponential(2.0, size=(stats_batch, stats_length))
    ent_t, lp_t = torch.from_numpy(entropy), torch.from_numpy(logprob)
    ours_s, ref_s, out_s, out_rs = _interleaved(
        lambda: CoherenceField.from_stats(ent_t, lp_t, vocab).scores(weights),
        lambda: ref.batch_scores(entropy, logprob, vocab, weights=weights), repeats)
    return ThroughputResult(
        from_logits=Timing(shape=[batch, length, vocab], ours_s=ours_l, reference_s=ref_l,
                           speedup=ref_l / ours_l, max_abs_diff=_diff(out_l, out_rl)),
        from_stats=Timing(shape=[stats_batch, stats_length], ours_s=ours_s, reference_s=ref_s,
                          speedup=ref_s / ours_s, max_abs_diff=_diff(out_s, out_rs)),
        repeats=repeats,
        threads=torch.get_num_threads(),
    )


class GrpoOverheadResult(BaseModel):
    """Median GRPO step time per arm and the ratios to plain GRPO (1.0 = no overhead)."""

    model: str
    device: str
    threads: int
    steps_per_round: int
    rounds: int
    batch_size: int
    num_generations: int
    max_completion_length: int
    median_step_s: dict[str, float] = Field(description="plain, ours (captured stats), paper (re-forward per completion).")
    ratio_to_plain: dict[str, float] = Field(description="ours and paper step time / plain step time.")
    ours_ratio: float = Field(description="CARL-GRPO with our capture / plain GRPO.")
    paper_ratio: float = Field(description="CARL computed the paper's way / plain GRPO.")


def grpo_overhead(*, steps: int = 4, rounds: int = 1, model: str = "carl-tiny") -> GrpoOverheadResult:
    """CARL-GRPO step time over plain GRPO step time, at a small size (carl_engine.bench.grpo_overhead).

    Args:
        steps: GRPO steps per arm (the first is dropped as warm-up).
        rounds: interleaved rounds of the three arms.
        model: the model to train.

    Returns:
        The measurement with `ours_ratio` and `paper_ratio`.
    """
    from carl_engine.bench.grpo_overhead import measure

    result = measure(model=model, steps=steps, rounds=rounds, warmup=1, batch_size=8, num_generations=4,
                     max_completion_length=8)
    return GrpoOverheadResult(**result, ours_ratio=result["ratio_to_plain"]["ours"],
                              paper_ratio=result["ratio_to_plain"]["paper"])
