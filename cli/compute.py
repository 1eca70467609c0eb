"""`carl compute` (carl_compute) and `carl bundle` (a self-contained script that runs a spec with uv)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from carl_studio.cli.app import guarded, run_tool
from carl_studio.cli.render import out, print_json


def compute(
    backend: Annotated[str | None, typer.Option(help="Only this backend's flavors (hf_jobs, runpod).")] = None,
    model: Annotated[str | None, typer.Option(help="Check whether this model fits each flavor.")] = None,
    method: Annotated[str, typer.Option(help="sft, grpo, dpo, kto or orpo (for the fit).")] = "grpo",
    lora: Annotated[bool, typer.Option("--lora", help="Estimate for a LoRA adapter.")] = False,
    quantization: Annotated[str, typer.Option(help="none, 8bit or 4bit base weights (LoRA).")] = "none",
    seq_len: Annotated[int, typer.Option(help="Prompt + completion tokens.")] = 1024,
    batch_size: Annotated[int, typer.Option(help="Per-device batch size.")] = 8,
    offline: Annotated[bool, typer.Option("--offline", help="Use the shipped catalogue only.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
) -> None:
    """Backends and their credentials, GPU flavors with prices, and whether a model fits."""
    answer = run_tool("carl_compute", {"backend": backend, "model": model, "method": method, "lora": lora,
                                       "quantization": quantization, "seq_len": seq_len, "batch_size": batch_size,
                                       "live": not offline})
    if json_output:
        print_json(answer)
        return
    backends = Table(title="backends", box=None, header_style="bold", title_justify="left")
    for column in ("backend", "ready", "credentials", "note"):
        backends.add_column(column)
    for b in answer.backends:
        creds = " ".join(f"{c.variable}={'set' if c.present else 'missing'}" for c in b.credentials)
        backends.add_row(b.name, "[green]yes[/]" if b.ready else "[red]no[/]", creds, b.note)
    out.print(backends)
    if answer.fit is not None:
        fit = answer.fit
        out.print(f"\n{fit.model} ({fit.architecture}, {fit.num_parameters:,} parameters) with {fit.method}: "
                  f"needs ~{fit.vram_needed_gb:.2f} GB ({fit.note})")
    flavors = Table(title=f"flavors — {answer.source}", box=None, header_style="bold", title_justify="left")
    for column in ("backend", "flavor", "gpu", "vram/gpu", "$/h") + (("fits",) if answer.fit else ()):
        flavors.add_column(column)
    for f in answer.flavors:
        gpu = f"{f.gpu_count}x {f.gpu}" if f.gpu else "cpu"
        row = [f.backend, f.name, gpu, f"{f.vram_gb_per_gpu:g} GB" if f.vram_gb_per_gpu else "-",
               f"{f.price_per_hour_usd:.2f}" if f.price_per_hour_usd is not None else "?"]
        if answer.fit:
            row.append({True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[f.fits])
        flavors.add_row(*row)
    out.print(flavors)


def bundle(
    spec: Annotated[str, typer.Argument(help="A carl.yaml / JSON spec (a TrainSpec, or a pipeline with --kind).")],
    out_dir: Annotated[str, typer.Option("--out", help="Folder (or .py path) to write the script to.")] = ".",
    kind: Annotated[str, typer.Option(help="The spec's job kind: train or pipeline.")] = "train",
) -> None:
    """Write a self-contained script (uv inline metadata) that runs SPEC anywhere with `uv run`."""
    path = guarded(lambda: _write_bundle(spec, out_dir, kind))
    out.print(f"wrote {path}\nrun it with: uv run {path}")


def _write_bundle(spec_path: str, out_dir: str, kind: str):
    from carl_engine.backends.bundle import write_bundle
    from carl_engine.errors import InvalidSpecError
    from carl_engine.jobs.manager import RUN_KINDS, validate_spec
    from carl_studio.tools.train import _read_mapping

    if kind not in ("train", "pipeline"):
        raise InvalidSpecError("kind", "must be train or pipeline", got=kind)
    clean = validate_spec(kind, _read_mapping(spec_path))
    return write_bundle({**clean, "kind": RUN_KINDS[kind]}, out_dir)


def register(app: typer.Typer) -> None:
    app.command("compute")(compute)
    app.command("bundle")(bundle)
