import pytest

from carl_engine.bench.reward import coherence_throughput


def test_coherence_throughput_times_both_paths_and_agrees_with_the_reference():
    result = coherence_throughput(batch=2, length=16, vocab=50, stats_batch=3, stats_length=20, repeats=1)
    assert result.from_logits.shape == [2, 16, 50] and result.from_stats.shape == [3, 20]
    for timing in (result.from_logits, result.from_stats):
        assert timing.ours_s > 0 and timing.reference_s > 0
        assert timing.speedup == timing.reference_s / timing.ours_s
        assert timing.max_abs_diff < 1e-6  # same formulas, same inputs


@pytest.mark.slow
def test_grpo_overhead_reports_each_arm_against_plain_grpo():
    from carl_engine.bench.reward import grpo_overhead

    result = grpo_overhead(steps=2)
    assert set(result.median_step_s) == {"plain", "ours", "paper"}
    assert result.ours_ratio == result.median_step_s["ours"] / result.median_step_s["plain"]
    assert result.paper_ratio > 0
