"""carl_push's engine: the gate, the model card, the files, and the official client against a Hub stand-in."""

from __future__ import annotations

import json

import pytest
from standins.carl_runs import paper_run, write_run_dir
from standins.hub_repos import hub_repos, hub_standin  # noqa: F401  (fixture)

from carl_engine.errors import GateRefusedError, InvalidSpecError, JobNotFoundError, MissingCredentialsError, ServiceError
from carl_engine.evaluation.spec import EvalMetrics, EvalReport, Interval, write_report
from carl_engine.hub import push, validate_repo_id
from carl_engine.runs import RunDir, RunResult

SPEC = {"kind": "train", "method": "grpo", "model": "Qwen/Qwen2.5-0.5B", "task": "arithmetic",
        "rewards": {"arithmetic": 1.0, "carl": 0.5}, "max_steps": 46}


def make_job(job_id: str = "job1", *, steps=(4, 8), adapter: bool = False) -> RunDir:
    """A finished training job's run directory with complete checkpoints (fake weights)."""
    run = write_run_dir(RunDir.for_job(job_id), paper_run(0)[:9], spec=SPEC)
    for step in steps:
        ckpt = run.checkpoints_dir / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        if adapter:
            (ckpt / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen2.5-0.5B", "peft_type": "LORA"}))
            (ckpt / "adapter_model.safetensors").write_bytes(b"adapter-weights")
        else:
            (ckpt / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
            (ckpt / "model.safetensors").write_bytes(b"weights-%d" % step)
        (ckpt / "tokenizer.json").write_text("{}")
        for state in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
            (ckpt / state).write_bytes(b"state")
        (ckpt / "trainer_state.json").write_text(json.dumps({"log_history": []}))
        (ckpt / "carl_gate.json").write_text("{}")  # the cascade gate's state: training state too
    run.write_result(RunResult(status="succeeded", step=steps[-1], max_steps=46, checkpoint=str(run.latest_checkpoint())))
    return run


def write_eval(run: RunDir, *, passed: bool, step: int | None = None) -> None:
    ckpt = run.latest_checkpoint() if step is None else run.checkpoints_dir / f"checkpoint-{step}"
    metrics = EvalMetrics(n=32, accuracy=Interval(value=0.81, low=0.65, high=0.91), phi_mean=Interval(value=0.62),
                          diversity=Interval(value=0.4), mean_length=7.5, carl={"composite": 0.55})
    reasons = ["accuracy 0.810 >= 0.600"] if passed else ["accuracy 0.410 < 0.600"]
    write_report(EvalReport(passed=passed, verdict="pass" if passed else "fail", reasons=reasons,
                            checkpoint=str(ckpt.resolve()), task="arithmetic", metrics=metrics), run.path)


def test_a_job_with_a_passing_eval_is_pushed_with_its_model_card(hub_standin):
    url, hub = hub_standin
    run = make_job()
    write_eval(run, passed=True)

    result = push("job1", repo_id="alice/carl-arith")

    repo = hub.repos["alice/carl-arith"]
    assert set(repo.files) == {"README.md", "config.json", "model.safetensors", "tokenizer.json"}
    assert repo.files["model.safetensors"] == b"weights-8"
    card = repo.files["README.md"].decode()
    for expected in ("base_model: Qwen/Qwen2.5-0.5B", "| method | grpo |", "arithmetic × 1", "carl × 0.5",
                     "| steps trained | 8 |", "**PASSED**", "accuracy 0.810 >= 0.600", "eval/accuracy | 0.81",
                     "eval/carl_composite", "| reward |", "carl/phi_mean", "library_name: transformers"):
        assert expected in card, expected
    assert result.url == f"{url}/alice/carl-arith" and result.commit_url.startswith(f"{url}/alice/carl-arith/commit/")
    assert result.job_id == "job1" and result.gate.state == "passed" and not result.forced and not result.adapter


def test_pushing_again_to_an_existing_repo_adds_a_commit(hub_standin):
    _, hub = hub_standin
    write_eval(make_job(), passed=True)
    push("job1", repo_id="alice/again")
    push("job1", repo_id="alice/again", commit_message="second")
    assert [c["summary"] for c in hub.repos["alice/again"].commits][-1] == "second"


def test_a_failed_eval_refuses_the_push_and_says_what_would_lift_it(hub_standin):
    _, hub = hub_standin
    write_eval(make_job(), passed=False)
    with pytest.raises(GateRefusedError) as info:
        push("job1", repo_id="alice/x")
    text = str(info.value)
    assert "latest eval of job1 failed" in text and "accuracy 0.410 < 0.600" in text
    assert "run carl_eval" in text and "force=true" in text
    assert hub.repos == {} and hub.calls == []


def test_a_missing_eval_refuses_but_force_pushes_and_the_card_says_so(hub_standin):
    _, hub = hub_standin
    make_job()
    with pytest.raises(GateRefusedError, match="never evaluated"):
        push("job1", repo_id="alice/x")
    result = push("job1", repo_id="alice/x", force=True)
    assert result.forced and result.gate.state == "missing"
    assert "**NOT EVALUATED** — pushed with force=true" in hub.repos["alice/x"].files["README.md"].decode()


def test_an_eval_of_an_older_checkpoint_does_not_count_for_the_latest(hub_standin):
    run = make_job()
    write_eval(run, passed=True, step=4)
    with pytest.raises(GateRefusedError, match="checkpoint-4, not of this checkpoint"):
        push("job1", repo_id="alice/x")
    assert push(str(run.checkpoints_dir / "checkpoint-4"), repo_id="alice/x").gate.state == "passed"


def test_without_hf_token_the_push_names_the_variable_and_uploads_nothing(monkeypatch):
    write_eval(make_job(), passed=True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(MissingCredentialsError, match="HF_TOKEN"):
        push("job1", repo_id="alice/x")


def test_a_refused_token_is_a_service_error_without_the_token(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    write_eval(make_job(), passed=True)
    wrong = "hf_WRONG_secret_token_42"
    with hub_repos() as (url, hub):
        with pytest.raises(ServiceError) as info:
            push("job1", repo_id="alice/x", token=wrong, endpoint=url)
    assert "401" in str(info.value) and wrong not in str(info.value) and hub.repos == {}


@pytest.mark.parametrize("bad", ["", "noslash", "a/b/c", "-alice/x", "alice/x-", "alice/x--y", "alice/..", "alice/x.git",
                                 "al ice/x", "alice/" + "x" * 97])
def test_malformed_repo_ids_name_the_repo_field(bad):
    with pytest.raises(InvalidSpecError) as info:
        validate_repo_id(bad)
    assert info.value.field == "repo" and "<namespace>/<name>" in str(info.value)


def test_good_repo_ids_pass():
    assert validate_repo_id(" alice/carl-tiny_v1.2 ") == "alice/carl-tiny_v1.2"


def test_a_malformed_repo_id_is_refused_before_the_checkpoint_is_looked_at():
    with pytest.raises(InvalidSpecError) as info:
        push("no-such-job", repo_id="not a repo")
    assert info.value.field == "repo"


def test_missing_checkpoints_and_unknown_jobs_are_clear_errors(tmp_path):
    with pytest.raises(InvalidSpecError) as info:
        push(str(tmp_path / "nothing" / "here"), repo_id="alice/x")
    assert info.value.field == "checkpoint"
    with pytest.raises(JobNotFoundError, match="nojob"):
        push("nojob", repo_id="alice/x")


def test_local_dir_exports_the_same_folder_offline_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    write_eval(make_job(), passed=True)
    out = tmp_path / "exports" / "export"
    result = push("job1", local_dir=out)
    exported = sorted(p.name for p in out.iterdir())
    assert exported == ["README.md", "config.json", "model.safetensors", "tokenizer.json"] == result.files
    assert result.local_dir == str(out.resolve()) and result.url is None
    assert [p.name for p in out.parent.iterdir()] == ["export"]  # no staging folder left behind


def test_a_non_empty_local_dir_is_refused_and_left_alone(tmp_path):
    write_eval(make_job(), passed=True)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "mine.txt").write_text("keep")
    with pytest.raises(InvalidSpecError) as info:
        push("job1", local_dir=tmp_path / "export")
    assert info.value.field == "local_dir" and [p.name for p in (tmp_path / "export").iterdir()] == ["mine.txt"]


def test_a_lora_adapter_is_pushed_as_an_adapter(hub_standin):
    _, hub = hub_standin
    write_eval(make_job(adapter=True), passed=True)
    result = push("job1", repo_id="alice/adapter")
    files = hub.repos["alice/adapter"].files
    assert result.adapter and not result.merged
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(files) and "config.json" not in files
    card = files["README.md"].decode()
    assert "library_name: peft" in card and "AutoPeftModelForCausalLM" in card and "LoRA adapter" in card


def test_merge_needs_an_adapter():
    write_eval(make_job(), passed=True)
    with pytest.raises(InvalidSpecError) as info:
        push("job1", repo_id="alice/x", merge=True)
    assert info.value.field == "merge"


def test_merge_folds_a_real_lora_adapter_into_its_base_model(tmp_path):
    """A tiny Llama and a LoRA adapter on it, saved as a trainer would; merged, it loads as a plain model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base_dir = tmp_path / "base"
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    LlamaForCausalLM(config).save_pretrained(base_dir)
    run = make_job(adapter=True)
    ckpt = run.latest_checkpoint()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (ckpt / name).unlink()
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(r=2, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.5)  # a non-zero adapter, so merging changes the weights
    peft_model.save_pretrained(ckpt)
    write_eval(run, passed=True)

    result = push("job1", local_dir=tmp_path / "merged", merge=True)

    assert result.merged and not (tmp_path / "merged" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    q_merged = merged.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(q_merged, base.model.layers[0].self_attn.q_proj.weight)
    assert "LoRA merged into the base" in (tmp_path / "merged" / "README.md").read_text()
