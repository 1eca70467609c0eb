"""Stop rules: should this run stop (or be looked at) now? Each verdict carries its evidence.

- `non_finite`: some metric logged NaN or ±inf — training has numerically broken.
- `reward_flat`: over the last `tail_fraction` of the logged points the reward has no trend
  (least-squares slope within 2 standard errors of zero): more steps will not change it.
- `coherence_trap`: mean Φ over the tail is near 1 (>= `phi_high`) while group diversity has
  fallen significantly from the first window to the last — the collapsed, confidently
  repetitive model that the paper shows scores near-optimal CARL (section 5.2.3).
- `length_drift`: the mean completion length of the last window differs from the first
  window's by at least `length_drift` (relative) and significantly — length hacking or
  truncation creeping in.

"Significantly" means a two-sample z > 3 with the noise scale estimated from the series
itself (`changepoint.noise_scale`). A rule whose metrics were not logged is not_applicable.
"""

from __future__ import annotations

import math

from carl_engine.observe.changepoint import noise_scale
from carl_engine.observe.models import StopRuleVerdict

Series = list[tuple[int, float]]
Z_SIGNIFICANT = 3.0
MIN_WINDOW = 3


def finite(points: Series) -> Series:
    return [(s, v) for s, v in points if math.isfinite(v)]


def linear_fit(points: Series) -> tuple[float, float] | None:
    """Least-squares slope per step and its standard error; None below 3 points or one step."""
    n = len(points)
    if n < 3:
        return None
    xs = [float(s) for s, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    resid = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys))
    return slope, math.sqrt(resid / (n - 2) / sxx)


def _windows(points: Series, fraction: float) -> tuple[Series, Series] | None:
    size = max(MIN_WINDOW, int(round(len(points) * fraction)))
    if len(points) < 2 * size:
        return None
    return points[:size], points[-size:]


def _shift_z(points: Series, head: Series, tail: Series) -> tuple[float, float, float]:
    """(head mean, tail mean, z of tail - head in noise units of the whole series)."""
    import numpy as np

    sigma = noise_scale(np.array([v for _, v in points]))
    head_mean = sum(v for _, v in head) / len(head)
    tail_mean = sum(v for _, v in tail) / len(tail)
    z = (tail_mean - head_mean) / (sigma * math.sqrt(1 / len(head) + 1 / len(tail)))
    return head_mean, tail_mean, z


def check_non_finite(series: dict[str, Series]) -> StopRuleVerdict:
    bad = {name: [s for s, v in pts if not math.isfinite(v)] for name, pts in series.items()}
    bad = {name: steps for name, steps in bad.items() if steps}
    if not bad:
        return StopRuleVerdict(rule="non_finite", status="clear", message="every logged value is finite")
    first = min(steps[0] for steps in bad.values())
    names = sorted(bad, key=lambda name: bad[name][0])
    return StopRuleVerdict(
        rule="non_finite",
        status="triggered",
        message=f"non-finite values in {', '.join(names)} from step {first}: training has broken numerically",
        evidence={"metrics": ", ".join(names), "first_step": first, "count": sum(map(len, bad.values()))},
    )


