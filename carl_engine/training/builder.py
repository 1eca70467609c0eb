"""TrainSpec -> a ready TRL trainer. One builder for all five methods.

Order matters: everything that can be wrong with the input (method, model path, `trl:`
fields, dataset columns, LoRA targets, rewards) is checked before the model's weights are
loaded, and all of it before `train()` starts, so bad input fails in seconds.

Per method the builder differs only in data (the form the method reads, from
`spec.form`) and, for GRPO, the reward functions and the cascade gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carl_engine.errors import InvalidSpecError
from carl_engine.rewards.cascade import CascadeGate
from carl_engine.runs import RunDir
from carl_engine.training.spec import TrainSpec


@dataclass
class RewardPlan:
    """The GRPO reward functions in order, their weights, and which one the gate watches."""

    functions: list[Any]
    weights: list[float]
    task_reward: str | None


def plan_rewards(spec: TrainSpec) -> RewardPlan:
    """Build the reward functions named in `spec.rewards` (GRPO only).

    Raises:
        InvalidSpecError: the same reward named twice (e.g. "task" and "arithmetic").
    """
    from carl_engine.coherence import CARLWeights
    from carl_engine.rewards.carl import CarlReward
    from carl_engine.rewards.diversity import DiversityReward
    from carl_engine.rewards.task import TaskReward

    functions, weights, seen = [], [], set()
    task_reward = None
    for name, weight in spec.effective_rewards().items():
        if name == "carl":
            fn: Any = CarlReward(CARLWeights(**spec.carl.weights()))
        elif name == "diversity":
            fn = DiversityReward()
        else:  # "task" or a task's own name
            fn = TaskReward(spec.task_name() if name == "task" else name)
            task_reward = task_reward or fn.__name__
        if fn.__name__ in seen:
            raise InvalidSpecError(f"rewards.{name}", f"names the reward {fn.__name__!r} a second time")
        seen.add(fn.__name__)
        functions.append(fn)
        weights.append(float(weight))
    return RewardPlan(functions, weights, task_reward)


def build_trainer(
    spec: TrainSpec, run_dir: RunDir, *, callbacks: list[Any] | None = None, trainer_options: dict[str, Any] | None = None
) -> Any:
    """Check the spec, load model, tokenizer and data, and construct the method's trainer.

    Args:
        spec: the run.
        run_dir: checkpoints go to `run_dir/checkpoints/checkpoint-N`.
        callbacks: TrainerCallbacks to attach (events, logging).
        trainer_options: extra keyword arguments for the trainer class (e.g. GRPO's `capture`).

    Returns:
        The trainer (a `CarlGRPOTrainer` for grpo; its `gate` attribute is the cascade gate).

    Raises:
        InvalidSpecError: any bad input, before training starts.
    """
    from carl_engine.models import resolve_model
    from carl_engine.training.config import build_trl_config, on_gpu, trainer_class
    from carl_engine.training.data import load_training_dataset

    _quiet_loading()
    model_path = resolve_model(spec.model, field="model")
    trl_config = build_trl_config(spec, str(run_dir.checkpoints_dir))
    data = load_training_dataset(spec)
    plan = plan_rewards(spec) if spec.method == "grpo" else None
    if plan is not None:
        trl_config.reward_weights = plan.weights

    model, tokenizer = _load(model_path, on_gpu())
    peft = _peft(spec, model_path, model)
    kwargs: dict[str, Any] = {
        "model": model,
        "args": trl_config,
        "train_dataset": data,
        "processing_class": tokenizer,
        "callbacks": list(callbacks or []),
        "peft_config": peft,
    }
    if plan is not None:
        kwargs["reward_funcs"] = plan.functions
        kwargs["task_reward"] = plan.task_reward
        uses_carl = any(getattr(f, "__name__", "") == "carl" for f in plan.functions)
        kwargs["gate"] = CascadeGate.from_spec(spec.cascade) if uses_carl else None
    trainer = trainer_class(spec.method)(**kwargs, **(trainer_options or {}))
    _quiet(trainer)
    return trainer


def _quiet(trainer: Any) -> None:
    """Our events callback prints one line a step; drop transformers' dict printer and progress bars."""
    from transformers import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def _quiet_loading() -> None:
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils.logging import disable_progress_bar as disable_hf_progress_bar

    disable_progress_bar()
    disable_hf_progress_bar()


def _load(model_path: str, gpu: bool) -> tuple[Any, Any]:
    from carl_engine.models import load_model_and_tokenizer

    # On CPU, train in float32 (bf16 matmuls are slow or missing there); on GPU keep the saved dtype.
    return load_model_and_tokenizer(model_path, torch_dtype=None if gpu else "float32")


def _peft(spec: TrainSpec, model_path: str, model: Any) -> Any:
    if spec.lora is None:
        return None
    from carl_engine.training.lora import linear_module_names, peft_config, resolve_targets

    targets = resolve_targets(spec.lora, model_path, linear_module_names(model))
    return peft_config(spec.lora, targets)
