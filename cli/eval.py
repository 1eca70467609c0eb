"""`carl eval <checkpoint|job-id> [--task arithmetic] [-n 64] [--min-accuracy 0.6] [--baseline ...] [--json]`.

Calls the carl_eval tool and renders its response. Exit status: 0 when the gate passed
(or an eval job was started), 1 when it failed, 2 on bad input — so CI can gate on it.
"""

from __future__ import annotations

from typing import Any

import typer

from carl_studio.cli.app import run_tool
from carl_studio.cli.render import out, print_json
from carl_studio.tools.eval import EvalResponse


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render(answer: EvalResponse) -> None:
    """Print an eval response as tables (rich)."""
    from rich.table import Table

    console = out
    if answer.mode == "job":
        console.print(f"eval job [bold]{answer.job_id}[/bold] started ({answer.state}); {answer.next}")
        return
    colour = "green" if answer.passed else "red"
    console.print(f"[bold {colour}]{(answer.verdict or '').upper()}[/bold {colour}]  {answer.checkpoint}")
    for reason in answer.reasons:
        console.print(f"  {reason}")
    table = Table("metric", "candidate", "95% interval", *(["baseline"] if answer.baseline_metrics else []))
    m, b = answer.metrics, answer.baseline_metrics
    if m is None:
        return
    rows: list[tuple[str, Any, Any]] = [
        ("accuracy (greedy)", m.accuracy, b.accuracy if b else None),
        ("mean Φ", m.phi_mean, b.phi_mean if b else None),
        ("group diversity", m.diversity, b.diversity if b else None),
    ]
    for name, iv, base in rows:
        extra = [_fmt(base.value)] if b else []
        table.add_row(name, _fmt(iv.value), f"[{_fmt(iv.low)}, {_fmt(iv.high)}]", *extra)
    for key, value in m.carl.items():
        table.add_row(f"carl {key}", _fmt(value), "", *([_fmt(b.carl.get(key))] if b else []))
    table.add_row("mean length (tokens)", f"{m.mean_length:.1f}", "", *([f"{b.mean_length:.1f}"] if b else []))
    console.print(table)
    console.print(f"eval.json: {', '.join(answer.eval_json) or '(not written)'}  ·  {answer.next}")


def eval_command(
    checkpoint: str = typer.Argument(..., help="Checkpoint folder, run directory, or job id."),
    task: str = typer.Option("arithmetic", help="Built-in task (prompts and verifier)."),
    dataset: str | None = typer.Option(None, help="Local .jsonl/.json/.csv/.parquet file with prompt and answer."),
    n: int = typer.Option(32, "-n", "--n", help="Prompts to evaluate; above 64 the eval runs as a job."),
    group_size: int = typer.Option(4, help="Sampled completions per prompt (Φ, CARL, diversity)."),
    temperature: float = typer.Option(1.0, help="Sampling temperature of the group completions."),
    max_new_tokens: int = typer.Option(32, help="Longest completion, in tokens."),
    seed: int = typer.Option(0, help="Seed of prompts and sampling."),
    min_accuracy: float | None = typer.Option(None, help="Gate: accuracy must be at least this."),
    phi_min: float | None = typer.Option(None, help="Gate: mean Φ must be at least this."),
    phi_max: float | None = typer.Option(None, help="Gate: mean Φ must be at most this."),
    min_diversity: float | None = typer.Option(None, help="Gate: group diversity must be at least this."),
    baseline: str | None = typer.Option(None, help="Gate: not worse than this checkpoint or job beyond the intervals."),
    mode: str = typer.Option("auto", help="auto | inline | job."),
    compute: str = typer.Option("local", help="Where an eval job runs."),
    json_out: bool = typer.Option(False, "--json", help="Print the response as JSON."),
) -> None:
    """Evaluate a checkpoint and apply the eval gate (exit 1 when the gate fails)."""
    arguments = {k: v for k, v in locals().items() if k not in ("json_out",) and v is not None}
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weight-loading bar is noise on a terminal and in --json output
    answer = run_tool("carl_eval", arguments)
    if json_out:
        print_json(answer)
    else:
        render(answer)
    if answer.mode == "inline" and not answer.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `carl eval` to the CLI app."""
    app.command("eval")(eval_command)
