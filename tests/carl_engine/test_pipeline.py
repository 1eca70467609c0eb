import json
import sys
from pathlib import Path

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


def test_pipeline_check_refuses_an_unknown_task_and_a_push_without_token(monkeypatch):
    with pytest.raises(InvalidSpecError) as err:
        PipelineSpec(task="chess").check()
    assert err.value.field == "task"
    from carl_engine.errors import MissingCredentialsError

    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(MissingCredentialsError, match="HF_TOKEN"):
        PipelineSpec(push_to="me/model").check()


@pytest.mark.slow
def test_the_default_pipeline_runs_end_to_end_on_carl_tiny_and_resumes_without_retraining(tmp_path):
    from carl_engine.evaluation import read_report
    from carl_engine.pipeline import run
    from carl_engine.runs import RunDir

    run_dir = RunDir(tmp_path / "pipe").create()
    spec = {"kind": "pipeline", "push_local_dir": str(tmp_path / "export")}
    result = run(spec, run_dir)
    assert result.status == "succeeded", result.error
    stages = [(e["stage"], e["status"]) for e in run_dir.iter_events("stage")]
    assert stages == [("sft", "started"), ("sft", "completed"), ("sft_gate", "started"), ("sft_gate", "completed"),
                      ("grpo", "started"), ("grpo", "completed"), ("eval", "started"), ("eval", "completed"),
                      ("push", "started"), ("push", "completed")]
    report = read_report(run_dir.path)
    assert report.passed and report.checkpoint == result.checkpoint and report.baseline.endswith("checkpoint-200")
    assert result.checkpoint.endswith("stages/grpo/checkpoints/checkpoint-20")
    assert result.metrics["sft_gate/accuracy"] >= 0.3 and result.metrics["eval/accuracy"] >= 0.4
    # training metrics reach the pipeline's events with a global step (GRPO steps come after the 200 SFT steps)
    steps = [e["step"] for e in run_dir.iter_events("metrics") if e.get("stage") == "grpo"]
    assert steps and min(steps) > 200
    # run again in the same directory: every stage is reused, nothing is trained again
    exported = tmp_path / "export"
    assert (exported / "README.md").is_file() and (exported / "model.safetensors").is_file()
    assert "pass" in (exported / "README.md").read_text().lower()
    again = run(spec, run_dir)
    assert again.status == "succeeded" and again.checkpoint == result.checkpoint
    reused = [(e["stage"], e["status"]) for e in run_dir.iter_events("stage")][len(stages):]
    assert reused == [("sft", "reused"), ("sft_gate", "reused"), ("grpo", "reused"), ("eval", "reused"),
                      ("push", "reused")]


@pytest.mark.slow
def test_a_failing_sft_gate_stops_the_pipeline_before_grpo(tmp_path):
    from carl_engine.pipeline import run
    from carl_engine.runs import RunDir

    run_dir = RunDir(tmp_path / "pipe").create()
    result = run({"sft_steps": 2, "grpo_steps": 2, "grpo_batch_size": 4, "eval_n": 4,
                  "sft_gate": {"min_accuracy": 1.0}}, run_dir)
    assert result.status == "failed" and result.error.startswith("the SFT gate failed: fail: accuracy")
    assert not (run_dir.path / "stages" / "grpo").exists()


@pytest.mark.slow
def test_a_new_attempt_reuses_the_training_stages_of_the_run_it_resumes(tmp_path):
    from carl_engine.pipeline import run
    from carl_engine.runs import RunDir

    small = {"sft_steps": 4, "grpo_steps": 2, "grpo_batch_size": 4, "eval_n": 4, "eval_group_size": 2,
             "sft_gate": {"min_accuracy": 0.0}}
    first = RunDir(tmp_path / "attempt-1").create()
    failed = run({**small, "final_gate": {"min_accuracy": 1.0}, "compare_to_sft": False}, first)
    assert failed.status == "failed" and failed.error.startswith("the final eval gate failed")
    second = RunDir(tmp_path / "attempt-2").create()
    result = run({**small, "final_gate": {"min_accuracy": 0.0}, "resume_dir": str(first.path)}, second)
    assert result.status == "succeeded"
    statuses = {e["stage"]: e["status"] for e in second.iter_events("stage")}
    assert statuses["sft"] == "reused" and statuses["grpo"] == "reused" and statuses["eval"] == "completed"
    assert result.checkpoint == failed.checkpoint and str(first.path) in result.checkpoint


@pytest.mark.slow
def test_a_lora_pipeline_merges_the_sft_adapter_before_grpo(tmp_path):
    from carl_engine.pipeline import run
    from carl_engine.runs import RunDir

    run_dir = RunDir(tmp_path / "pipe").create()
    result = run({"lora": True, "sft_steps": 4, "grpo_steps": 2, "grpo_batch_size": 4, "eval_n": 4,
                  "eval_group_size": 2, "sft_gate": {"min_accuracy": 0.0}, "final_gate": {"min_accuracy": 0.0}}, run_dir)
    assert result.status == "succeeded", result.error
    merged = run_dir.path / "stages" / "sft" / "merged"
    assert (merged / "config.json").is_file()  # GRPO started from the merged SFT model
    final = json.loads((Path(result.checkpoint) / "adapter_config.json").read_text())
    assert final["base_model_name_or_path"] == str(merged)
