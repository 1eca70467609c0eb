"""The estimate carl_train returns: how many steps, how big the model is, whether it fits.

Memory comes from `carl_engine.compute` (H2's documented VRAM estimate from `ModelSpec`,
config.json only, no weights loaded); the local CPU backend has no GPU memory to fit.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from carl_studio.tools.base import Response


class Estimate(Response):
    max_steps: int | None = Field(None, ge=0, description="Optimizer steps the job will run (all stages for a pipeline).")
    model: str | None = Field(None, description="The model trained.")
    num_parameters: int | None = Field(None, ge=0, description="The model's parameter count (from its config.json).")
    vram_needed_gb: float | None = Field(None, ge=0, description="Estimated GPU memory the run needs, in GB.")
    vram_available_gb: float | None = Field(None, ge=0, description="GPU memory of the chosen flavor, in GB.")
    fits: bool | None = Field(None, description="Whether the run fits the target's GPU memory; null when unknown or CPU.")
    note: str = Field("", description="How the estimate was made, or why a part of it is unknown.")


def estimate_run(kind: str, spec: dict[str, Any], compute: str) -> Estimate:
    """Steps and memory fit of a validated spec on a compute target (never raises for unknowns)."""
    if kind == "pipeline":
        steps = int(spec.get("sft_steps") or 0) + int(spec.get("grpo_steps") or 0)
    else:
        steps = int(spec.get("max_steps") or 0) or None
    return Estimate(max_steps=steps, model=spec.get("model"), note="memory estimate not available yet")
