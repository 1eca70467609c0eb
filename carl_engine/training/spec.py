"""TrainSpec: the one description of a training run.

Every field carries its description (the MCP schema an agent reads is generated from it).
`TrainSpec()` alone is a valid run: carl-tiny, GRPO on the built-in arithmetic task with the
task verifier and the CARL reward behind the auto cascade gate, a few dozen CPU steps.

Two levels of checking:
- construction (`TrainSpec(...)`, `TrainSpec.parse(dict)`, `TrainSpec.from_file(path)`):
  bounds, names and the rules between fields; no heavy imports, no file system;
- `spec.check()`: what needs the model's config, TRL's config class or the data files
  (unknown `trl:` fields, LoRA targets that are not in the model, missing dataset columns).
  Both raise `InvalidSpecError(field, rule)` and are done before any job row is written.

This module imports no torch/transformers/trl at the top: the MCP server imports it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from carl_engine.errors import InvalidSpecError

Method = Literal["sft", "grpo", "dpo", "kto", "orpo"]
METHODS: tuple[str, ...] = ("sft", "grpo", "dpo", "kto", "orpo")

# The dataset form (columns) each method reads; the same names as carl_engine.tasks.COLUMNS.
FORM_OF_METHOD: dict[str, str] = {
    "sft": "prompt_completion",
    "grpo": "prompt_only",
    "dpo": "preference",
    "orpo": "preference",
    "kto": "labelled",
}
COLUMNS_OF_FORM: dict[str, tuple[str, ...]] = {
    "prompt_completion": ("prompt", "completion"),
    "prompt_only": ("prompt",),  # `answer` too when a task verifier scores the completions
    "preference": ("prompt", "chosen", "rejected"),
    "labelled": ("prompt", "completion", "label"),
}
BUILTIN_REWARDS: tuple[str, ...] = ("task", "carl", "diversity")
DATA_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".parquet", ".csv")

# TRL config fields that TrainSpec sets itself: name -> the top-level field to use instead.
OWNED_TRL_FIELDS: dict[str, str] = {
    "output_dir": "(the run directory is chosen by the job system)",
    "max_steps": "max_steps",
    "learning_rate": "learning_rate",
    "per_device_train_batch_size": "batch_size",
    "num_generations": "num_generations",
    "max_completion_length": "max_completion_length",
    "temperature": "temperature",
    "seed": "seed",
    "save_steps": "save_steps",
    "reward_weights": "rewards",
    "resume_from_checkpoint": "resume_from",
}

_STRICT = ConfigDict(extra="forbid", validate_assignment=True)


class CarlSpec(BaseModel):
    """Which CARL composite the `carl` reward computes (see CARL_MATH.md)."""

    model_config = _STRICT

    preset: Literal["paper", "guarded"] = Field(
        "paper",
        description="paper: 0.50 multiscale + 0.30 cloud + 0.20 discontinuity. guarded: 0.40/0.25/0.15 plus "
        "0.20 x the group diversity term, so a mode-collapsed group loses CARL's advantage.",
    )
    multiscale: float | None = Field(None, ge=0, le=100, description="Override the preset's multiscale weight.")
    cloud: float | None = Field(None, ge=0, le=100, description="Override the preset's cloud-quality weight.")
    discontinuity: float | None = Field(None, ge=0, le=100, description="Override the preset's discontinuity weight.")
    diversity: float | None = Field(None, ge=0, le=100, description="Override the preset's diversity weight.")

    def weights(self) -> dict[str, float]:
        """The four weights after applying overrides to the preset."""
        base = {"multiscale": 0.5, "cloud": 0.3, "discontinuity": 0.2, "diversity": 0.0}
        if self.preset == "guarded":
            base = {"multiscale": 0.4, "cloud": 0.25, "discontinuity": 0.15, "diversity": 0.2}
        for name in base:
            value = getattr(self, name)
            if value is not None:
                base[name] = float(value)
        return base

    @model_validator(mode="after")
    def _some_weight_positive(self) -> CarlSpec:
        weights = self.weights()
        if not any(weights[k] > 0 for k in ("multiscale", "cloud", "discontinuity")):
            raise ValueError("at least one of multiscale, cloud, discontinuity must be positive")
        return self


class CascadeSpec(BaseModel):
    """When the CARL reward switches on (the cascade of CARL_MATH.md)."""

    model_config = _STRICT

    gate: Literal["off", "steps", "auto"] = Field(
        "auto",
        description="off: CARL at full weight from step 0. steps: task rewards only until start_step, then CARL "
        "ramps in. auto: opens when the task reward has risen and plateaued (or after max_closed_steps).",
    )
    start_step: int = Field(10, ge=0, le=1_000_000, description="For gate=steps: the step at which CARL starts.")
    warmup_steps: int = Field(10, ge=0, le=1_000_000, description="Steps over which CARL's weight ramps from 0 to full.")
    window: int = Field(10, ge=2, le=10_000, description="For gate=auto: the rolling window W of task-reward steps.")
    max_closed_steps: int = Field(
        200, ge=0, le=1_000_000, description="For gate=auto: open the gate after this many steps regardless."
    )


class LoraSpec(BaseModel):
    """A LoRA adapter (peft) instead of full fine-tuning."""

    model_config = _STRICT

    r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(32, ge=1, le=4096, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.0, ge=0.0, le=0.9, description="LoRA dropout.")
    target_modules: list[str] | None = Field(
        None,
        description="Module names to adapt (e.g. q_proj, v_proj). Default: detected from the model's config.",
    )


class TrainSpec(BaseModel):
    """One training run: what to train, on what, with which rewards, for how long."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    method: Method = Field("grpo", description="Training method: sft, grpo, dpo, kto or orpo.")
    model: str = Field("carl-tiny", description="carl-tiny (offline, built in seconds), a local folder or a Hub name.")
    dataset: str = Field(
        "arithmetic",
        description="A built-in task name (arithmetic), a local .jsonl/.json/.parquet/.csv file, or a Hub dataset name.",
    )
    split: str = Field("train", description="Dataset split to train on (files and Hub datasets).")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description='Map the column names a method needs to the dataset\'s own, e.g. {"prompt": "question", '
        '"answer": "solution"}. sft: prompt, completion; grpo: prompt (+ answer for a task reward); dpo/orpo: '
        "prompt, chosen, rejected; kto: prompt, completion, label.",
    )
    task: str | None = Field(
        None,
        description="Built-in task whose verifier scores GRPO completions against the answer column when dataset "
        "is a file or Hub dataset. Defaults to the dataset when it is a built-in task.",
    )
    num_examples: int = Field(2000, ge=1, le=1_000_000, description="Rows generated when dataset is a built-in task.")
    rewards: dict[str, float] | None = Field(
        None,
        description='GRPO reward functions and their weights: "task" (the task verifier, or the task\'s own name), '
        '"carl" (the CARL coherence composite), "diversity" (group diversity). Default {"task": 1.0, "carl": 1.0}.',
    )
    carl: CarlSpec = Field(default_factory=CarlSpec, description="The CARL composite's preset and weights.")
    cascade: CascadeSpec = Field(default_factory=CascadeSpec, description="When the CARL reward switches on.")
    lora: LoraSpec | None = Field(None, description="Train a LoRA adapter instead of all weights; null = full.")
    max_steps: int = Field(30, ge=1, le=1_000_000, description="Optimizer steps to train for.")
    learning_rate: float | None = Field(
        None, gt=0, le=1, description="Peak learning rate. Default: 5e-4 for carl-tiny, else TRL's default for the method."
    )
    batch_size: int = Field(8, ge=1, le=4096, description="Per-device batch size (GRPO: completions per step).")
    num_generations: int = Field(4, ge=2, le=256, description="GRPO: completions sampled per prompt (the group size).")
    max_completion_length: int = Field(16, ge=1, le=131_072, description="GRPO: longest completion, in tokens.")
    temperature: float = Field(1.0, gt=0, le=10, description="GRPO: sampling temperature.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for data order, sampling and initialization.")
    save_steps: int | None = Field(
        None, ge=1, le=1_000_000, description="Checkpoint every N steps (a final checkpoint is always written)."
    )
    resume_from: str | None = Field(
        None, description="A checkpoint folder (or a run directory: its latest checkpoint) to continue from."
    )
    trl: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra fields of TRL's config class for the method (GRPOConfig, SFTConfig, ...), passed through.",
    )

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise spec_error(exc, type(self)) from None

    # construction -------------------------------------------------------------------
    @classmethod
    def parse(cls, data: dict[str, Any]) -> TrainSpec:
        """Build a spec from a dict (a `kind` key, used by the job runner, is ignored).

        Raises:
            InvalidSpecError: the first field that breaks a rule.
        """
        if not isinstance(data, dict):
            raise InvalidSpecError("spec", "must be a mapping of field names to values", got=type(data).__name__)
        return cls(**{k: v for k, v in data.items() if k != "kind"})

    @classmethod
    def from_file(cls, path: str | Path) -> TrainSpec:
        """Load a spec from YAML (`carl.yaml`) or JSON.

        Raises:
            InvalidSpecError: the file is missing, unreadable, or a field breaks a rule.
        """
        file = Path(path).expanduser()
        if not file.is_file():
            raise InvalidSpecError("spec", "file does not exist", got=str(path))
        text = file.read_text()
        try:
            if file.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text) or {}
        except (json.JSONDecodeError, ValueError) as exc:
            raise InvalidSpecError("spec", f"is not valid {file.suffix.lstrip('.') or 'YAML'}: {exc}") from None
        except Exception as exc:  # yaml.YAMLError is not a ValueError
            raise InvalidSpecError("spec", f"is not valid YAML: {exc}") from None
        return cls.parse(data)

    # derived values -----------------------------------------------------------------
    @property
    def form(self) -> str:
        """The dataset form the method reads (prompt_completion, prompt_only, preference, labelled)."""
        return FORM_OF_METHOD[self.method]

    def effective_rewards(self) -> dict[str, float]:
        """The GRPO rewards after defaults: {"task": 1.0, "carl": 1.0} unless set. Empty for other methods."""
        if self.method != "grpo":
            return {}
        return dict(self.rewards) if self.rewards is not None else {"task": 1.0, "carl": 1.0}

    def task_name(self) -> str | None:
        """The built-in task that verifies completions: `task`, else `dataset` when it is a task name."""
        if self.task:
            return self.task
        return self.dataset if _is_builtin_task(self.dataset) else None

    def effective_learning_rate(self) -> float | None:
        """`learning_rate`, else 5e-4 for carl-tiny, else None (TRL's default for the method)."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-4 if self.model == "carl-tiny" else None

    # rules between fields -------------------------------------------------------------
    @model_validator(mode="after")
    def _rules(self) -> TrainSpec:
        self._check_trl_keys()
        self._check_rewards()
        self._check_dataset_name()
        if self.method == "grpo":
            self._check_grpo_batch()
        return self

    def _check_trl_keys(self) -> None:
        for key in self.trl:
            if key in OWNED_TRL_FIELDS:
                raise _Rule(f"trl.{key}", f"is set by TrainSpec; use the top-level field {OWNED_TRL_FIELDS[key]}")

    def _check_rewards(self) -> None:
        if self.rewards is not None and self.method != "grpo":
            raise _Rule("rewards", f"apply to method grpo only; method is {self.method}")
        rewards = self.effective_rewards()
        if self.method == "grpo" and not rewards:
            raise _Rule("rewards", 'needs at least one reward function, e.g. {"task": 1.0}')
        task = self.task_name()
        for name, weight in rewards.items():
            if not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise _Rule(f"rewards.{name}", f"weight must be a finite number; got {weight!r}")
            if name in BUILTIN_REWARDS[1:]:
                continue
            if name == "task" or name == task or _is_builtin_task(name):
                if task is None and name == "task":
                    raise _Rule(
                        "rewards.task",
                        "needs a task verifier: use a built-in dataset (arithmetic) or set task to a built-in task",
                    )
                continue
            raise _Rule(
                f"rewards.{name}",
                f"unknown reward; use task, carl, diversity or a built-in task name ({', '.join(_task_names())})",
            )
        if rewards and all(w == 0 for w in rewards.values()):
            raise _Rule("rewards", "at least one weight must be non-zero")
        if self.task is not None and not _is_builtin_task(self.task):
            raise _Rule("task", f"unknown built-in task; known tasks: {', '.join(_task_names())}")

    def _check_dataset_name(self) -> None:
        if not self.dataset.strip():
            raise _Rule("dataset", "must be a built-in task name, a local data file or a Hub dataset name")
        suffix = Path(self.dataset).suffix.lower()
        if Path(self.dataset).suffix and suffix not in DATA_SUFFIXES and not _looks_like_hub(self.dataset):
            raise _Rule("dataset", f"local data files must end in one of {', '.join(DATA_SUFFIXES)}")

    def _check_grpo_batch(self) -> None:
        steps_per_generation = self.trl.get("steps_per_generation") or self.trl.get("gradient_accumulation_steps") or 1
        generation_batch = self.trl.get("generation_batch_size") or self.batch_size * int(steps_per_generation)
        if int(generation_batch) % self.num_generations != 0:
            multiple = self.num_generations * max(1, round(self.batch_size / self.num_generations))
            raise _Rule(
                "num_generations",
                f"the generation batch ({generation_batch} = batch_size x steps_per_generation) must be divisible "
                f"by num_generations ({self.num_generations}); set batch_size to a multiple of "
                f"{self.num_generations}, e.g. {multiple}",
            )

    # checks that need the model, TRL or the data ---------------------------------------
    def check(self) -> None:
        """The checks that need the model's config, TRL's config class or the data files.

        Cheap: reads config.json (no weights), builds TRL's config object, reads the
        dataset's column names. Run before any job row is written.

        Raises:
            InvalidSpecError: unknown `trl:` field or bad value, LoRA targets not in the
                model, missing model path, dataset without the needed columns, missing
                resume checkpoint.
        """
        from carl_engine.training.checks import check_spec

        check_spec(self)


class _Rule(ValueError):
    """A cross-field rule broken inside a validator; turned into InvalidSpecError by `spec_error`."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(rule)
        self.field = field
        self.rule = rule


