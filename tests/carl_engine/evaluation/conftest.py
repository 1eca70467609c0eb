"""A fake finished job whose checkpoint is carl-tiny (untrained): enough to exercise the eval."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from carl_engine.runs import RunDir, RunResult


def make_job(job_id: str, *, step: int = 3) -> RunDir:
    """A run directory under $CARL_HOME/runs/<job_id> with checkpoints/checkpoint-<step> = carl-tiny."""
    from carl_engine.models import ensure_carl_tiny

    run = RunDir.for_job(job_id).create()
    run.write_spec({"kind": "train", "model": "carl-tiny"})
    ckpt = run.checkpoints_dir / f"checkpoint-{step}"
    shutil.copytree(ensure_carl_tiny(), ckpt)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    run.write_result(RunResult(status="succeeded", step=step, checkpoint=str(ckpt)))
    return run


@pytest.fixture
def finished_job() -> RunDir:
    return make_job("job-ckpt")


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def listing():
    """Every path under a folder, to show that a refused call wrote nothing."""
    return _listing
