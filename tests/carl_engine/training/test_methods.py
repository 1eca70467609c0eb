"""Every method trains a few steps on carl-tiny on CPU; bad input fails before training starts."""

from __future__ import annotations

import json

import pytest

from carl_engine.errors import InvalidSpecError
from carl_engine.runs import RunDir
from carl_engine.training.runner import train
from carl_engine.training.spec import TrainSpec

TINY = {"max_steps": 2, "batch_size": 4, "num_examples": 32}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "dpo", "kto", "orpo"])
def test_each_method_trains_two_steps_and_leaves_a_checkpoint(method, tmp_path):
    run_dir = RunDir(tmp_path / "run")
    result = train(TrainSpec(method=method, **TINY), run_dir)
    assert (result.status, result.step) == ("succeeded", 2)
    assert result.checkpoint == str(run_dir.checkpoints_dir / "checkpoint-2")
    assert "loss" in result.metrics
    assert [e["step"] for e in run_dir.iter_events("metrics")][:2] == [1, 2]


@pytest.mark.slow
def test_a_lora_run_trains_an_adapter_on_the_detected_target_modules(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    result = train(TrainSpec(method="sft", lora={"r": 4}, **TINY), run_dir)
    assert result.status == "succeeded"
    adapter = json.loads((run_dir.latest_checkpoint() / "adapter_config.json").read_text())
    assert {"q_proj", "v_proj"} <= set(adapter["target_modules"])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "/nowhere/model"}, "model"),
        ({"trl": {"warmup_ratioo": 0.1}}, "trl.warmup_ratioo"),
        ({"method": "sft", "lora": {"target_modules": ["c_attn"]}}, "lora.target_modules"),
        ({"method": "dpo", "dataset": "ROWS"}, "dataset"),
        ({"resume_from": "/nowhere/checkpoint-2"}, "resume_from"),
    ],
)
def test_bad_input_fails_before_training_starts_and_writes_no_checkpoint(fields, field, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "1+1=", "completion": "2"}) + "\n")
    fields = {k: (str(rows) if v == "ROWS" else v) for k, v in fields.items()}
    run_dir = RunDir(tmp_path / "run")
    with pytest.raises(InvalidSpecError) as caught:
        train(TrainSpec(**{**TINY, **fields}), run_dir)
    assert caught.value.field == field
    assert run_dir.checkpoints() == []
    assert run_dir.iter_events("metrics") == []


def test_an_unknown_method_is_refused_when_the_spec_is_built():
    with pytest.raises(InvalidSpecError) as caught:
        TrainSpec(method="ppo")
    assert caught.value.field == "method"
