"""Resume: a process that dies after its step-2 checkpoint is continued to step 4, with the
model, optimizer, scheduler, RNG and gate state restored, matching an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from carl_engine.runs import RunDir
from carl_engine.training.runner import train
from carl_engine.training.spec import TrainSpec

SPEC = {
    "max_steps": 4, "save_steps": 2, "batch_size": 8, "num_generations": 4, "max_completion_length": 6,
    "num_examples": 32, "cascade": {"gate": "steps", "start_step": 1, "warmup_steps": 2},
}

DIE_AFTER_STEP_2 = textwrap.dedent(
    """
    import os, sys
    from carl_engine.training.runner import train
    from carl_engine.training.spec import TrainSpec

    def die_after_first_checkpoint(kind, fields):
        if kind == "checkpoint" and fields["step"] == 2:
            os._exit(9)  # the process ends with the checkpoint on disk and nothing more

    train(TrainSpec.parse(__import__("json").loads(sys.argv[1])), sys.argv[2], on_event=die_after_first_checkpoint)
    """
)


@pytest.fixture
def one_thread():
    """The killed run trains in a one-thread subprocess; the in-process runs must use the same
    thread count, or float sums differ and Adam turns that noise into lr-sized weight changes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_run_resumed_from_its_step_2_checkpoint_finishes_at_step_4_like_an_uninterrupted_run(tmp_path):
    first, second, straight = RunDir(tmp_path / "first"), RunDir(tmp_path / "second"), RunDir(tmp_path / "straight")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ended = subprocess.run(
        [sys.executable, "-c", DIE_AFTER_STEP_2, json.dumps(SPEC), str(first.path)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert ended.returncode == 9, ended.stderr[-2000:]
    assert [p.name for p in first.checkpoints()] == ["checkpoint-2"]

    resumed = train(TrainSpec(**SPEC, resume_from=str(first.path)), second)
    assert (resumed.status, resumed.step) == ("succeeded", 4)
    assert resumed.extra["resumed_from"].endswith("checkpoint-2")
    assert [e["step"] for e in second.iter_events("metrics") if "loss" in e["metrics"]] == [3, 4]
    state = json.loads((second.latest_checkpoint() / "trainer_state.json").read_text())
    assert state["global_step"] == 4

    uninterrupted = train(TrainSpec(**SPEC), straight)
    assert uninterrupted.step == 4
    a = load_file(str(second.latest_checkpoint() / "model.safetensors"))
    b = load_file(str(straight.latest_checkpoint() / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert torch.load(second.latest_checkpoint() / "scheduler.pt")["last_epoch"] == 4
