"""`carl bench reward [...]` (inline ratios) and `carl bench ab [...]` (starts the A/B job)."""

from __future__ import annotations

import typer

from carl_studio.cli.app import run_tool
from carl_studio.cli.render import out, print_json
from carl_studio.tools.bench import BenchResponse

bench_app = typer.Typer(help="Benchmarks: reward throughput / GRPO overhead, and the seed-matched A/B bench.",
                        no_args_is_help=True)


def _show(answer: BenchResponse, json_out: bool) -> None:
    if json_out:
        print_json(answer)
    else:
        render(answer)


def render(answer: BenchResponse) -> None:
    """Print a bench response (rich)."""
    from rich.table import Table

    console = out
    if answer.bench == "ab":
        console.print(f"A/B bench job [bold]{answer.job_id}[/bold] started ({answer.state}); {answer.next}")
        return
    table = Table("arm", "shape", "ours (s)", "reference (s)", "speed-up", "max |diff|")
    if answer.throughput is not None:
        for name, t in (("from_logits", answer.throughput.from_logits), ("from_stats", answer.throughput.from_stats)):
            table.add_row(name, "x".join(map(str, t.shape)), f"{t.ours_s:.4f}", f"{t.reference_s:.4f}",
                          f"{t.speedup:.2f}x", f"{t.max_abs_diff:.1e}")
    console.print(table)
    if answer.grpo_overhead is not None:
        g = answer.grpo_overhead
        console.print(f"GRPO step time vs plain GRPO: ours {g.ours_ratio:.3f}x, paper's way {g.paper_ratio:.3f}x "
                      f"({g.steps_per_round} steps, {g.device})")
    console.print(answer.next)


@bench_app.command("reward")
def reward_command(
    batch: int = typer.Option(4, help="B of the [B, T, V] logits."),
    length: int = typer.Option(128, help="T of the logits."),
    vocab: int = typer.Option(8000, help="V of the logits."),
    stats_batch: int = typer.Option(16, help="B of the per-token stats."),
    stats_length: int = typer.Option(256, help="T of the per-token stats."),
    repeats: int = typer.Option(3, help="Timed calls per arm (median)."),
    grpo_overhead: bool = typer.Option(False, "--grpo-overhead", help="Also time GRPO steps on carl-tiny."),
    grpo_steps: int = typer.Option(4, help="GRPO steps per arm with --grpo-overhead."),
    json_out: bool = typer.Option(False, "--json", help="Print the response as JSON."),
) -> None:
    """Time the CARL reward against the numpy reference (and GRPO overhead); print the ratios."""
    arguments = {k: v for k, v in locals().items() if k != "json_out"}
    _show(run_tool("carl_bench", {"bench": "reward", **arguments}), json_out)


@bench_app.command("ab")
def ab_command(
    task: str = typer.Option("arithmetic", help="Built-in task."),
    model: str = typer.Option("carl-tiny", help="Base model."),
    arms: str = typer.Option("task,task+carl,task+carl+guard", help="Comma-separated arms."),
    seeds: int = typer.Option(2, help="Seeds (each arm trains once per seed)."),
    sft_steps: int = typer.Option(200, help="SFT warm-start steps per seed."),
    grpo_steps: int = typer.Option(20, help="GRPO steps per arm and seed."),
    carl_weight: float = typer.Option(0.5, help="CARL weight next to the task reward."),
    eval_n: int = typer.Option(64, help="Eval prompts per arm and seed."),
    alpha: float = typer.Option(0.05, help="Significance level."),
    compute: str = typer.Option("local", help="Where the job runs."),
    json_out: bool = typer.Option(False, "--json", help="Print the response as JSON."),
) -> None:
    """Start the seed-matched A/B bench job; follow it with `carl status <job-id>`."""
    arguments = {
        "bench": "ab", "task": task, "model": model, "arms": [a.strip() for a in arms.split(",") if a.strip()],
        "seeds": seeds, "sft_steps": sft_steps, "ab_grpo_steps": grpo_steps, "carl_weight": carl_weight,
        "eval_n": eval_n, "alpha": alpha, "compute": compute,
    }
    _show(run_tool("carl_bench", arguments), json_out)


def register(app: typer.Typer) -> None:
    """Add `carl bench` to the CLI app."""
    app.add_typer(bench_app, name="bench")
