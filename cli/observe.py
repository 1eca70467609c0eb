"""`carl observe <job-id|path> [--json] [--diagnose]`: the phases, transition and stop rules of a run.

Calls the carl_observe tool and renders its response; `--json` prints exactly the tool's
structured response. Exit status 0, or 2 on bad input (unknown job, unreadable source).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from carl_studio.cli.app import run_tool
from carl_studio.cli.render import out, print_json
from carl_studio.tools.observe import ObserveResponse

RULE_STYLE = {"triggered": "bold red", "clear": "green", "not_applicable": "dim"}


def render(answer: ObserveResponse) -> None:
    """Print an observe response: summary, phases, stop rules, main metrics, plot path, diagnosis."""
    out.print(answer.summary)
    if answer.phases:
        phases = Table("phase", "steps", "points", "task mean", "disorder mean", box=None, header_style="bold")
        for p in answer.phases:
            task = "-" if p.task_mean is None else f"{p.task_mean:.3g}"
            disorder = "-" if p.disorder_mean is None else f"{p.disorder_mean:.3g}"
            phases.add_row(p.name, f"{p.start_step}-{p.end_step}", str(p.n_points), task, disorder)
        out.print(phases)
    rules = Table("stop rule", "verdict", "evidence", box=None, header_style="bold")
    for r in answer.stop_rules:
        rules.add_row(r.rule, f"[{RULE_STYLE[r.status]}]{r.status}[/]", r.message)
    out.print(rules)
    used = {answer.signals.task, answer.signals.disorder, answer.signals.phi, answer.signals.reward,
            answer.signals.diversity, answer.signals.length}
    shown = [m for m in answer.metrics if m.name in used and m.first is not None]
    if shown:
        metrics = Table("metric", "first", "last", "min", "max", "trend", box=None, header_style="bold")
        for m in shown:
            metrics.add_row(m.name, f"{m.first:.4g}", f"{m.last:.4g}", f"{m.min:.4g}", f"{m.max:.4g}", m.trend)
        out.print(metrics)
    if answer.plot_path:
        out.print(f"plot: {answer.plot_path}")
    if answer.diagnosis is not None:
        out.print(f"\n[bold]Diagnosis ({answer.diagnosis.model})[/]\n{answer.diagnosis.text}")
    elif answer.diagnosis_note:
        out.print(f"[yellow]{answer.diagnosis_note}[/]")
    out.print(f"next: {answer.next}")


def observe(
    source: Annotated[str, typer.Argument(help="Job id, run directory, trainer_state.json, JSONL metrics file, "
                                               "or trackio:<project>[:<run>].")],
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
    diagnose: Annotated[bool, typer.Option("--diagnose", help="Ask Claude for a diagnosis (ANTHROPIC_API_KEY).")] = False,
    model: Annotated[str | None, typer.Option(help="Claude model for --diagnose.")] = None,
    plot: Annotated[bool, typer.Option(help="Write the PNG plot.")] = True,
    plot_path: Annotated[str | None, typer.Option(help="Where to write the PNG (default: in the run directory).")] = None,
    tail_fraction: Annotated[float, typer.Option(help="Share of points the stop rules look at (0.05-0.5).")] = 0.2,
) -> None:
    """How a run is learning: phases and transition step, trends, stop rules, a plot."""
    answer = run_tool("carl_observe", {"source": source, "diagnose": diagnose, "diagnose_model": model, "plot": plot,
                                       "plot_path": plot_path, "tail_fraction": tail_fraction, "include_image": False})
    if json_output:
        print_json(answer)
    else:
        render(answer)


def register(app: typer.Typer) -> None:
    app.command("observe")(observe)
