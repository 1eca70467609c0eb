"""TrainSpec: defaults make a valid run; bad fields fail with the field and the rule."""

from __future__ import annotations

import json

import pytest

from carl_engine.errors import InvalidSpecError
from carl_engine.training.spec import TrainSpec


def test_the_default_spec_is_a_grpo_run_on_arithmetic_with_task_and_carl_rewards():
    spec = TrainSpec()
    assert (spec.method, spec.model, spec.dataset) == ("grpo", "carl-tiny", "arithmetic")
    assert spec.effective_rewards() == {"task": 1.0, "carl": 1.0}
    assert spec.task_name() == "arithmetic"
    assert spec.effective_learning_rate() == 5e-4


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"max_steps": -1}, "max_steps", "must be between 1 and 1,000,000; got -1"),
        ({"method": "ppo"}, "method", "must be one of"),
        ({"epochs": 3}, "epochs", "is not a field of TrainSpec"),
        ({"lora": {"r": 0}}, "lora.r", "between 1 and 1,024"),
        ({"num_generations": 3}, "num_generations", "set batch_size to a multiple of 3"),
        ({"rewards": {"bogus": 1.0}}, "rewards.bogus", "unknown reward"),
        ({"method": "sft", "rewards": {"task": 1.0}}, "rewards", "grpo only"),
        ({"trl": {"max_steps": 3}}, "trl.max_steps", "top-level field max_steps"),
        ({"temperature": 0}, "temperature", "> 0"),
        ({"dataset": "data.jsonl"}, "rewards.task", "needs a task verifier"),
        ({"cascade": {"gate": "never"}}, "cascade.gate", "must be one of"),
        ({"carl": {"multiscale": 0, "cloud": 0, "discontinuity": 0}}, "carl", "must be positive"),
    ],
)
def test_a_bad_field_raises_an_error_naming_the_field_and_the_rule(fields, field, words):
    with pytest.raises(InvalidSpecError) as caught:
        TrainSpec(**fields)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_a_spec_loads_from_yaml_and_from_json(tmp_path):
    (tmp_path / "carl.yaml").write_text("method: sft\nmax_steps: 3\nlora:\n  r: 4\n")
    (tmp_path / "spec.json").write_text(json.dumps({"kind": "train", "method": "dpo", "seed": 7}))
    from_yaml = TrainSpec.from_file(tmp_path / "carl.yaml")
    from_json = TrainSpec.from_file(tmp_path / "spec.json")
    assert (from_yaml.method, from_yaml.max_steps, from_yaml.lora.r) == ("sft", 3, 4)
    assert (from_json.method, from_json.seed) == ("dpo", 7)


def test_a_missing_or_broken_spec_file_is_an_invalid_spec(tmp_path):
    with pytest.raises(InvalidSpecError, match="does not exist"):
        TrainSpec.from_file(tmp_path / "nope.yaml")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidSpecError, match="not valid json"):
        TrainSpec.from_file(tmp_path / "bad.json")


def test_every_field_has_a_description_for_the_mcp_schema():
    schema = TrainSpec.model_json_schema()
    assert all(prop.get("description") for prop in schema["properties"].values())


def test_check_rejects_an_unknown_trl_field_naming_it():
    with pytest.raises(InvalidSpecError) as caught:
        TrainSpec(trl={"num_generatoins": 4}).check()
    assert caught.value.field == "trl.num_generatoins"
    assert "GRPOConfig" in str(caught.value)


def test_check_rejects_a_missing_model_path_and_a_missing_data_file(tmp_path):
    with pytest.raises(InvalidSpecError) as caught:
        TrainSpec(model=str(tmp_path / "no-model")).check()
    assert caught.value.field == "model"
    with pytest.raises(InvalidSpecError) as caught:
        TrainSpec(method="sft", dataset=str(tmp_path / "rows.jsonl")).check()
    assert caught.value.field == "dataset"


def test_check_rejects_a_dataset_without_the_needed_columns(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"question": "1+1=", "reply": "2"}) + "\n")
    with pytest.raises(InvalidSpecError, match="needs columns prompt, completion"):
        TrainSpec(method="sft", dataset=str(rows)).check()
    TrainSpec(method="sft", dataset=str(rows), columns={"prompt": "question", "completion": "reply"}).check()


def test_check_rejects_lora_targets_that_are_not_in_the_model():
    with pytest.raises(InvalidSpecError) as caught:
        TrainSpec(method="sft", lora={"target_modules": ["c_attn"]}).check()
    assert caught.value.field == "lora.target_modules"
    assert "q_proj" in str(caught.value)


def test_check_rejects_a_resume_path_without_a_checkpoint(tmp_path):
    with pytest.raises(InvalidSpecError) as caught:
        TrainSpec(resume_from=str(tmp_path)).check()
    assert caught.value.field == "resume_from"


def test_a_hub_dataset_is_refused_while_the_hub_is_offline():
    with pytest.raises(InvalidSpecError) as caught:
        TrainSpec(method="sft", dataset="someone/some-data").check()
    assert caught.value.field == "dataset"
    assert "offline" in str(caught.value)


def test_importing_the_spec_loads_no_torch():
    import subprocess
    import sys

    code = "import sys, carl_engine.training.spec, carl_engine.run; print('torch' in sys.modules, 'trl' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr
