"""The estimate carl_train returns: how many steps, how big the model is, whether it fits.

Memory is carl_engine.compute's documented VRAM estimate, from `ModelSpec` (config.json
only, no weights). A rented flavor (hf_jobs:<flavor>, runpod:<gpu>) is looked up in the
shipped catalogue (no network call here) and the run is checked against one GPU's memory.
Local, Ray and SSH machines are yours: their memory is not known, so `fits` is null.
Sequence length: GRPO's `max_prompt_length` (trl, default 512) + `max_completion_length`;
other methods TRL's `max_length` (trl, default 1024).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from carl_engine.errors import CarlError
from carl_studio.tools.base import Response


class Estimate(Response):
    max_steps: int | None = Field(None, ge=0, description="Optimizer steps the job will run (all stages for a pipeline).")
    model: str | None = Field(None, description="The model trained.")
    num_parameters: int | None = Field(None, ge=0, description="The model's parameter count (from its config.json).")
    vram_needed_gb: float | None = Field(None, ge=0, description="Estimated GPU memory the run needs, GB.")
    vram_available_gb: float | None = Field(None, ge=0, description="Memory of one GPU of the chosen flavor, GB.")
    fits: bool | None = Field(None, description="Whether the run fits one GPU of the target; null when unknown.")
    note: str = Field("", description="How the estimate was made, or why a part of it is unknown.")


def estimate_run(kind: str, spec: dict[str, Any], compute: str) -> Estimate:
    """Steps and memory fit of a validated spec on a compute target (unknown parts say why)."""
    if kind == "pipeline":
        steps = int(spec.get("sft_steps") or 0) + int(spec.get("grpo_steps") or 0)
        method, lora, batch = "grpo", bool(spec.get("lora")), int(spec.get("grpo_batch_size") or 8)
        seq_len = 512 + int(spec.get("max_completion_length") or 8)
    else:
        steps = int(spec.get("max_steps") or 0) or None
        method, lora, batch = spec.get("method", "grpo"), spec.get("lora") is not None, int(spec.get("batch_size") or 8)
        trl = spec.get("trl") or {}
        if method == "grpo":
            seq_len = int(trl.get("max_prompt_length") or 512) + int(spec.get("max_completion_length") or 16)
        else:
            seq_len = int(trl.get("max_length") or 1024)
    model = spec.get("model") or "carl-tiny"
    try:
        from carl_engine.compute import estimate_vram
        from carl_engine.models import ModelSpec

        model_spec = ModelSpec.from_pretrained(model, list_modules=False)
        needed = estimate_vram(model_spec, method=method, lora=lora, seq_len=seq_len, batch=batch)
    except CarlError as err:
        return Estimate(max_steps=steps, model=model, note=f"no memory estimate: {err}")
    backend, _, target = compute.partition(":")
    flavor = _catalogue_flavor(backend, target) if target else None
    if flavor is None or not flavor.gpu_count or flavor.vram_gb_per_gpu is None:
        where = "a CPU flavor" if flavor is not None else f"{backend} (memory of your machine unknown)"
        return Estimate(max_steps=steps, model=model, num_parameters=model_spec.num_parameters,
                        vram_needed_gb=needed.needed_gb, note=f"seq_len {seq_len}, batch {batch}; fit not checked on {where}")
    return Estimate(
        max_steps=steps, model=model, num_parameters=model_spec.num_parameters, vram_needed_gb=needed.needed_gb,
        vram_available_gb=flavor.vram_gb_per_gpu, fits=needed.needed_gb <= flavor.vram_gb_per_gpu,
        note=f"seq_len {seq_len}, batch {batch}, on one {flavor.gpu} of {flavor.name} (catalogue)",
    )  # fmt: skip


def _catalogue_flavor(backend: str, target: str) -> Any:
    from carl_engine.compute import catalogue

    try:
        flavors = catalogue(backend).flavors
    except CarlError:
        return None
    return next((f for f in flavors if target in (f.name, f.gpu_type_id, f.gpu)), None)