def check_reward_flat(reward: Series | None, *, tail_fraction: float, name: str = "reward") -> StopRuleVerdict:
    points = finite(reward or [])
    size = max(5, int(round(len(points) * tail_fraction)))
    if len(points) < size:
        return StopRuleVerdict(
            rule="reward_flat", status="not_applicable", message=f"fewer than {size} finite {name} values logged"
        )
    tail = points[-size:]
    fit = linear_fit(tail)
    if fit is None:
        return StopRuleVerdict(rule="reward_flat", status="not_applicable", message=f"{name} tail spans one step")
    slope, stderr = fit
    span = tail[-1][0] - tail[0][0]
    flat = abs(slope) <= 2 * stderr
    evidence = {
        "metric": name,
        "window_start": tail[0][0],
        "window_end": tail[-1][0],
        "points": len(tail),
        "slope_per_step": slope,
        "slope_stderr": stderr,
        "change_over_window": slope * span,
        "window_mean": sum(v for _, v in tail) / len(tail),
    }
    if flat:
        msg = (
            f"{name} is flat over steps {tail[0][0]}-{tail[-1][0]} (slope {slope:.3g} ± {stderr:.2g}/step, "
            f"mean {evidence['window_mean']:.3g}): more steps are unlikely to change it"
        )
    else:
        direction = "rising" if slope > 0 else "falling"
        msg = f"{name} is still {direction} over steps {tail[0][0]}-{tail[-1][0]} ({slope:.3g} ± {stderr:.2g}/step)"
    return StopRuleVerdict(rule="reward_flat", status="triggered" if flat else "clear", message=msg, evidence=evidence)


def check_coherence_trap(
    phi: Series | None, diversity: Series | None, *, tail_fraction: float, phi_high: float
) -> StopRuleVerdict:
    phi_pts, div_pts = finite(phi or []), finite(diversity or [])
    div_windows = _windows(div_pts, tail_fraction)
    if not phi_pts or div_windows is None:
        missing = "mean Φ" if not phi_pts else "group diversity (at least 6 values)"
        return StopRuleVerdict(rule="coherence_trap", status="not_applicable", message=f"{missing} not logged")
    size = max(MIN_WINDOW, int(round(len(phi_pts) * tail_fraction)))
    phi_tail = [v for _, v in phi_pts[-size:]]
    phi_mean = sum(phi_tail) / len(phi_tail)
    head_mean, tail_mean, z = _shift_z(div_pts, *div_windows)
    falling = z < -Z_SIGNIFICANT
    evidence = {
        "phi_tail_mean": phi_mean,
        "phi_high": phi_high,
        "diversity_first": head_mean,
        "diversity_last": tail_mean,
        "diversity_z": z,
    }
    if phi_mean >= phi_high and falling:
        msg = (
            f"coherence trap: mean Φ {phi_mean:.3f} >= {phi_high} while group diversity fell "
            f"{head_mean:.3f} -> {tail_mean:.3f} (z {z:.1f}): the model may be collapsing onto one answer; "
            "add the diversity term (carl preset 'guarded') or stop"
        )
        return StopRuleVerdict(rule="coherence_trap", status="triggered", message=msg, evidence=evidence)
    why = f"mean Φ {phi_mean:.3f}" + (" < " if phi_mean < phi_high else " >= ") + f"{phi_high}"
    why += f"; diversity {head_mean:.3f} -> {tail_mean:.3f} ({'falling' if falling else 'not falling'}, z {z:.1f})"
    return StopRuleVerdict(rule="coherence_trap", status="clear", message=why, evidence=evidence)


def check_length_drift(length: Series | None, *, tail_fraction: float, max_ratio: float) -> StopRuleVerdict:
    points = finite(length or [])
    windows = _windows(points, tail_fraction)
    if windows is None:
        return StopRuleVerdict(
            rule="length_drift", status="not_applicable", message="mean completion length not logged (at least 6 values)"
        )
    head_mean, tail_mean, z = _shift_z(points, *windows)
    ratio = (tail_mean - head_mean) / abs(head_mean) if head_mean else math.inf
    drifted = abs(ratio) >= max_ratio and abs(z) > Z_SIGNIFICANT
    evidence = {"length_first": head_mean, "length_last": tail_mean, "relative_change": ratio, "z": z}
    msg = (
        f"mean completion length {head_mean:.1f} -> {tail_mean:.1f} ({ratio:+.0%}, z {z:.1f})"
        + (f": drifted by at least {max_ratio:.0%}" if drifted else "")
    )
    return StopRuleVerdict(rule="length_drift", status="triggered" if drifted else "clear", message=msg, evidence=evidence)
