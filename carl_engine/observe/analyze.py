"""`observe(source)`: read a run's metrics and describe how it is learning.

Which logged metric plays which role is decided by name (TRL's names first, then CARL's):
task = an accuracy if logged (`accuracy`, `*/accuracy`, `*_accuracy`, `mean_token_accuracy`),
else a task verifier's reward (`rewards/<task>/mean`, not carl/diversity), else the total `reward`; disorder = `entropy` (TRL logs it for SFT and GRPO), else 1 - mean Φ;
Φ = a `phi` metric (`carl/phi_mean`, ...); diversity = a `diversity` metric; length =
`completions/mean_length`. Spread metrics (`*_std`, `*/std`) never play a role.
"""

from __future__ import annotations

import re
from pathlib import Path

from carl_engine.errors import InvalidSpecError
from carl_engine.observe.models import MetricSummary, Observation, Signals
from carl_engine.observe.phases import find_phases
from carl_engine.observe.readers import MetricLog, resolve
from carl_engine.observe.stop_rules import (
    Series,
    check_coherence_trap,
    check_length_drift,
    check_non_finite,
    check_reward_flat,
    finite,
    linear_fit,
)

#: reward functions that are not task verifiers (rewards/<name>/mean)
NOT_TASK = {"carl", "diversity", "format", "length"}


def _is_spread(name: str) -> bool:
    leaf = name.rsplit("/", 1)[-1]
    return leaf in {"std", "min", "max"} or leaf.endswith(("_std", "_min", "_max")) or "clipped" in leaf


def _pick(names: list[str], exact: list[str], leaf_suffixes: tuple[str, ...] = (), contains: str = "") -> str | None:
    for name in exact:
        if name in names:
            return name
    usable = sorted(n for n in names if not _is_spread(n))
    for name in usable:
        if leaf_suffixes and name.rsplit("/", 1)[-1].endswith(leaf_suffixes):
            return name
    for name in usable:
        if contains and contains in name:
            return name
    return None


def pick_signals(names: list[str]) -> Signals:
    """Which of the logged metric `names` is the task, disorder, Φ, reward, diversity and length signal."""
    accuracy = _pick(names, ["accuracy", "eval/accuracy", "carl/accuracy", "carl/task_accuracy"], ("accuracy",))
    # GRPO logs each reward function as rewards/<name>/mean; a task verifier's is its accuracy.
    task_rewards = [n for n in names if re.fullmatch(r"rewards/[^/]+/mean", n) and n.split("/")[1] not in NOT_TASK]
    reward = _pick(names, ["reward"])
    entropy = _pick(names, ["entropy", "carl/entropy", "carl/entropy_mean"], ("entropy",))
    phi = _pick(names, ["carl/phi_mean", "carl/phi", "phi_mean", "phi"], contains="phi")
    return Signals(
        task=accuracy or (sorted(task_rewards)[0] if task_rewards else None) or reward,
        disorder=entropy or (f"1 - {phi}" if phi else None),
        phi=phi,
        reward=reward,
        diversity=_pick(names, ["carl/diversity", "rewards/diversity/mean", "diversity"], contains="diversity"),
        length=_pick(names, ["completions/mean_length", "mean_length", "carl/mean_length"], ("mean_length",)),
    )


def summarize(name: str, points: Series) -> MetricSummary:
    """Summary and trend of one metric (non-finite values counted, then left out)."""
    good = finite(points)
    summary = MetricSummary(name=name, n=len(good), non_finite=len(points) - len(good))
    if not good:
        return summary
    values = [v for _, v in good]
    fit = linear_fit(good)
    trend = "too_short"
    if fit is not None:
        slope, stderr = fit
        trend = "flat" if abs(slope) <= 2 * stderr else ("rising" if slope > 0 else "falling")
    return summary.model_copy(
        update={
            "first_step": good[0][0],
            "last_step": good[-1][0],
            "first": values[0],
            "last": values[-1],
            "min": min(values),
            "max": max(values),
            "mean": sum(values) / len(values),
            "slope": fit[0] if fit else None,
            "slope_stderr": fit[1] if fit else None,
            "trend": trend,
        }
    )


def _aligned(log: MetricLog, signals: Signals) -> tuple[list[int], list[float] | None, list[float] | None]:
    """Steps where every present signal has a finite value, and the signals there."""
    task = dict(finite(log.series[signals.task])) if signals.task else None
    if signals.disorder and signals.disorder.startswith("1 - "):
        disorder = {s: 1.0 - v for s, v in finite(log.series[signals.phi or ""])}
    else:
        disorder = dict(finite(log.series[signals.disorder])) if signals.disorder else None
    present = [d for d in (task, disorder) if d is not None]
    if not present:
        return [], None, None
    steps = sorted(set.intersection(*(set(d) for d in present)))
    return (
        steps,
        [task[s] for s in steps] if task is not None else None,
        [disorder[s] for s in steps] if disorder is not None else None,
    )


