"""The phases of a CARL run, from change points of the task and disorder signals.

The paper describes five phases: baseline (low accuracy, low entropy), melting (entropy
rises, accuracy still low), transition (accuracy jumps while entropy falls), crystallization
(accuracy high, entropy falling further) and converged (both flat). Here:

1. The joint series [task, disorder] (task = accuracy or reward; disorder = entropy, or 1 - Φ;
   log-scaled when strictly positive, since entropy moves by factors) is segmented by exact
   penalized least squares on its mean (`changepoint.segment`). Runs longer than `MAX_POINTS`
   logged steps are averaged into that many consecutive bins first.
2. Segments are labelled by comparing segment means with two-sample z statistics in noise
   units (`Z_SIGNIFICANT` standard errors), never with thresholds on the metrics themselves:
   - the transition begins at the segment after the largest (in size) of the significant rises
     of the task mean, and lasts while the task mean stays significantly below its later plateau;
   - before it: the first segment is baseline; melting starts at the first segment whose
     disorder is significantly above the baseline's;
   - after it: the trailing segments indistinguishable from the last one (task and disorder)
     are converged; those between the transition and them are crystallization.
   When the jump goes straight to the plateau, there is a transition step but no transition
   phase. Without a task signal, the negated disorder stands in for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from carl_engine.observe.changepoint import noise_scale, segment
from carl_engine.observe.models import Phase

if TYPE_CHECKING:
    import numpy as np

MAX_POINTS = 1000
Z_SIGNIFICANT = 3.0
MIN_SEGMENT = 3  # logged points; a phase shorter than this is not told apart from noise


@dataclass
class _Segment:
    start: int  # row index
    end: int  # row index, exclusive
    task: float  # mean of the task column (noise units)
    disorder: float | None  # mean of the disorder column (noise units)

    @property
    def n(self) -> int:
        return self.end - self.start


def _bin(steps: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most MAX_POINTS rows: (first step of each bin, last step of each bin, bin means)."""
    import numpy as np

    if len(steps) <= MAX_POINTS:
        return steps, steps, X
    edges = np.linspace(0, len(steps), MAX_POINTS + 1).astype(int)
    rows = [X[a:b].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])]
    return steps[edges[:-1]], steps[edges[1:] - 1], np.vstack(rows)


def _log_if_positive(x: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.log(x) if np.all(x > 0) else x


def _z(a_mean: float, a_n: int, b_mean: float, b_n: int) -> float:
    """Two-sample z of a difference of means, for columns in unit-noise units."""
    return (a_mean - b_mean) / math.sqrt(1.0 / a_n + 1.0 / b_n)


def _label(segs: list[_Segment]) -> tuple[list[str], int | None]:
    """Phase name per segment, and the index of the first transition segment (None if none)."""
    labels = ["baseline"] * len(segs)
    # The largest rise of the task mean among the significant ones (by size, not by z: a
    # short segment inside the jump must not hide it).
    rises = [
        i for i in range(len(segs) - 1) if _z(segs[i + 1].task, segs[i + 1].n, segs[i].task, segs[i].n) > Z_SIGNIFICANT
    ]
    jump = max(rises, key=lambda i: segs[i + 1].task - segs[i].task) if rises else None
    if jump is None:
        _label_before(segs, labels, len(segs))
        return labels, None
    first = jump + 1
    plateau = max(segs[first:], key=lambda s: s.task)
    stop = first
    while stop < len(segs) and _z(plateau.task, plateau.n, segs[stop].task, segs[stop].n) > Z_SIGNIFICANT:
        labels[stop] = "transition"
        stop += 1
    _label_before(segs, labels, first)
    tail = segs[-1]
    converged_from = len(segs) - 1
    while converged_from - 1 >= stop and _same(segs[converged_from - 1], tail):
        converged_from -= 1
    for i in range(stop, len(segs)):
        labels[i] = "converged" if i >= converged_from else "crystallization"
    return labels, first


def _label_before(segs: list[_Segment], labels: list[str], stop: int) -> None:
    base = segs[0]
    melting = False
    for i in range(1, stop):
        seg = segs[i]
        if base.disorder is not None and seg.disorder is not None:
            melting = melting or _z(seg.disorder, seg.n, base.disorder, base.n) > Z_SIGNIFICANT
        labels[i] = "melting" if melting else "baseline"


def _same(a: _Segment, b: _Segment) -> bool:
    if abs(_z(a.task, a.n, b.task, b.n)) > Z_SIGNIFICANT:
        return False
    if a.disorder is not None and b.disorder is not None:
        return abs(_z(a.disorder, a.n, b.disorder, b.n)) <= Z_SIGNIFICANT
    return True


def find_phases(
    steps: list[int], task: list[float] | None, disorder: list[float] | None
) -> tuple[list[Phase], int | None, list[int]]:
    """Phases, transition step and change points of aligned task/disorder series.

    Args:
        steps: [n] logged steps, ascending.
        task: [n] accuracy or reward (finite), or None when not logged.
        disorder: [n] entropy or 1 - Φ (finite), or None when not logged.
    Returns:
        (phases in step order, the transition's first step or None, change-point steps).
    """
    import numpy as np

    if (task is None and disorder is None) or len(steps) < 4:
        return [], None, []
    raw_task = np.asarray(task if task is not None else [-v for v in disorder], dtype=float)  # type: ignore[union-attr]
    raw_dis = np.asarray(disorder, dtype=float) if disorder is not None else None
    cols = [raw_task] + ([_log_if_positive(raw_dis)] if raw_dis is not None else [])
    X = np.column_stack(cols)
    first_steps, last_steps, Xb = _bin(np.asarray(steps), X)
    Z = (Xb - Xb.mean(axis=0)) / np.array([noise_scale(Xb[:, j]) for j in range(Xb.shape[1])])
    cuts = segment(Z, min_size=MIN_SEGMENT)
    bounds = [0, *cuts, len(Z)]
    segs = [
        _Segment(a, b, float(Z[a:b, 0].mean()), float(Z[a:b, 1].mean()) if Z.shape[1] > 1 else None)
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    labels, first = _label(segs)
    phases: list[Phase] = []
    for seg, name in zip(segs, labels):
        if phases and phases[-1].name == name:
            phases[-1] = phases[-1].model_copy(update={"end_step": int(last_steps[seg.end - 1])})
        else:
            start, end = int(first_steps[seg.start]), int(last_steps[seg.end - 1])
            phases.append(Phase(name=name, start_step=start, end_step=end, n_points=0))  # type: ignore[arg-type]
    steps_np = np.asarray(steps)
    for i, phase in enumerate(phases):
        inside = (steps_np >= phase.start_step) & (steps_np <= phase.end_step)
        phases[i] = phase.model_copy(
            update={
                "n_points": int(inside.sum()),
                "task_mean": float(np.asarray(task)[inside].mean()) if task is not None else None,
                "disorder_mean": float(raw_dis[inside].mean()) if raw_dis is not None else None,
            }
        )
    transition = int(first_steps[segs[first].start]) if first is not None else None
    return phases, transition, [int(first_steps[c]) for c in cuts]
