"""TrainSpec -> the TRL config object of its method (GRPOConfig, SFTConfig, ...).

One table names each method's config and trainer class by dotted path (imported on use),
and one function builds every config: the spec's top-level fields, CPU-friendly settings
when there is no GPU, then the `trl:` pass-through on top. TRL's own `__post_init__`
checks run when the object is built, so a bad `trl:` value fails here, before training.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from dataclasses import dataclass
from typing import Any

from carl_engine.errors import InvalidSpecError
from carl_engine.training.spec import TrainSpec


@dataclass(frozen=True)
class MethodClasses:
    """Where a method's TRL classes live ("module:Class")."""

    config: str
    trainer: str


METHOD_CLASSES: dict[str, MethodClasses] = {
    "sft": MethodClasses("trl:SFTConfig", "trl:SFTTrainer"),
    "grpo": MethodClasses("trl:GRPOConfig", "carl_engine.training.grpo:CarlGRPOTrainer"),
    "dpo": MethodClasses("trl:DPOConfig", "trl:DPOTrainer"),
    "kto": MethodClasses("trl:KTOConfig", "trl:KTOTrainer"),
    # ORPO moved to trl.experimental in TRL 1.x.
    "orpo": MethodClasses("trl.experimental.orpo:ORPOConfig", "trl.experimental.orpo:ORPOTrainer"),
}


def load_class(dotted: str) -> type:
    """Import "module:Class"."""
    module_name, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module_name), name)


def config_class(method: str) -> type:
    """The TRL config dataclass of a method.

    Raises:
        InvalidSpecError: unknown method.
    """
    if method not in METHOD_CLASSES:
        raise InvalidSpecError("method", f"must be one of {', '.join(METHOD_CLASSES)}", got=method)
    return load_class(METHOD_CLASSES[method].config)


def trainer_class(method: str) -> type:
    """The trainer class of a method (GRPO: our CarlGRPOTrainer subclass)."""
    if method not in METHOD_CLASSES:
        raise InvalidSpecError("method", f"must be one of {', '.join(METHOD_CLASSES)}", got=method)
    return load_class(METHOD_CLASSES[method].trainer)


def check_trl_fields(spec: TrainSpec) -> None:
    """Every `trl:` key must be a field of the method's TRL config class.

    Raises:
        InvalidSpecError: naming the first unknown field (with close matches).
    """
    cls = config_class(spec.method)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in spec.trl:
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else None
            raise InvalidSpecError(f"trl.{key}", f"is not a field of {cls.__name__}", hint=hint)


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def build_trl_config(spec: TrainSpec, output_dir: str) -> Any:
    """The method's TRL config for this spec, writing checkpoints under `output_dir`.

    Args:
        spec: the run.
        output_dir: where TRL writes checkpoint-N folders (the run dir's checkpoints/).

    Returns:
        An instance of the method's config class.

    Raises:
        InvalidSpecError: an unknown `trl:` field, or TRL rejecting a value ("trl" names it).
    """
    check_trl_fields(spec)
    cls = config_class(spec.method)
    kwargs: dict[str, Any] = {
        "output_dir": output_dir,
        "max_steps": spec.max_steps,
        "per_device_train_batch_size": spec.batch_size,
        "seed": spec.seed,
        "data_seed": spec.seed,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "steps",
        "save_steps": spec.save_steps or spec.max_steps,
        "activation_checkpointing": False,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    learning_rate = spec.effective_learning_rate()
    if learning_rate is not None:
        kwargs["learning_rate"] = learning_rate
    if not on_gpu():
        kwargs.update(use_cpu=True, bf16=False, fp16=False)
    if spec.method == "grpo":
        kwargs.update(
            num_generations=spec.num_generations,
            max_completion_length=spec.max_completion_length,
            temperature=spec.temperature,
            log_completions=False,
        )
    kwargs.update(spec.trl)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise InvalidSpecError("trl", f"{cls.__name__} rejected the settings: {exc}") from None
