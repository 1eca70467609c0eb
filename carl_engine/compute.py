"""Compute flavors, their prices, and whether a training run fits their GPU memory.

Flavors come from the provider when it answers (HF Jobs: `HfApi.list_jobs_hardware()`), else
from the dated catalogue shipped in `carl_engine/data/flavors.json`; every answer says which.

The VRAM estimate (all sizes in GB = 2**30 bytes; P parameters, L layers, H hidden size,
V vocabulary, b batch, s sequence length, r LoRA rank):

    static     full fine-tune: 16·P bytes — bf16 weights 2 + bf16 grads 2 + fp32 master 4
                 + fp32 Adam m, v 8 (the ZeRO paper's 16 bytes a parameter)
               LoRA: frozen base at 2 (none) / 1.05 (8bit) / 0.55 (4bit) bytes a parameter,
                 embeddings kept in bf16; adapter A = L·r·Σ(in + out) over the target
                 projections, trained in fp32: 16·A bytes
               reference model (dpo, kto full fine-tune; grpo only when asked): + 2·P
    training   activations with gradient checkpointing: L·2·t·H (saved layer inputs)
                 + 34·t·H (one layer recomputed; Korthikanti et al. 2022, flash attention),
                 t = b·s tokens (× 2 for chosen + rejected in dpo/orpo); without
                 checkpointing L·34·t·H; logits t·V·6 (bf16 logits + fp32 log-softmax)
    generation (grpo) KV cache 2·L·b·s·n_kv·d_head·2 bytes; generation and the training
                 step do not overlap, so the transient part is max(training, generation)
    needed     (static + transient + 1 GB CUDA context) × (1 + margin), margin 0.20

A flavor fits when `needed` ≤ one GPU's memory (data parallel: every GPU holds the whole
model); `fits_sharded` divides the static part across the flavor's GPUs (FSDP / ZeRO-3).
CPU flavors have no GPU memory to fit: their `fits` is None.

Top-level imports stay light (no torch, no huggingface_hub): the MCP server imports this.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, Field

from carl_engine.errors import InvalidSpecError
from carl_engine.models import ModelSpec

GB = 2**30
METHODS = ("sft", "grpo", "dpo", "kto", "orpo")
QUANTIZATIONS = ("none", "8bit", "4bit")
Method = Literal["sft", "grpo", "dpo", "kto", "orpo"]
Quantization = Literal["none", "8bit", "4bit"]

FULL_BYTES_PER_PARAM = {"weights": 2, "gradients": 2, "optimizer": 12}  # optimizer: fp32 master + Adam m, v
BASE_BYTES_PER_PARAM = {"none": 2.0, "8bit": 1.05, "4bit": 0.55}  # incl. quantization scales
ADAPTER_BYTES_PER_PARAM = {"weights": 4, "gradients": 4, "optimizer": 8}
ACTIVATION_BYTES_PER_TOKEN_HIDDEN = 34  # one transformer layer, bf16, flash attention
CHECKPOINT_BYTES_PER_TOKEN_HIDDEN = 2  # a saved layer input, bf16
LOGIT_BYTES = 6  # bf16 logits + fp32 log-softmax
CUDA_CONTEXT_GB = 1.0
DEFAULT_MARGIN = 0.20
PAIRED_METHODS = ("dpo", "orpo")  # chosen and rejected run through the model together
REFERENCE_METHODS = ("dpo", "kto")  # keep a frozen reference model unless LoRA disables the adapter


class Flavor(BaseModel):
    """One machine type a backend offers."""

    backend: str = Field(description="The backend that offers it: hf_jobs or runpod.")
    name: str = Field(description="Flavor or GPU name, as used after 'backend:' in compute.")
    gpu: str | None = Field(description="GPU model; None for CPU flavors.")
    gpu_count: int = Field(ge=0, description="GPUs per machine.")
    vram_gb_per_gpu: float | None = Field(ge=0, description="Memory of one GPU, GB.")
    price_per_hour_usd: float | None = Field(ge=0, description="Hourly price in USD; None when unknown.")
    gpu_type_id: str | None = Field(None, description="Provider's GPU type id (RunPod create_pod).")

    @property
    def vram_gb(self) -> float | None:
        """Total GPU memory of the machine, GB."""
        return None if self.vram_gb_per_gpu is None else self.vram_gb_per_gpu * self.gpu_count


class FlavorList(BaseModel):
    """Flavors and, per backend, where they came from."""

    flavors: list[Flavor]
    sources: dict[str, str] = Field(description="backend -> 'live: ...' or 'catalogue <date> (...)'.")
    as_of: str = Field(description="Date of the shipped catalogue.")


class VramEstimate(BaseModel):
    """GPU memory a run needs, with its parts (see the module docstring for the formula)."""

    method: str
    lora: bool
    quantization: str
    seq_len: int
    batch: int
    trainable_parameters: int = Field(description="Parameters the optimizer updates.")
    breakdown_gb: dict[str, float] = Field(description="weights, gradients, optimizer, reference, activations, "
                                           "logits, kv_cache, cuda_context — GB each.")
    static_gb: float = Field(description="Weights, gradients, optimizer and reference: shardable across GPUs.")
    transient_gb: float = Field(description="max(training activations + logits, generation KV cache).")
    margin: float = Field(description="Safety margin applied on top (0.2 = 20 %).")
    needed_gb: float = Field(description="(static + transient + CUDA context) × (1 + margin), GB.")


class FlavorFit(BaseModel):
    """Whether an estimate fits one flavor."""

    flavor: Flavor
    needed_gb: float
    fits: bool | None = Field(description="Fits one GPU's memory (data parallel); None for CPU flavors.")
    fits_sharded: bool | None = Field(description="Fits with the static part sharded over the GPUs (FSDP/ZeRO-3).")
    headroom_gb: float | None = Field(description="One GPU's memory minus the need, GB (negative: short by).")


# ---- flavors ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _catalogue_json() -> dict[str, Any]:
    return json.loads(resources.files("carl_engine.data").joinpath("flavors.json").read_text())


def catalogue(backend: str | None = None) -> FlavorList:
    """The shipped, dated catalogue (no network).

    Args:
        backend: only this backend's flavors ("hf_jobs" or "runpod"); None for all.

    Raises:
        InvalidSpecError: a backend the catalogue does not list.
    """
    data = _catalogue_json()
    backends = _select_backends(backend, data)
    flavors = [Flavor(backend=b, **f) for b in backends for f in data["backends"][b]["flavors"]]
    sources = {b: f"catalogue {data['as_of']} ({data['backends'][b]['source']})" for b in backends}
    return FlavorList(flavors=flavors, sources=sources, as_of=data["as_of"])


def _select_backends(backend: str | None, data: dict[str, Any]) -> list[str]:
    known = list(data["backends"])
    if backend is None:
        return known
    if backend not in known:
        raise InvalidSpecError("backend", f"has no flavor list; backends with flavors: {', '.join(known)}", got=backend)
    return [backend]


def list_flavors(
    backend: str | None = None, *, live: bool = True, timeout_s: float = 10.0, endpoint: str | None = None
) -> FlavorList:
    """Flavors with GPU, memory and price: live from HF Jobs when it answers, else the catalogue.

    Args:
        backend: only this backend ("hf_jobs" or "runpod"); None for all.
        live: ask HF Jobs for its hardware list (RunPod is always the catalogue).
        timeout_s: give up on the live call after this many seconds.
        endpoint: the Hub endpoint (a stand-in in tests); None for HF_ENDPOINT / huggingface.co.

    Returns:
        A FlavorList whose `sources` says, per backend, whether it is live or the catalogue and why.

    Raises:
        InvalidSpecError: unknown backend.
    """
    result = catalogue(backend)
    if not live:
        return result.model_copy(update={"sources": {b: s.split(" (")[0] + " (live not requested)"
                                                     for b, s in result.sources.items()}})
    if "hf_jobs" not in result.sources:
        return result
    try:
        live_flavors = fetch_hf_jobs_flavors(timeout_s=timeout_s, endpoint=endpoint)
    except LiveUnavailable as exc:
        sources = {**result.sources, "hf_jobs": f"catalogue {result.as_of} (live HF Jobs list unavailable: {exc})"}
        return result.model_copy(update={"sources": sources})
    others = [f for f in result.flavors if f.backend != "hf_jobs"]
    sources = {**result.sources, "hf_jobs": "live: HF Jobs hardware list (GET /api/jobs/hardware)"}
    return FlavorList(flavors=live_flavors + others, sources=sources, as_of=result.as_of)


class LiveUnavailable(Exception):
    """The provider's live list could not be read; the message says why (never a secret)."""


