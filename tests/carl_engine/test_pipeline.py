import sys

import pytest

from carl_engine.errors import InvalidSpecError
from carl_engine.pipeline import PipelineSpec, plan


def test_the_default_plan_is_sft_gate_grpo_eval_and_no_push():
    lines = plan()
    assert [line.split(":")[0] for line in lines] == ["1. sft", "2. sft_gate", "3. grpo", "4. eval", "5. push"]
    assert "carl-tiny" in lines[0] and "arithmetic" in lines[0]
    assert "cascade" in lines[2]
    assert lines[4] == "5. push: skipped (no push_to or push_local_dir given)"


def test_a_push_target_appears_in_the_plan():
    lines = PipelineSpec(push_to="me/carl-tiny-arith", sft_steps=0).plan()
    assert lines[0] == "1. sft: skipped (sft_steps = 0)"
    assert "the Hub repo me/carl-tiny-arith" in lines[4]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"sft_steps": -1}, "sft_steps"),
        ({"push_to": "not a repo"}, "push_to"),
        ({"grpo_batch_size": 6, "num_generations": 4}, "grpo_batch_size"),
        ({"sft_steps": 0, "grpo_steps": 0}, "grpo_steps"),
        ({"final_gate": {"min_accuracy": 2}}, "final_gate.min_accuracy"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_specs_name_the_field(data, field):
    with pytest.raises(InvalidSpecError) as err:
        PipelineSpec.from_dict(data)
    assert err.value.field == field


def test_the_spec_module_loads_without_torch():
    import subprocess

    code = "import sys, carl_engine.pipeline, carl_engine.evaluation; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
