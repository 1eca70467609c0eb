"""`carl train`: start a training job (carl_train) and, by default, follow it to the end.

    carl train                                  carl-tiny GRPO on arithmetic (task + CARL), here, followed
    carl train --send-it                        the whole pipeline (SFT -> gate -> GRPO -> eval), followed
    carl train --model carl-tiny --method grpo --task arithmetic --rewards task,carl --max-steps 20 --seed 0
    carl train --compute hf_jobs:a10g-large     submit and return the job id (--wait to follow)
    carl train --resume <job-id>                a new attempt from the latest checkpoint

Without --compute the job runs locally in the foreground: a progress bar with live reward
and Φ, and Ctrl-C stops the job. With --compute (or --resume) the command returns once the
job is submitted unless --wait is given; Ctrl-C while waiting only detaches. The exit status
is non-zero when a followed job does not succeed.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from carl_studio.cli.app import guarded, run_tool
from carl_studio.cli.render import err, follow, headline, out, print_json, state_text


def parse_rewards(text: str | None) -> dict[str, float] | None:
    """`task,carl` -> {"task": 1.0, "carl": 1.0}; `task=1,carl=0.5` -> weights as given.

    Raises:
        InvalidSpecError: field `rewards`, a weight that is not a number.
    """
    if text is None:
        return None
    from carl_engine.errors import InvalidSpecError

    rewards: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        try:
            rewards[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise InvalidSpecError("rewards", "weights are numbers, as in task=1,carl=0.5", got=part) from None
    return rewards


def parse_pairs(pairs: list[str] | None, field: str) -> dict[str, Any] | None:
    """`["beta=0.1", "logging_steps=5"]` -> {"beta": 0.1, "logging_steps": 5} (values read as YAML scalars)."""
    if not pairs:
        return None
    import yaml

    from carl_engine.errors import InvalidSpecError

    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidSpecError(field, "takes key=value", got=pair)
        parsed[key.strip()] = yaml.safe_load(value) if value else None
    return parsed


def train(
    model: Annotated[str | None, typer.Option(help="carl-tiny, a local folder or a Hub name.")] = None,
    method: Annotated[str | None, typer.Option(help="sft, grpo, dpo, kto or orpo.")] = None,
    task: Annotated[str | None, typer.Option(help="Built-in task whose verifier scores GRPO (e.g. arithmetic).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Built-in task, local .jsonl/.parquet/.csv or Hub dataset.")] = None,
    rewards: Annotated[str | None, typer.Option(help="GRPO rewards: task,carl or task=1,carl=0.5,diversity=0.1.")] = None,
    carl_preset: Annotated[str | None, typer.Option(help="CARL weights preset: paper or guarded.")] = None,
    cascade: Annotated[str | None, typer.Option(help="When CARL switches on: off, steps or auto.")] = None,
    lora: Annotated[bool, typer.Option("--lora", help="Train a LoRA adapter (rank --lora-r) instead of all weights.")] = False,
    lora_r: Annotated[int, typer.Option(help="LoRA rank, with --lora.")] = 16,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Per-device batch size.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for data, sampling and initialization.")] = None,
    save_steps: Annotated[int | None, typer.Option(help="Checkpoint every N steps.")] = None,
    trl: Annotated[list[str] | None, typer.Option(help="A TRL config field, key=value (repeatable).")] = None,
    compute: Annotated[str | None, typer.Option(
        help="local | ray[:address] | hf_jobs:<flavor> | runpod:<gpu> | ssh:<user@host[:port]>. "
        "Given: submit and return (unless --wait).")] = None,
    config: Annotated[str | None, typer.Option(help="A carl.yaml / JSON spec; flags override its fields.")] = None,
    resume: Annotated[str | None, typer.Option(help="Resume this failed, lost or cancelled job.")] = None,
    send_it: Annotated[bool, typer.Option("--send-it", help="Run the whole pipeline: SFT, gate, GRPO with CARL, eval.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print the plan; start nothing.")] = False,
    smoke: Annotated[bool, typer.Option("--smoke", help="Run 1 local step first; start the job only if it works.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="With --compute or --resume: follow the job to its end.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between progress polls.", min=0.1, max=600)] = 1.0,
) -> None:
    """Start a training job; without --compute, run it here in the foreground to its end."""
    lora_spec = {"r": lora_r} if lora else None
    arguments = {
        "model": model, "method": method, "task": task, "dataset": dataset,
        "rewards": guarded(lambda: parse_rewards(rewards)),
        "carl": {"preset": carl_preset} if carl_preset else None,
        "cascade": {"gate": cascade} if cascade else None,
        "lora": lora_spec, "max_steps": max_steps, "learning_rate": learning_rate, "batch_size": batch_size,
        "seed": seed, "save_steps": save_steps, "trl": guarded(lambda: parse_pairs(trl, "trl")),
        "compute": compute, "config": config, "resume": resume,
        "pipeline": send_it or None, "dry_run": dry_run or None, "smoke": smoke or None,
    }  # fmt: skip
    from carl_studio.tools.base import ToolContext

    ctx = ToolContext()
    answer = run_tool("carl_train", arguments, ctx)
    foreground = compute is None and resume is None
    if answer.dry_run or not (foreground or wait) or answer.state == "failed":
        _print_submitted(answer, json_output)
        if answer.state == "failed":
            raise typer.Exit(1)
        return
    if not json_output:
        err.print(f"job [bold]{answer.job_id}[/] ({answer.kind}) — run dir {answer.run_dir}")
        for line in answer.plan:
            err.print(f"  {line}")
    final = guarded(lambda: _follow(answer.job_id, ctx, foreground=foreground, show=not json_output, interval_s=interval))
    if json_output:
        print_json(final)
    else:
        out.print(f"{final.job_id} {state_text(final.state)} at step {final.step}"
                  f"{'/' + str(final.max_steps) if final.max_steps else ''}  {headline(final.metrics)}")
        if final.error:
            out.print(f"[red]{final.error}[/]")
        out.print(f"run dir: {final.run_dir}" + (f"\ncheckpoint: {final.checkpoint}" if final.checkpoint else ""))
    if final.state != "succeeded":
        raise typer.Exit(1)


def _follow(job_id: str, ctx: Any, *, foreground: bool, show: bool, interval_s: float):
    from carl_studio.tools.jobs import STATUS, STOP

    try:
        return follow(lambda: STATUS.call({"job_id": job_id}, ctx).job, interval_s=interval_s, show=show)
    except KeyboardInterrupt:
        if foreground:
            err.print(f"stopping {job_id} ...")
            return STOP.call({"job_id": job_id, "reason": "Ctrl-C in carl train"}, ctx).job
        err.print(f"detached; {job_id} goes on (carl status {job_id}, carl stop {job_id})")
        raise


def _print_submitted(answer: Any, json_output: bool) -> None:
    if json_output:
        print_json(answer)
        return
    if answer.dry_run:
        out.print(f"[bold]dry run[/] ({answer.kind} on {answer.backend}{':' + answer.target if answer.target else ''}):"
                  " nothing was started")
    else:
        out.print(f"job [bold]{answer.job_id}[/] {state_text(answer.state or 'queued')} on {answer.backend}"
                  f"{':' + answer.target if answer.target else ''} — run dir {answer.run_dir}")
    for line in answer.plan:
        out.print(f"  {line}")
    estimate = answer.estimate
    memory = f", needs ~{estimate.vram_needed_gb:.1f} GB" if estimate.vram_needed_gb is not None else ""
    fit = {True: ", fits", False: ", [red]does not fit[/]", None: ""}[estimate.fits]
    out.print(f"  estimate: {estimate.max_steps} steps{memory}{fit} ({estimate.note})")
    if answer.error:
        out.print(f"[red]{answer.error}[/]")
    elif not answer.dry_run:
        out.print(f"follow it: carl status {answer.job_id} · carl logs {answer.job_id} --follow")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
