"""The training dataset of a spec: a built-in task, a local file or a Hub dataset, renamed
to the columns the method reads.

    built-in task   carl_engine.tasks.get_task(name).dataset(form, n=num_examples, seed=seed)
    local file      .jsonl/.json/.parquet/.csv through `datasets.load_dataset(<format>, data_files=...)`
    Hub dataset     `datasets.load_dataset(name, split=split)`, only when the Hub is reachable
                    (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE unset)

`columns` maps the method's column names to the dataset's own; every needed column must
exist after the mapping, else an InvalidSpecError lists what is there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from carl_engine.errors import InvalidSpecError
from carl_engine.training.spec import COLUMNS_OF_FORM, DATA_SUFFIXES, TrainSpec

if TYPE_CHECKING:
    from datasets import Dataset

_FORMAT_OF_SUFFIX = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def needed_columns(spec: TrainSpec) -> tuple[str, ...]:
    """The columns the spec's method reads (GRPO with a task reward also needs `answer`)."""
    needed = COLUMNS_OF_FORM[spec.form]
    if spec.method == "grpo" and _uses_task_reward(spec):
        needed = (*needed, "answer")
    return needed


def _uses_task_reward(spec: TrainSpec) -> bool:
    task = spec.task_name()
    return any(name == "task" or name == task for name in spec.effective_rewards())


def dataset_source(spec: TrainSpec) -> str:
    """"task", "file" or "hub": where the spec's dataset comes from.

    Raises:
        InvalidSpecError: a path that looks local but does not exist.
    """
    from carl_engine.tasks import is_task

    if is_task(spec.dataset):
        return "task"
    path = Path(spec.dataset).expanduser()
    if path.suffix.lower() in DATA_SUFFIXES or spec.dataset.startswith(("/", ".", "~")):
        if not path.is_file():
            raise InvalidSpecError("dataset", "local data file does not exist", got=spec.dataset)
        return "file"
    return "hub"


def hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in {"1", "true", "yes"} for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def load_raw(spec: TrainSpec) -> Dataset:
    """The dataset as stored (before column mapping).

    Raises:
        InvalidSpecError: missing file, unreadable file, unknown split, or a Hub dataset while offline.
    """
    source = dataset_source(spec)
    if source == "task":
        from carl_engine.tasks import get_task

        return get_task(spec.dataset, field="dataset").dataset(spec.form, n=spec.num_examples, seed=spec.seed)
    from datasets import load_dataset

    if source == "file":
        path = Path(spec.dataset).expanduser()
        fmt = _FORMAT_OF_SUFFIX[path.suffix.lower()]
        try:
            return load_dataset(fmt, data_files={"train": str(path)}, split="train")
        except Exception as exc:  # datasets raises many kinds for a malformed file
            raise InvalidSpecError("dataset", f"could not read {fmt} file: {exc}", got=spec.dataset) from None
    if hub_offline():
        raise InvalidSpecError(
            "dataset",
            "is a Hub dataset name but the Hub is offline (HF_HUB_OFFLINE is set)",
            got=spec.dataset,
            hint="use a built-in task or a local file",
        )
    try:
        return load_dataset(spec.dataset, split=spec.split)
    except ValueError as exc:
        raise InvalidSpecError("split", f"not available: {exc}", got=spec.split) from None
    except Exception as exc:  # not found, no access, network
        raise InvalidSpecError("dataset", f"could not load Hub dataset: {exc}", got=spec.dataset) from None


def map_columns(spec: TrainSpec, data: Dataset) -> Dataset:
    """Rename columns per `spec.columns`, keep only the needed ones, and check they exist.

    Raises:
        InvalidSpecError: a mapped source column is missing, or a needed column is absent.
    """
    present = set(data.column_names)
    renames = {}
    for ours, theirs in spec.columns.items():
        if theirs not in present:
            raise InvalidSpecError(
                f"columns.{ours}", f"the dataset has no column {theirs!r}; it has {', '.join(sorted(present))}"
            )
        if ours != theirs:
            renames[theirs] = ours
    if renames:
        data = data.select_columns(list(present)).rename_columns(renames)
    needed = needed_columns(spec)
    missing = [c for c in needed if c not in data.column_names]
    if missing:
        raise InvalidSpecError(
            "dataset",
            f"method {spec.method} needs columns {', '.join(needed)}; missing {', '.join(missing)} "
            f"(the dataset has {', '.join(sorted(data.column_names))})",
            hint='map them with columns, e.g. {"' + missing[0] + '": "<your column>"}',
        )
    return data.select_columns(list(needed))


def load_training_dataset(spec: TrainSpec) -> Dataset:
    """The dataset the trainer reads: loaded, mapped to the method's columns, checked.

    Raises:
        InvalidSpecError: see `load_raw` and `map_columns`; also an empty dataset.
    """
    data = map_columns(spec, load_raw(spec))
    if len(data) == 0:
        raise InvalidSpecError("dataset", "has no rows", got=spec.dataset)
    return data
