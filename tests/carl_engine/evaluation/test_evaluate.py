import json

import pytest

from carl_engine.errors import InvalidSpecError, JobNotFoundError
from carl_engine.evaluation import EvalSpec, read_report, wilson_interval
from carl_engine.evaluation.evaluate import resolve_checkpoint, run_eval
from carl_engine.evaluation.job import run as eval_job
from carl_engine.runs import RunDir


def test_a_job_id_resolves_to_its_latest_checkpoint(finished_job):
    ckpt = resolve_checkpoint("job-ckpt")
    assert ckpt.path.name == "checkpoint-3"
    assert ckpt.job_id == "job-ckpt" and ckpt.run_dir == finished_job.path


def test_evaluating_carl_tiny_measures_everything_and_writes_eval_json(finished_job):
    spec = EvalSpec(checkpoint="job-ckpt", n=8, group_size=3, max_new_tokens=6, gate={"min_accuracy": 0.5})
    report, written = run_eval(spec)
    m = report.metrics
    assert m.n == 8 and len(m.correct) == 8
    low, high = wilson_interval(sum(m.correct), 8)
    assert (m.accuracy.low, m.accuracy.high) == pytest.approx((low, high))
    assert 0.0 <= m.phi_mean.value <= 1.0
    assert 0.0 <= m.diversity.value <= 1.0  # G = 3 gives a diversity per completion
    assert set(m.carl) >= {"composite", "multiscale", "cloud", "discontinuity"}
    assert 1 <= m.mean_length <= 6
    # an untrained model does not answer arithmetic: the gate fails and says why
    assert not report.passed and report.verdict == "fail"
    assert report.reasons[0].startswith("fail: accuracy")
    assert written == [finished_job.eval_path]
    assert read_report(finished_job.path).checkpoint == report.checkpoint


def test_the_same_checkpoint_as_baseline_is_not_worse(finished_job):
    spec = EvalSpec(checkpoint="job-ckpt", n=6, group_size=2, max_new_tokens=4, gate={"baseline": "job-ckpt"})
    report, _ = run_eval(spec)
    assert report.passed
    assert report.baseline_metrics.accuracy == report.metrics.accuracy
    assert any("vs baseline" in r for r in report.reasons)


def test_a_lora_adapter_is_evaluated_on_its_base_model(tmp_path):
    from peft import LoraConfig, get_peft_model

    from carl_engine.models import ensure_carl_tiny, load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(ensure_carl_tiny()))
    adapter = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    adapter.save_pretrained(tmp_path / "adapter")
    report, written = run_eval(EvalSpec(checkpoint=str(tmp_path / "adapter"), n=4, group_size=1, max_new_tokens=4))
    assert report.metrics.n == 4 and report.metrics.diversity.value is None
    assert report.passed and written == [tmp_path / "adapter" / "eval.json"]


def test_a_local_dataset_file_is_read_and_verified_by_the_task(finished_job, tmp_path):
    data = tmp_path / "probe.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)}) for i in range(5)))
    report, _ = run_eval(EvalSpec(checkpoint="job-ckpt", dataset=str(data), n=50, group_size=1, max_new_tokens=3))
    assert report.metrics.n == 5 and report.dataset == str(data)


@pytest.mark.parametrize(
    ("spec", "error", "field"),
    [
        ({"checkpoint": "/no/such/checkpoint"}, InvalidSpecError, "checkpoint"),
        ({"checkpoint": "job-ckpt", "task": "chess"}, InvalidSpecError, "task"),
        ({"checkpoint": "job-ckpt", "dataset": "/no/such.jsonl"}, InvalidSpecError, "dataset"),
        ({"checkpoint": "job-ckpt", "gate": {"baseline": "./gone"}}, InvalidSpecError, "gate.baseline"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(finished_job, listing, spec, error, field):
    before = listing(finished_job.path)
    with pytest.raises(error) as err:
        run_eval(EvalSpec(**spec))
    assert err.value.field == field
    assert listing(finished_job.path) == before


def test_an_unknown_job_id_is_named():
    with pytest.raises(JobNotFoundError, match="nope"):
        resolve_checkpoint("nope")


def test_a_run_without_checkpoints_says_so(tmp_path):
    RunDir.for_job("empty").create().write_spec({"kind": "train"})
    with pytest.raises(InvalidSpecError, match="no checkpoint yet"):
        resolve_checkpoint("empty")


def test_the_eval_job_handler_writes_its_verdict_in_both_run_dirs(finished_job, tmp_path):
    own = RunDir(tmp_path / "eval-job").create()
    result = eval_job({"kind": "eval", "checkpoint": "job-ckpt", "n": 4, "group_size": 2, "max_new_tokens": 4}, own)
    assert result.status == "succeeded" and result.extra["passed"] is True
    assert "eval/accuracy" in result.metrics
    assert read_report(own.path) is not None and read_report(finished_job.path) is not None
    stages = [e["status"] for e in own.iter_events("stage")]
    assert stages == ["started", "completed"]
