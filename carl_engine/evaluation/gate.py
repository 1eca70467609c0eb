"""The eval gate: thresholds and/or a baseline comparison -> pass/fail with reasons.

Baseline rule ("not worse beyond the intervals"): the candidate fails a metric only when
its whole 95% interval lies below the baseline's (candidate high < baseline low). Over-
lapping intervals pass: the eval cannot tell the two apart at this sample size. Applied to
accuracy (Wilson intervals) and diversity (normal intervals). Φ is not compared with the
baseline — a higher Φ is not better in itself (the coherence trap); use the Φ band instead.
"""

from __future__ import annotations

from carl_engine.evaluation.spec import EvalMetrics, GateThresholds, Interval


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _threshold_reasons(m: EvalMetrics, gate: GateThresholds) -> list[tuple[bool, str]]:
    checks: list[tuple[bool, str]] = []
    acc = m.accuracy.value
    if gate.min_accuracy is not None:
        ok = acc is not None and acc >= gate.min_accuracy
        checks.append((ok, f"accuracy {_fmt(acc)} {'>=' if ok else '<'} {gate.min_accuracy:.3f}"))
    phi = m.phi_mean.value
    if gate.phi_min is not None:
        ok = phi is not None and phi >= gate.phi_min
        checks.append((ok, f"mean Φ {_fmt(phi)} {'>=' if ok else '<'} {gate.phi_min:.3f}"))
    if gate.phi_max is not None:
        ok = phi is not None and phi <= gate.phi_max
        checks.append((ok, f"mean Φ {_fmt(phi)} {'<=' if ok else '>'} {gate.phi_max:.3f}"))
    div = m.diversity.value
    if gate.min_diversity is not None:
        ok = div is not None and div >= gate.min_diversity
        note = "" if div is not None else " (diversity needs group_size >= 2)"
        checks.append((ok, f"diversity {_fmt(div)} {'>=' if ok else '<'} {gate.min_diversity:.3f}{note}"))
    return checks


def _not_worse(name: str, cand: Interval, base: Interval) -> tuple[bool, str] | None:
    if cand.value is None or base.value is None:
        return None
    shown = (
        f"{name} {_fmt(cand.value)} [{_fmt(cand.low)}, {_fmt(cand.high)}] vs baseline "
        f"{_fmt(base.value)} [{_fmt(base.low)}, {_fmt(base.high)}]"
    )
    worse = cand.high is not None and base.low is not None and cand.high < base.low
    return (not worse, shown + (": worse beyond the 95% intervals" if worse else ": not worse beyond the intervals"))


def decide(
    metrics: EvalMetrics, gate: GateThresholds, baseline: EvalMetrics | None = None
) -> tuple[bool, list[str]]:
    """Apply the gate.

    Args:
        metrics: the candidate's metrics.
        gate: the thresholds (unset ones are skipped).
        baseline: the baseline's metrics on the same prompts, when a baseline was asked for.

    Returns:
        (passed, reasons): one reason per rule checked, each prefixed "pass:" or "fail:".
        With no rule at all the eval passes with the reason "no gate rules given".
    """
    checks = _threshold_reasons(metrics, gate)
    if baseline is not None:
        for name, cand, base in (
            ("accuracy", metrics.accuracy, baseline.accuracy),
            ("diversity", metrics.diversity, baseline.diversity),
        ):
            found = _not_worse(name, cand, base)
            if found is not None:
                checks.append(found)
    if not checks:
        return True, ["pass: no gate rules given (metrics only)"]
    reasons = [("pass: " if ok else "fail: ") + text for ok, text in checks]
    return all(ok for ok, _ in checks), reasons
