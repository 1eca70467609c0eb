"""LoRA through peft: target modules from the model's config, checked against the model.

The default targets come from `ModelSpec.lora_target_modules` (read from config.json, no
per-model branches). Explicit targets must name modules that exist in the model; that is
checked on a weightless copy (the meta device), so it costs no memory and runs before
any training starts.
"""

from __future__ import annotations

from typing import Any

from carl_engine.errors import InvalidSpecError
from carl_engine.training.spec import LoraSpec


def linear_module_names(model: Any) -> set[str]:
    """The last name component of every Linear (or Conv1D) leaf module of a model."""
    import torch

    names = set()
    for full_name, module in model.named_modules():
        if not full_name or any(True for _ in module.children()):
            continue
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
            names.add(full_name.rsplit(".", 1)[-1])
    return names


def model_module_names(model_path: str) -> set[str]:
    """Linear module names of the model at `model_path`, built on the meta device (no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return linear_module_names(model)


def default_targets(model_path: str) -> list[str]:
    """The suggested LoRA targets of a model, from its config (ModelSpec)."""
    from carl_engine.models import ModelSpec

    return list(ModelSpec.from_pretrained(model_path).lora_target_modules)


def resolve_targets(lora: LoraSpec, model_path: str, available: set[str] | None = None) -> list[str]:
    """The target modules to adapt: explicit ones (checked) or the detected defaults.

    Args:
        lora: the spec's LoRA settings.
        model_path: a resolved local model folder or Hub name.
        available: the model's linear module names, if already known.

    Returns:
        A non-empty list of module names.

    Raises:
        InvalidSpecError: a target that is not a linear module of the model, or no target found.
    """
    available = available if available is not None else model_module_names(model_path)
    targets = list(lora.target_modules) if lora.target_modules else default_targets(model_path)
    field = "lora.target_modules"
    if not targets:
        raise InvalidSpecError(field, "none detected for this model; name them explicitly", got=model_path)
    missing = [t for t in targets if t not in available]
    if missing:
        raise InvalidSpecError(
            field,
            f"not in the model: {', '.join(missing)}; its linear layers are {', '.join(sorted(available))}",
            got=targets,
        )
    return targets


def peft_config(lora: LoraSpec, targets: list[str]) -> Any:
    """A peft LoraConfig for a causal LM."""
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