def _summary_text(obs: Observation) -> str:
    if obs.n_points == 0:
        return f"No metrics logged yet in {obs.source}."
    parts = [f"Read {obs.n_points} logged steps ({obs.first_step}-{obs.last_step}) from a {obs.source_kind}."]
    if obs.phases:
        shown = ", ".join(f"{p.name} {p.start_step}-{p.end_step}" for p in obs.phases)
        parts.append(f"Phases: {shown}.")
    if obs.transition_step is not None:
        parts.append(f"Transition at step {obs.transition_step}.")
    elif obs.signals.task or obs.signals.disorder:
        parts.append("No transition yet: the task signal has not risen significantly.")
    task = next((m for m in obs.metrics if m.name == obs.signals.task), None)
    if task and task.first is not None and task.last is not None:
        parts.append(f"{task.name}: {task.first:.3g} -> {task.last:.3g} ({task.trend}).")
    fired = [r for r in obs.stop_rules if r.status == "triggered"]
    parts.append("Stop rules: " + ("; ".join(r.message for r in fired) if fired else "none triggered") + ".")
    return " ".join(parts)


def observe(
    source: str,
    *,
    tail_fraction: float = 0.2,
    phi_high: float = 0.9,
    length_drift: float = 0.5,
    plot: bool = True,
    plot_path: str | Path | None = None,
) -> Observation:
    """The learning geometry of a run: summaries, phases, transition step, stop rules and a plot.

    Args:
        source: a job id, a run directory, a trainer_state.json, a JSONL metrics file, or
            `trackio:<project>[:<run>]` / a trackio `.db` file.
        tail_fraction: share of the logged points the flat-reward, trap and drift rules look at.
        phi_high: mean Φ at or above which the coherence trap can fire.
        length_drift: relative change of mean completion length that counts as drift.
        plot: write the PNG plot.
        plot_path: where to write it; default `observe.png` in the run directory (next to the
            file for file sources).
    Returns:
        The Observation.
    Raises:
        InvalidSpecError: a parameter out of range, or an unreadable source (field "source").
        JobNotFoundError: an unknown job id.
    """
    if not 0.05 <= tail_fraction <= 0.5:
        raise InvalidSpecError("tail_fraction", "must be between 0.05 and 0.5", got=tail_fraction)
    if not 0.0 < phi_high <= 1.0:
        raise InvalidSpecError("phi_high", "must be in (0, 1]", got=phi_high)
    if not 0.0 < length_drift <= 10.0:
        raise InvalidSpecError("length_drift", "must be in (0, 10]", got=length_drift)
    log = resolve(source)
    names = sorted(log.series)
    signals = pick_signals(names)
    steps = log.steps
    obs = Observation(
        source=log.source,
        source_kind=log.source_kind,  # type: ignore[arg-type]
        job_id=log.job_id,
        n_points=len(steps),
        first_step=steps[0] if steps else None,
        last_step=steps[-1] if steps else None,
        metrics=[summarize(name, log.series[name]) for name in names],
        signals=signals,
    )
    aligned_steps, task, disorder = _aligned(log, signals)
    phases, transition, cuts = find_phases(aligned_steps, task, disorder)
    get = log.series.get
    rules = [
        check_non_finite(log.series),
        check_reward_flat(get(signals.reward or signals.task or ""), tail_fraction=tail_fraction,
                          name=signals.reward or signals.task or "reward"),
        check_coherence_trap(get(signals.phi or ""), get(signals.diversity or ""),
                             tail_fraction=tail_fraction, phi_high=phi_high),
        check_length_drift(get(signals.length or ""), tail_fraction=tail_fraction, max_ratio=length_drift),
    ]
    obs = obs.model_copy(
        update={
            "phases": phases,
            "transition_step": transition,
            "change_points": cuts,
            "stop_rules": rules,
            "should_stop": any(r.status == "triggered" for r in rules),
        }
    )
    obs = obs.model_copy(update={"summary": _summary_text(obs)})
    target = Path(plot_path) if plot_path else log.default_plot_path
    if plot and target is not None and steps:
        from carl_engine.observe.plot import plot_run

        obs = obs.model_copy(update={"plot_path": str(plot_run(log, obs, target))})
    return obs
