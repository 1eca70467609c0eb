"""carl_compute: where a job can run, what it costs, and whether a model fits.

Three parts, each honest about its source:
- backends: every backend, whether its credentials are set (names of variables, never
  values), and the listed-but-unbuilt ones (tinker, prime) with the reason;
- flavors: GPU, VRAM and hourly price per flavor, live from the provider when reachable,
  else from the dated catalogue shipped with the package (the response says which);
- fit: for a given model + method (+ LoRA, quantization, sequence length, batch), the
  documented VRAM estimate of carl_engine.compute against each flavor's memory.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from carl_studio.tools.base import Request, Response, ToolContext, ToolSpec

Method = Literal["sft", "grpo", "dpo", "kto", "orpo"]


class ComputeRequest(Request):
    backend: str | None = Field(
        None, max_length=32, pattern=r"^[a-z_]+$", description="Only this backend's flavors (e.g. hf_jobs, runpod)."
    )
    model: str | None = Field(
        None,
        max_length=4096,
        description="A model to check the fit of: carl-tiny, a local folder or a Hub name (config.json only is read).",
    )
    method: Method = Field("grpo", description="The training method the fit is estimated for.")
    lora: bool = Field(False, description="Estimate for a LoRA adapter instead of full fine-tuning.")
    quantization: Literal["none", "8bit", "4bit"] = Field("none", description="Weight quantization of the base model.")
    seq_len: int = Field(1024, ge=16, le=131_072, description="Prompt + completion length in tokens.")
    batch_size: int = Field(8, ge=1, le=4096, description="Per-device batch size (GRPO: completions per step).")
    live: bool = Field(True, description="Ask providers for live flavors and prices when reachable (else the catalogue).")


class CredentialState(Response):
    variable: str = Field(description="Environment variable the backend reads.")
    present: bool = Field(description="Whether it is set in the server's environment (its value is never shown).")


class BackendInfo(Response):
    name: str = Field(description="Backend name, as used in carl_train's compute (e.g. hf_jobs:<flavor>).")
    supported: bool = Field(description="False for listed backends that are not built yet.")
    ready: bool = Field(description="Supported, installed, and every credential present.")
    credentials: list[CredentialState] = Field(default_factory=list, description="What it needs and whether it is set.")
    note: str = Field("", description="Why it is not ready, or how to use it.")


class FlavorInfo(Response):
    backend: str = Field(description="The backend that offers it.")
    name: str = Field(description="Flavor or GPU type, as used after 'backend:' in compute.")
    gpu: str | None = Field(None, description="GPU model (null for CPU flavors).")
    gpu_count: int = Field(0, ge=0, description="GPUs per machine.")
    vram_gb_per_gpu: float | None = Field(None, ge=0, description="Memory of one GPU, GB.")
    price_per_hour_usd: float | None = Field(None, ge=0, description="Hourly price, USD (null when unknown).")
    fits: bool | None = Field(
        None, description="With a model given: whether the run fits one GPU's memory (null: CPU flavor or no model)."
    )
    fits_sharded: bool | None = Field(
        None, description="With a model given: whether it fits with weights/optimizer sharded over the GPUs (FSDP)."
    )
    headroom_gb: float | None = Field(None, description="One GPU's memory minus the need, GB (negative: short by).")


class ModelFit(Response):
    model: str = Field(description="The model checked.")
    architecture: str = Field(description="Its architecture (from config.json).")
    modality: str = Field(description="text or vision-language.")
    num_parameters: int = Field(ge=0, description="Parameter count (from the config's shapes).")
    trainable_parameters: int = Field(ge=0, description="Parameters the optimizer updates (all, or the LoRA adapter).")
    vram_needed_gb: float = Field(ge=0, description="Estimated GPU memory the run needs, GB (20% margin included).")
    breakdown_gb: dict[str, float] = Field(default_factory=dict, description="The estimate's parts, GB.")
    method: str = Field(description="Method the estimate is for.")
    note: str = Field(description="How the estimate is made.")


class ComputeResponse(Response):
    backends: list[BackendInfo] = Field(description="Every backend, ready or not.")
    flavors: list[FlavorInfo] = Field(description="Flavors with GPU, memory and price.")
    source: str = Field(description="Where the flavors come from: 'live' or 'catalogue <date>'.")
    fit: ModelFit | None = Field(None, description="The model's memory estimate, when a model was given.")


def backend_infos() -> list[BackendInfo]:
    """Every registered backend with its credential presence, then the unsupported ones."""
    from carl_engine.backends import BACKENDS, NOT_SUPPORTED, get_backend

    infos = []
    for name in BACKENDS:
        try:
            needed = tuple(get_backend(name).credentials)
        except ImportError as err:
            infos.append(BackendInfo(name=name, supported=True, ready=False, note=_missing_note(name, err)))
            continue
        states = [CredentialState(variable=v, present=bool(os.environ.get(v))) for v in needed]
        missing = [s.variable for s in states if not s.present]
        note = f"set {', '.join(missing)}" if missing else "ready"
        infos.append(BackendInfo(name=name, supported=True, ready=not missing, credentials=states, note=note))
    for name, reason in NOT_SUPPORTED.items():
        infos.append(BackendInfo(name=name, supported=False, ready=False, note=f"not supported yet: {reason}"))
    return infos


def _missing_note(name: str, err: ImportError) -> str:
    missing = err.name or "a dependency"
    if missing.startswith("carl_engine"):
        return f"not available in this installation ({missing} is missing)"
    extra = " (pip install 'carl-studio[ray]')" if name == "ray" else f" (pip install {missing})"
    return f"not installed: {missing} is missing{extra}"


def carl_compute(request: ComputeRequest, ctx: ToolContext) -> ComputeResponse:
    """Backends with credential presence, flavors with GPU/VRAM/price, and a model's fit.

    Raises:
        InvalidSpecError: an unknown backend or a model that cannot be resolved.
    """
    backends = backend_infos()
    if request.backend is not None and request.backend not in {b.name for b in backends}:
        from carl_engine.errors import InvalidSpecError

        raise InvalidSpecError("backend", f"unknown backend; use one of {', '.join(b.name for b in backends)}",
                               got=request.backend)
    flavors, source, fit = _flavors_and_fit(request)
    return ComputeResponse(backends=backends, flavors=flavors, source=source, fit=fit)


#: backends that rent machines by flavor; the others run where you point them (no flavor list)
FLAVOR_BACKENDS = ("hf_jobs", "runpod")
LIVE_TIMEOUT_S = 5.0


def _flavors_and_fit(request: ComputeRequest) -> tuple[list[FlavorInfo], str, ModelFit | None]:
    from carl_engine.compute import estimate_vram, fit_flavor, list_flavors

    if request.backend is not None and request.backend not in FLAVOR_BACKENDS:
        flavors, source = [], f"{request.backend} runs on machines you provide: no flavor list"
    else:
        found = list_flavors(request.backend, live=request.live, timeout_s=LIVE_TIMEOUT_S)
        flavors = found.flavors
        source = "; ".join(f"{backend}: {where}" for backend, where in found.sources.items())
    if request.model is None:
        return [_flavor_info(f) for f in flavors], source, None
    from carl_engine.models import ModelSpec

    spec = ModelSpec.from_pretrained(request.model, list_modules=False)
    estimate = estimate_vram(spec, method=request.method, lora=request.lora, quantization=request.quantization,
                             seq_len=request.seq_len, batch=request.batch_size)
    infos = []
    for flavor in flavors:
        fit = fit_flavor(estimate, flavor)
        infos.append(_flavor_info(flavor, fits=fit.fits, fits_sharded=fit.fits_sharded, headroom_gb=fit.headroom_gb))
    fit = ModelFit(
        model=request.model, architecture=spec.architecture, modality=spec.modality,
        num_parameters=spec.num_parameters, trainable_parameters=estimate.trainable_parameters,
        vram_needed_gb=estimate.needed_gb, breakdown_gb=estimate.breakdown_gb, method=request.method,
        note=f"(static + transient + CUDA context) x {1 + estimate.margin:g}; formula in carl_engine/compute.py",
    )  # fmt: skip
    return infos, source, fit


def _flavor_info(flavor, **fit) -> FlavorInfo:
    return FlavorInfo(backend=flavor.backend, name=flavor.name, gpu=flavor.gpu, gpu_count=flavor.gpu_count,
                      vram_gb_per_gpu=flavor.vram_gb_per_gpu, price_per_hour_usd=flavor.price_per_hour_usd, **fit)


COMPUTE = ToolSpec(
    name="carl_compute",
    title="Compute targets",
    description="Backends (local, ray, hf_jobs, runpod, ssh; tinker and prime listed as not supported) with whether "
    "their credentials are set, flavors with GPU, VRAM and hourly price (live or from the dated catalogue, which it "
    "says), and, for a model + method (+ LoRA/quantization/sequence length), whether it fits each flavor.",
    request=ComputeRequest,
    response=ComputeResponse,
    fn=carl_compute,
    read_only=True,
    idempotent=True,
    open_world=True,
)
