"""`TrainSpec.check()`: the checks that need the model's config, TRL or the data.

Each check raises InvalidSpecError naming the field. Nothing here loads weights: the model
is read from config.json (a meta-device copy for LoRA targets), the dataset's columns from
the file or the task, and TRL's config object is built (its own rules run then).
"""

from __future__ import annotations

from pathlib import Path

from carl_engine.errors import InvalidSpecError
from carl_engine.training.spec import TrainSpec


def check_spec(spec: TrainSpec) -> None:
    """Run every check that needs more than the spec itself.

    Raises:
        InvalidSpecError: the first problem found (model, trl, lora, dataset, resume_from).
    """
    from carl_engine.models import resolve_model
    from carl_engine.training.config import build_trl_config

    model_path = resolve_model(spec.model, field="model")
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        build_trl_config(spec, scratch)
    if spec.lora is not None:
        from carl_engine.training.lora import resolve_targets

        resolve_targets(spec.lora, model_path)
    check_dataset(spec)
    if spec.resume_from:
        resume_checkpoint(spec.resume_from)


def check_dataset(spec: TrainSpec) -> None:
    """Built-in tasks and local files are read and their columns checked; a Hub dataset is
    checked only when online (loading it is the check).

    Raises:
        InvalidSpecError: missing file, missing columns, offline Hub dataset.
    """
    from carl_engine.training.data import dataset_source, load_training_dataset

    source = dataset_source(spec)
    if source == "task" and spec.num_examples > 10_000:
        probe = spec.model_copy(update={"num_examples": 16})
        load_training_dataset(probe)
        return
    load_training_dataset(spec)


def resume_checkpoint(resume_from: str) -> Path:
    """The checkpoint folder to resume from: the folder itself, or a run directory's latest.

    Raises:
        InvalidSpecError: nothing there, or no complete checkpoint (trainer_state.json) in it.
    """
    from carl_engine.runs import RunDir

    path = Path(resume_from).expanduser()
    if (path / "trainer_state.json").is_file():
        return path
    if path.is_dir():
        latest = RunDir(path).latest_checkpoint()
        if latest is not None:
            return latest
        raise InvalidSpecError(
            "resume_from", "has no complete checkpoint (a checkpoint-N folder with trainer_state.json)", got=resume_from
        )
    raise InvalidSpecError("resume_from", "checkpoint folder does not exist", got=resume_from)
