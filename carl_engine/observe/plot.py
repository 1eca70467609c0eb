"""The PNG plot of a run: reward, entropy/Φ and accuracy by step, with the phases shaded.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global state, no display),
imported only when a plot is drawn. The file is written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

from carl_engine.observe.models import Observation
from carl_engine.observe.readers import MetricLog

PHASE_COLORS = {
    "baseline": "#d9d9d9",
    "melting": "#fdae6b",
    "transition": "#fb6a4a",
    "crystallization": "#9ecae1",
    "converged": "#a1d99b",
}


def _panels(obs: Observation) -> list[tuple[str, list[str]]]:
    s = obs.signals
    reward = [n for n in (s.reward,) if n] or ([s.task] if s.task else [])
    disorder = [n for n in (s.disorder if s.disorder and not s.disorder.startswith("1 - ") else None, s.phi) if n]
    accuracy = [n for n in (s.task,) if n and n != s.reward]
    extra = [n for n in (s.diversity, s.length) if n]
    panels = [("reward", reward), ("entropy / Φ", disorder), ("accuracy", accuracy), ("diversity / length", extra)]
    return [(title, names) for title, names in panels if names]


def plot_run(log: MetricLog, obs: Observation, path: Path) -> Path:
    """Draw the run's plot to `path` (PNG). Returns the path written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    panels = _panels(obs) or [(name, [name]) for name in sorted(log.series)[:3]]
    fig = Figure(figsize=(8, 2.2 * len(panels) + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (title, names) in zip(axes, panels):
        for phase in obs.phases:
            ax.axvspan(phase.start_step - 0.5, phase.end_step + 0.5, color=PHASE_COLORS[phase.name], alpha=0.35, lw=0)
        twin = None
        for i, name in enumerate(names):
            points = log.series.get(name, [])
            target = ax if i == 0 else (twin := twin or ax.twinx())
            target.plot([s for s, _ in points], [v for _, v in points], lw=1.4, color=f"C{i}", label=name)
            target.set_ylabel(name, color=f"C{i}", fontsize=8)
        ax.set_title(title, fontsize=9, loc="left")
        if obs.transition_step is not None:
            ax.axvline(obs.transition_step, color="#a50f15", ls="--", lw=1)
    axes[-1].set_xlabel("step")
    names_seen = list(dict.fromkeys(p.name for p in obs.phases))
    handles = [Patch(color=PHASE_COLORS[name], alpha=0.6, label=name) for name in names_seen]
    if handles:
        fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"{obs.job_id or Path(obs.source).name}", fontsize=10, y=0.995, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path
