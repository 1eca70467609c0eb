"""Small, exact statistics for the eval gate and the A/B bench (pure Python, no numpy).

- `wilson_interval`: the Wilson score interval of a binomial proportion. Unlike the
  normal ("Wald") interval it stays inside [0, 1] and is sensible at 0/n and n/n.
- `mean_interval`: mean ± z·standard error of a list of floats (normal approximation).
- `mcnemar_exact`: the exact McNemar test for paired binary outcomes — two models
  answering the same prompts. Only discordant pairs carry evidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, *, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for `successes` out of `n` trials.

    Args:
        successes: number of successes, 0 <= successes <= n.
        n: number of trials; n = 0 gives the uninformative interval (0, 1).
        z: the normal quantile (1.96 for 95%).

    Returns:
        (low, high), both inside [0, 1].

    Raises:
        ValueError: successes outside [0, n] or n < 0.

    >>> tuple(round(x, 4) for x in wilson_interval(8, 10))
    (0.4902, 0.9433)
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n; got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: Sequence[float], *, z: float = Z95) -> tuple[float, float, float] | None:
    """Mean and its normal-approximation interval (mean ± z·sd/√n, sample sd with ddof = 1).

    Returns:
        (mean, low, high), or None for an empty list. One value gives a zero-width interval.
    """
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, mean, mean
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    half = z * math.sqrt(var / len(xs))
    return mean, mean - half, mean + half


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> tuple[int, int, float]:
    """Exact two-sided McNemar test: does model A answer the same prompts differently from B?

    Args:
        a_correct, b_correct: per-prompt outcomes of A and B on the same prompts, same order.

    Returns:
        (a_only, b_only, p_value): prompts only A got right, only B got right, and the
        two-sided p-value of the binomial test of a_only against Binomial(a_only + b_only, 1/2).

    Raises:
        ValueError: lists of different lengths.
    """
    if len(a_correct) != len(b_correct):
        raise ValueError(f"mcnemar_exact needs paired outcomes; got {len(a_correct)} and {len(b_correct)}")
    a_only = sum(1 for a, b in zip(a_correct, b_correct, strict=True) if a and not b)
    b_only = sum(1 for a, b in zip(a_correct, b_correct, strict=True) if b and not a)
    m = a_only + b_only
    if m == 0:
        return a_only, b_only, 1.0
    k = min(a_only, b_only)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2.0**m
    return a_only, b_only, min(1.0, 2.0 * tail)