def spec_error(exc: ValidationError, model: type[BaseModel]) -> InvalidSpecError:
    """Turn pydantic's first error into an `InvalidSpecError` naming the field and the rule."""
    err = exc.errors()[0]
    loc = [str(part) for part in err.get("loc", ())]
    field = ".".join(loc) or "spec"
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, _Rule):
        return InvalidSpecError(original.field, original.rule)
    kind = err.get("type", "")
    got = err.get("input")
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        return InvalidSpecError(field, f"must be {_bounds(model, loc)}", got=got)
    if kind == "extra_forbidden":
        return InvalidSpecError(field, f"is not a field of {_owner(model, loc)}", hint=_close_fields(model, loc))
    if kind == "literal_error":
        return InvalidSpecError(field, f"must be one of {err['ctx']['expected']}", got=got)
    message = err.get("msg", "is invalid").removeprefix("Value error, ")
    return InvalidSpecError(field, message[0].lower() + message[1:], got=got if not isinstance(got, dict) else None)


def _field_info(model: type[BaseModel], loc: list[str]):
    """The FieldInfo at a dotted location, walking nested models (None when not found)."""
    current: Any = model
    info = None
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return info
        info = fields[part]
        current = _model_in(info.annotation)
    return info


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside `X | None`, or the annotation itself."""
    for arg in getattr(annotation, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def _bounds(model: type[BaseModel], loc: list[str]) -> str:
    info = _field_info(model, loc)
    lo = hi = None
    lo_open = hi_open = False
    for item in getattr(info, "metadata", []) or []:
        if getattr(item, "ge", None) is not None:
            lo = item.ge
        if getattr(item, "gt", None) is not None:
            lo, lo_open = item.gt, True
        if getattr(item, "le", None) is not None:
            hi = item.le
        if getattr(item, "lt", None) is not None:
            hi, hi_open = item.lt, True
    if lo is not None and hi is not None and not lo_open and not hi_open:
        return f"between {_num(lo)} and {_num(hi)}"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {_num(lo)}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {_num(hi)}")
    return " and ".join(parts) or "within its bounds"


def _num(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _owner(model: type[BaseModel], loc: list[str]) -> str:
    parent = _field_info(model, loc[:-1]) if len(loc) > 1 else None
    owner = _model_in(parent.annotation) if parent is not None else model
    return getattr(owner, "__name__", "the spec")


def _close_fields(model: type[BaseModel], loc: list[str]) -> str | None:
    import difflib

    parent = _field_info(model, loc[:-1]) if len(loc) > 1 else None
    owner = _model_in(parent.annotation) if parent is not None else model
    names = list(getattr(owner, "model_fields", {}))
    close = difflib.get_close_matches(loc[-1], names, n=3) if loc else []
    return f"did you mean {', '.join(close)}?" if close else f"fields: {', '.join(names)}"


def _task_names() -> list[str]:
    from carl_engine.tasks import list_tasks

    return list_tasks()


def _is_builtin_task(name: str) -> bool:
    from carl_engine.tasks import is_task

    return is_task(name)


def _looks_like_hub(name: str) -> bool:
    return "/" in name and not name.startswith(("/", ".", "~")) and name.count("/") == 1
