import math

import pytest

from carl_engine.evaluation.stats import mcnemar_exact, mean_interval, wilson_interval


def test_wilson_interval_matches_hand_computed_values():
    # 8/10: p=0.8, z=1.96 -> centre (0.8 + 0.19208)/1.38415 = 0.71677, half 0.22655
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    # 50/100 is symmetric about 0.5
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4)
    assert high == pytest.approx(0.5962, abs=1e-4)


def test_wilson_interval_stays_inside_zero_one_at_the_extremes():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_mean_interval_uses_the_sample_standard_error():
    mean, low, high = mean_interval([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt(sum((x - 2.5) ** 2 for x in [1, 2, 3, 4]) / 3)
    assert mean == 2.5
    assert high - mean == pytest.approx(1.959964 * sd / 2, rel=1e-6)
    assert mean_interval([]) is None
    assert mean_interval([0.3]) == (0.3, 0.3, 0.3)


def test_mcnemar_counts_only_discordant_pairs():
    a = [True] * 6 + [False] * 4 + [True] * 10
    b = [False] * 6 + [False] * 4 + [True] * 10
    a_only, b_only, p = mcnemar_exact(a, b)
    assert (a_only, b_only) == (6, 0)
    assert p == pytest.approx(2 / 64)  # two-sided exact binomial, 0 of 6 at p = 1/2
    assert mcnemar_exact([True], [True])[2] == 1.0
