"""GRPO with the task verifier, the CARL reward and the cascade: metrics, gate, checkpoints;
the two capture paths agree; SFT then GRPO raises the task reward."""

from __future__ import annotations

import json
import math

import pytest
import torch

from carl_engine.rewards.carl import CarlReward
from carl_engine.runs import RunDir
from carl_engine.training.builder import build_trainer
from carl_engine.training.runner import train
from carl_engine.training.spec import TrainSpec

NAMED_METRICS = (
    "carl/multiscale", "carl/cloud", "carl/discontinuity", "carl/phi_mean", "carl/kuramoto_r",
    "carl/diversity", "gate/carl_weight", "gate/state", "rewards/arithmetic/mean", "rewards/carl/mean",
)


@pytest.mark.slow
def test_grpo_with_task_carl_and_the_cascade_logs_every_metric_gates_and_checkpoints(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    spec = TrainSpec(
        max_steps=4, batch_size=8, num_generations=4, max_completion_length=6, num_examples=32, save_steps=2,
        cascade={"gate": "steps", "start_step": 1, "warmup_steps": 2},
    )
    result = train(spec, run_dir)

    assert (result.status, result.step) == ("succeeded", 4)
    assert result.extra["capture_path"] == "generate"
    for event in run_dir.iter_events("metrics")[:4]:
        missing = [name for name in NAMED_METRICS if name not in event["metrics"]]
        assert not missing, (event["step"], missing)
    weights = [e["metrics"]["gate/carl_weight"] for e in run_dir.iter_events("metrics")[:4]]
    assert weights == [0.0, 0.5, 1.0, 1.0]
    assert [e["state"] for e in run_dir.iter_events("gate")] == ["closed", "ramping", "open"]
    assert [e["path"].rsplit("-", 1)[1] for e in run_dir.iter_events("checkpoint")] == ["2", "4"]
    assert [p.name for p in run_dir.checkpoints()] == ["checkpoint-2", "checkpoint-4"]
    gate_state = json.loads((run_dir.latest_checkpoint() / "carl_gate.json").read_text())
    assert gate_state["opened_at"] == 1
    progress = run_dir.iter_events("progress")
    assert progress[-1]["step"] == 4 and progress[-1]["max_steps"] == 4


def first_carl_kwargs(spec: TrainSpec, run_dir: RunDir, monkeypatch, **options) -> dict:
    """Train one step and return the statistics the carl reward received."""
    seen: list[dict] = []
    original = CarlReward.__call__

    def recording(self, prompts, completions, completion_ids, **kwargs):
        seen.append({"ids": completion_ids, "h": kwargs["token_entropy"], "lp": kwargs["token_logprob"]})
        return original(self, prompts, completions, completion_ids, **kwargs)

    monkeypatch.setattr(CarlReward, "__call__", recording)
    torch.manual_seed(spec.seed)
    trainer = build_trainer(spec, run_dir, trainer_options=options)
    trainer.train()
    return seen[0] | {"path": trainer.capture_path}


@pytest.mark.slow
def test_the_forward_path_gives_the_same_statistics_as_the_generate_capture(tmp_path, monkeypatch):
    # steps_per_generation=2 with no accumulation makes TRL run its old-log-prob forward.
    spec = TrainSpec(
        max_steps=1, batch_size=4, num_generations=4, max_completion_length=6, num_examples=16,
        rewards={"carl": 1.0}, trl={"steps_per_generation": 2},
    )
    by_generate = first_carl_kwargs(spec, RunDir(tmp_path / "a"), monkeypatch, capture="generate")
    by_forward = first_carl_kwargs(spec, RunDir(tmp_path / "b"), monkeypatch, capture="forward")
    assert (by_generate["path"], by_forward["path"]) == ("generate", "forward")
    assert by_generate["ids"] == by_forward["ids"]
    for key in ("h", "lp"):
        flat_a = [v for row in by_generate[key] for v in row]
        flat_b = [v for row in by_forward[key] for v in row]
        assert len(flat_a) == len(flat_b) > 0
        assert max(abs(a - b) for a, b in zip(flat_a, flat_b)) < 1e-4


def sampled_accuracy(model_dir: str, problems: list[dict]) -> float:
    from carl_engine.models import load_model_and_tokenizer
    from carl_engine.tasks import get_task
    from carl_engine.training.generation import sample_with_stats

    task = get_task("arithmetic")
    model, tokenizer = load_model_and_tokenizer(model_dir, torch_dtype="float32")
    samples = sample_with_stats(
        model, tokenizer, [p["prompt"] for p in problems], num_samples=32, max_new_tokens=4, seed=0, batch_size=512
    )
    assert all(len(s.token_ids) == len(s.entropy) == len(s.selected_logprob) for s in samples)
    return sum(task.verify(s.text, problems[s.prompt_index]["answer"]) for s in samples) / len(samples)


@pytest.mark.slow
def test_sft_then_grpo_raises_the_task_reward_on_carl_tiny(tmp_path):
    from carl_engine.tasks import get_task

    sft = train(TrainSpec(method="sft", max_steps=120, batch_size=16, learning_rate=3e-3), RunDir(tmp_path / "sft"))
    grpo_spec = TrainSpec(
        model=sft.checkpoint, max_steps=40, batch_size=32, num_generations=8, max_completion_length=4,
        learning_rate=1e-3, num_examples=16, rewards={"task": 1.0}, trl={"lr_scheduler_type": "constant"},
    )
    grpo = train(grpo_spec, RunDir(tmp_path / "grpo"))

    problems = get_task("arithmetic").records("prompt_only", n=16, seed=0)  # the GRPO prompts
    before, after = sampled_accuracy(sft.checkpoint, problems), sampled_accuracy(grpo.checkpoint, problems)
    assert after >= before + 0.10, (before, after)
    rewards = [e["metrics"]["rewards/arithmetic/mean"] for e in RunDir(tmp_path / "grpo").iter_events("metrics")
               if "rewards/arithmetic/mean" in e["metrics"]]
    assert math.fsum(rewards[-10:]) > math.fsum(rewards[:10])
