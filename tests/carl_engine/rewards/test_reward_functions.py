"""Reward functions in TRL's signature: task verifier, carl (from captured stats), diversity."""

from __future__ import annotations

import math

import pytest
import torch

from carl_engine.coherence import CARLWeights, CoherenceField
from carl_engine.rewards.carl import CarlReward
from carl_engine.rewards.diversity import DiversityReward, prompt_groups
from carl_engine.rewards.task import TaskReward


def stats_from_logits(logits_TV: torch.Tensor, ids_T: torch.Tensor) -> tuple[list[float], list[float]]:
    logp = torch.log_softmax(logits_TV.double(), dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return entropy.tolist(), logp.gather(-1, ids_T[:, None]).squeeze(-1).tolist()


def test_the_task_reward_scores_exact_answers_and_is_named_after_the_task():
    reward = TaskReward("arithmetic")
    assert reward.__name__ == "arithmetic"
    assert reward(prompts=["1+1="] * 2, completions=["2", "3"], completion_ids=[[1], [2]], answer=["2", "2"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="answer"):
        reward(prompts=["1+1="], completions=["2"], completion_ids=[[1]])


def test_the_carl_reward_equals_the_coherence_composite_and_is_none_for_an_empty_completion():
    torch.manual_seed(0)
    logits, ids = torch.randn(2, 6, 11) * 3, torch.randint(0, 11, (2, 6))
    rows = [stats_from_logits(logits[b], ids[b]) for b in range(2)]
    logged: dict[str, float] = {}
    rewards = CarlReward(CARLWeights.paper())(
        prompts=["p", "p", "q"],
        completions=["a", "b", ""],
        completion_ids=[ids[0].tolist(), ids[1].tolist(), []],
        token_entropy=[rows[0][0], rows[1][0], []],
        token_logprob=[rows[0][1], rows[1][1], []],
        vocab_size=[11, 11, 11],
        log_metric=logged.__setitem__,
    )
    expected = CoherenceField.from_logits(logits, ids).scores(CARLWeights.paper())["composite"]
    assert rewards[2] is None
    assert rewards[:2] == pytest.approx(expected.tolist(), abs=1e-6)
    for name in ("multiscale", "cloud", "discontinuity", "phi_mean", "kuramoto_r", "diversity", "composite"):
        assert math.isfinite(logged[f"carl/{name}"]), name


def test_the_carl_reward_needs_captured_statistics():
    with pytest.raises(ValueError, match="token_entropy"):
        CarlReward()(prompts=["p"], completions=["a"], completion_ids=[[1]])


def test_the_guarded_preset_lowers_the_reward_of_a_collapsed_group():
    entropy, logprob = [[0.1] * 4] * 4, [[-0.05] * 4] * 4
    common = dict(prompts=["p"] * 4, completions=[""] * 4, token_entropy=entropy, token_logprob=logprob, vocab_size=[50] * 4)
    collapsed = CarlReward(CARLWeights.guarded())(completion_ids=[[1, 2, 3, 4]] * 4, **common)
    varied = CarlReward(CARLWeights.guarded())(completion_ids=[[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]], **common)
    assert all(c < v for c, v in zip(collapsed, varied))


def test_diversity_is_computed_within_each_run_of_equal_prompts():
    assert prompt_groups(["a", "a", "b", "b"]) == [(0, 2), (2, 4)]
    logged: dict[str, float] = {}
    values = DiversityReward()(
        prompts=["a", "a", "b", "b"], completions=[""] * 4, completion_ids=[[1, 2], [1, 2], [1, 2], [3, 4]],
        log_metric=logged.__setitem__,
    )
    assert values == [0.0, 0.0, 1.0, 1.0]
    assert logged["carl/diversity"] == 0.5
