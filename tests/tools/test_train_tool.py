"""carl_train: validates before writing, returns at once, resumes, dry-runs, smoke-runs, pipelines."""

from __future__ import annotations

import pytest

from carl_engine.errors import IllegalTransitionError, InvalidSpecError, TrainingError
from carl_studio.tools.jobs import STATUS, STOP
from carl_studio.tools.train import TRAIN, TrainRequest
from tests.tools.support import FINAL, scripted_context, wait_for


def _rows(ctx) -> int:
    return ctx.jobs.store.count()


def test_the_request_carries_every_trainspec_field_with_its_description():
    from carl_engine.training.spec import TrainSpec

    schema = TrainRequest.model_json_schema()["properties"]
    for name, info in TrainSpec.model_fields.items():
        assert schema[name].get("description") == info.description
    assert {"compute", "config", "resume", "pipeline", "dry_run", "smoke"} <= set(schema)


def test_a_submitted_job_returns_at_once_with_its_id_run_dir_and_estimate():
    ctx = scripted_context()
    answer = TRAIN.call({"max_steps": 4, "seed": 1}, ctx)
    assert answer.job_id and answer.backend == "local" and answer.run_dir.endswith(answer.job_id)
    assert answer.state in {"starting", "running", "succeeded"} and answer.estimate.max_steps == 4
    assert "grpo on carl-tiny" in answer.plan[0] and answer.job_id in answer.next
    spec = ctx.jobs.store.get(answer.job_id).spec
    assert spec["max_steps"] == 4 and spec["seed"] == 1 and spec["method"] == "grpo"
    wait_for(lambda: STATUS.call({"job_id": answer.job_id}, ctx).job.state in FINAL)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"max_steps": -1}, "max_steps"),
        ({"method": "ppo"}, "method"),
        ({"method": "sft", "rewards": {"carl": 1.0}}, "rewards"),
        ({"trl": {"max_steps": 3}}, "trl.max_steps"),
        ({"compute": "nowhere"}, "compute"),
        ({"compute": "hf_jobs:a10g-large"}, None),  # HF_TOKEN is not set in tests
        ({"resume": "abcd1234", "max_steps": 3}, "resume"),
        ({"pipeline_options": {"grpo_steps": 1}}, "pipeline_options"),
    ],
)
def test_a_rejected_request_names_the_cause_and_writes_no_job(arguments, field):
    ctx = scripted_context()
    with pytest.raises(Exception) as err:
        TRAIN.call(arguments, ctx)
    if field is not None:
        assert isinstance(err.value, InvalidSpecError) and err.value.field == field
    else:
        assert "HF_TOKEN" in str(err.value)
    assert _rows(ctx) == 0


def test_a_dry_run_validates_and_plans_without_starting_anything():
    ctx = scripted_context()
    answer = TRAIN.call({"dry_run": True, "method": "sft", "max_steps": 2}, ctx)
    assert answer.dry_run and answer.job_id is None and answer.plan[0].startswith("sft on carl-tiny")
    assert _rows(ctx) == 0


def test_a_pipeline_dry_run_returns_the_pipeline_plan():
    ctx = scripted_context()
    answer = TRAIN.call({"pipeline": True, "dry_run": True, "seed": 3, "pipeline_options": {"grpo_steps": 2}}, ctx)
    assert answer.kind == "pipeline" and len(answer.plan) == 5 and "seed 3" in answer.plan[0]
    from carl_engine.pipeline import PipelineSpec

    assert answer.estimate.max_steps == PipelineSpec().sft_steps + 2 and _rows(ctx) == 0
    with pytest.raises(InvalidSpecError, match="learning_rate: does not apply with pipeline=true"):
        TRAIN.call({"pipeline": True, "dry_run": True, "learning_rate": 0.1}, ctx)


def test_fields_given_in_the_request_override_the_config_file(tmp_path):
    config = tmp_path / "carl.yaml"
    config.write_text("method: sft\nmax_steps: 7\nseed: 5\n")
    answer = TRAIN.call({"config": str(config), "seed": 9, "dry_run": True}, scripted_context())
    assert answer.plan[0].startswith("sft on carl-tiny") and "7 steps, seed 9" in answer.plan[0]
    with pytest.raises(InvalidSpecError, match="spec: file does not exist"):
        TRAIN.call({"config": str(tmp_path / "missing.yaml")}, scripted_context())


def test_resume_starts_a_new_attempt_of_a_cancelled_job():
    ctx = scripted_context(step_s=5)
    first = TRAIN.call({"max_steps": 50}, ctx).job_id
    with pytest.raises(IllegalTransitionError, match="only failed, lost or cancelled"):
        TRAIN.call({"resume": first}, ctx)
    STOP.call({"job_id": first}, ctx)
    again = TRAIN.call({"resume": first}, ctx)
    assert again.resumes == first and again.job_id != first
    assert STATUS.call({"job_id": again.job_id}, ctx).job.attempt == 2
    STOP.call({"job_id": again.job_id}, ctx)


def test_a_smoke_run_goes_first_and_the_real_job_starts_only_after_it_succeeds():
    ctx = scripted_context()
    answer = TRAIN.call({"max_steps": 3, "smoke": True}, ctx)
    assert answer.smoke.state == "succeeded" and answer.smoke.job_id != answer.job_id
    assert ctx.jobs.store.get(answer.smoke.job_id).spec["max_steps"] == 1


def test_a_failing_smoke_run_stops_before_the_real_job():
    ctx = scripted_context(fail_at=1)
    with pytest.raises(TrainingError, match="scripted failure at step 1; nothing else was started"):
        TRAIN.call({"max_steps": 3, "smoke": True}, ctx)
    assert _rows(ctx) == 1  # the smoke job only


def test_a_pipeline_smoke_run_is_the_same_pipeline_cut_to_one_step_a_stage():
    from carl_studio.tools.train import smoke_spec

    cut = smoke_spec("pipeline", {"sft_steps": 60, "grpo_steps": 0, "eval_n": 64, "push_to": "me/model"})
    assert cut["sft_steps"] == 1 and cut["grpo_steps"] == 0 and cut["eval_n"] == 4 and cut["push_to"] is None
    answer = TRAIN.call({"pipeline": True, "smoke": True}, scripted_context())
    assert answer.kind == "pipeline" and answer.smoke.state == "succeeded"


def test_a_failed_submission_answers_state_failed_with_the_backends_error():
    answer = TRAIN.call({"max_steps": 2, "compute": "ray:127.0.0.1:1"}, scripted_context())
    assert answer.state == "failed" and "127.0.0.1:1" in answer.error
    assert answer.next.startswith("the submission failed")