def fetch_hf_jobs_flavors(*, timeout_s: float = 10.0, endpoint: str | None = None) -> list[Flavor]:
    """HF Jobs flavors from `HfApi().list_jobs_hardware()` (uses HF_TOKEN when set).

    Raises:
        LiveUnavailable: offline, unreachable, slower than `timeout_s`, or an answer we cannot read.
    """
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise LiveUnavailable("HF_HUB_OFFLINE=1")
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = HfApi(endpoint=endpoint).list_jobs_hardware()
        except Exception as exc:  # noqa: BLE001 - any failure means "use the catalogue"; reported by type
            box["error"] = exc

    worker = threading.Thread(target=call, name="carl-hf-hardware", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise LiveUnavailable(f"no answer within {timeout_s:g} s")
    if "error" in box:
        raise LiveUnavailable(type(box["error"]).__name__)
    try:
        flavors = [_hf_flavor(hw) for hw in box["value"]]
    except (AttributeError, TypeError, ValueError) as exc:
        raise LiveUnavailable(f"unreadable hardware list ({type(exc).__name__})") from None
    if not flavors:
        raise LiveUnavailable("empty hardware list")
    return flavors


_PER_HOUR = {"second": 3600.0, "minute": 60.0, "hour": 1.0}


def _hf_flavor(hw: Any) -> Flavor:
    """One `JobHardwareInfo` as a Flavor. The API states the machine's total VRAM ("96 GB")."""
    acc = hw.accelerator
    count = int(acc.quantity) if acc is not None else 0
    total = _gb(acc.vram) if acc is not None else None
    per_hour = hw.unit_cost_usd * _PER_HOUR[hw.unit_label] if hw.unit_label in _PER_HOUR else None
    return Flavor(
        backend="hf_jobs",
        name=hw.name,
        gpu=acc.model if acc is not None else None,
        gpu_count=count,
        vram_gb_per_gpu=None if total is None or count == 0 else total / count,
        price_per_hour_usd=None if per_hour is None else round(per_hour, 4),
    )


def _gb(text: str) -> float:
    number, _, unit = str(text).strip().partition(" ")
    value = float(number)
    return value * 1024 if unit.upper().startswith("T") else value


# ---- VRAM estimate ------------------------------------------------------------------------


def lora_parameters(spec: ModelSpec, rank: int) -> int:
    """Adapter parameters for rank `rank` on q, k, v, o and the three MLP projections:
    L · r · Σ(in + out)."""
    h, inter = spec.hidden_size, spec.intermediate_size
    q = spec.num_attention_heads * spec.head_dim
    kv = spec.num_key_value_heads * spec.head_dim
    per_layer = (h + q) + 2 * (h + kv) + (q + h) + 3 * (h + inter)
    return spec.num_layers * rank * per_layer


def estimate_vram(
    spec: ModelSpec,
    *,
    method: str = "grpo",
    lora: bool = False,
    quantization: str = "none",
    seq_len: int = 1024,
    batch: int = 8,
    lora_rank: int = 16,
    gradient_checkpointing: bool = True,
    reference_model: bool | None = None,
    margin: float = DEFAULT_MARGIN,
) -> VramEstimate:
    """GPU memory a training run needs (formula in the module docstring).

    Args:
        spec: the model (from `ModelSpec.from_pretrained`).
        method: sft, grpo, dpo, kto or orpo.
        lora: train a LoRA adapter instead of every weight.
        quantization: "none", "8bit" or "4bit" base weights (LoRA only).
        seq_len: prompt + completion tokens.
        batch: sequences per device step (GRPO: completions generated at once).
        lora_rank: the adapter rank r.
        gradient_checkpointing: recompute activations in the backward pass (TRL's default).
        reference_model: keep a frozen reference copy; None means the method's default
            (dpo and kto with full fine-tuning).
        margin: safety margin as a fraction.

    Returns:
        The estimate with its parts.

    Raises:
        InvalidSpecError: an unknown method or quantization, quantized full fine-tuning,
            or a non-positive size.
    """
    _check_estimate_args(method, lora, quantization, seq_len, batch, lora_rank, margin)
    p, h, layers = spec.num_parameters, spec.hidden_size, spec.num_layers
    parts: dict[str, float] = {}
    if lora:
        embeddings = spec.vocab_size * h * (1 if spec.tie_word_embeddings else 2)
        adapter = lora_parameters(spec, lora_rank)
        parts["weights"] = (p - embeddings) * BASE_BYTES_PER_PARAM[quantization] + embeddings * 2
        parts["weights"] += adapter * ADAPTER_BYTES_PER_PARAM["weights"]
        parts["gradients"] = adapter * ADAPTER_BYTES_PER_PARAM["gradients"]
        parts["optimizer"] = adapter * ADAPTER_BYTES_PER_PARAM["optimizer"]
        trainable = adapter
    else:
        for name, nbytes in FULL_BYTES_PER_PARAM.items():
            parts[name] = p * nbytes
        trainable = p
    wants_reference = (method in REFERENCE_METHODS) if reference_model is None else reference_model
    parts["reference"] = p * 2 if wants_reference and not lora else 0.0

    tokens = batch * seq_len * (2 if method in PAIRED_METHODS else 1)
    if gradient_checkpointing:
        per_token = layers * CHECKPOINT_BYTES_PER_TOKEN_HIDDEN + ACTIVATION_BYTES_PER_TOKEN_HIDDEN
    else:
        per_token = layers * ACTIVATION_BYTES_PER_TOKEN_HIDDEN
    parts["activations"] = tokens * h * per_token
    parts["logits"] = tokens * spec.vocab_size * LOGIT_BYTES
    kv_width = spec.num_key_value_heads * spec.head_dim
    parts["kv_cache"] = 2 * layers * batch * seq_len * kv_width * 2 if method == "grpo" else 0.0
    parts = {k: v / GB for k, v in parts.items()}
    parts["cuda_context"] = CUDA_CONTEXT_GB

    static = parts["weights"] + parts["gradients"] + parts["optimizer"] + parts["reference"]
    transient = max(parts["activations"] + parts["logits"], parts["kv_cache"])
    needed = (static + transient + CUDA_CONTEXT_GB) * (1 + margin)
    return VramEstimate(
        method=method, lora=lora, quantization=quantization, seq_len=seq_len, batch=batch,
        trainable_parameters=trainable, breakdown_gb={k: round(v, 3) for k, v in parts.items()},
        static_gb=round(static, 3), transient_gb=round(transient, 3), margin=margin, needed_gb=round(needed, 3),
    )


def _check_estimate_args(method, lora, quantization, seq_len, batch, lora_rank, margin) -> None:
    if method not in METHODS:
        raise InvalidSpecError("method", f"must be one of {', '.join(METHODS)}", got=method)
    if quantization not in QUANTIZATIONS:
        raise InvalidSpecError("quantization", f"must be one of {', '.join(QUANTIZATIONS)}", got=quantization)
    if quantization != "none" and not lora:
        raise InvalidSpecError("quantization", "quantized weights train only through a LoRA adapter; set lora",
                               got=quantization)
    for field, value in (("seq_len", seq_len), ("batch", batch), ("lora_rank", lora_rank)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidSpecError(field, "must be a positive integer", got=value)
    if not 0 <= margin <= 1:
        raise InvalidSpecError("margin", "must be between 0 and 1", got=margin)


def fit_flavor(estimate: VramEstimate, flavor: Flavor) -> FlavorFit:
    """Whether `estimate` fits `flavor` (per GPU, and with the static part sharded)."""
    per_gpu = flavor.vram_gb_per_gpu
    if not flavor.gpu_count or per_gpu is None:
        return FlavorFit(flavor=flavor, needed_gb=estimate.needed_gb, fits=None, fits_sharded=None, headroom_gb=None)
    sharded = (estimate.static_gb / flavor.gpu_count + estimate.transient_gb + CUDA_CONTEXT_GB) * (1 + estimate.margin)
    return FlavorFit(
        flavor=flavor,
        needed_gb=estimate.needed_gb,
        fits=estimate.needed_gb <= per_gpu,
        fits_sharded=sharded <= per_gpu,
        headroom_gb=round(per_gpu - estimate.needed_gb, 3),
    )


def fits(
    spec: ModelSpec,
    *,
    method: str = "grpo",
    lora: bool = False,
    quantization: str = "none",
    seq_len: int = 1024,
    batch: int = 8,
    flavors: list[Flavor] | None = None,
    **options: Any,
) -> list[FlavorFit]:
    """The fit of one run on each flavor (the catalogue's when `flavors` is None).

    Args:
        spec, method, lora, quantization, seq_len, batch: as `estimate_vram`.
        flavors: the flavors to check; None for the shipped catalogue.
        **options: further `estimate_vram` keywords (lora_rank, gradient_checkpointing, ...).

    Returns:
        One FlavorFit per flavor, in the given order.

    Raises:
        InvalidSpecError: as `estimate_vram`.
    """
    estimate = estimate_vram(spec, method=method, lora=lora, quantization=quantization, seq_len=seq_len,
                             batch=batch, **options)
    return [fit_flavor(estimate, f) for f in (catalogue().flavors if flavors is None else flavors)]
