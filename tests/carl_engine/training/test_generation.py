"""sample_with_stats: completions cut at EOS with statistics that match a separate forward pass."""

from __future__ import annotations

import math

import torch

from carl_engine.models import load_model_and_tokenizer
from carl_engine.training.generation import sample_with_stats


def test_sampled_completions_carry_statistics_equal_to_a_forward_over_prompt_and_completion():
    model, tokenizer = load_model_and_tokenizer("carl-tiny", torch_dtype="float32")
    prompts = ["3+4=", "12+7=", "9-2="]
    samples = sample_with_stats(model, tokenizer, prompts, num_samples=2, max_new_tokens=8, temperature=0.8, seed=0)
    assert [s.prompt_index for s in samples] == [0, 0, 1, 1, 2, 2]
    for s in samples:
        assert len(s.token_ids) == len(s.entropy) == len(s.selected_logprob) >= 1
        assert tokenizer.eos_token_id not in s.token_ids[:-1]  # cut at the first EOS
        prompt_ids = tokenizer(prompts[s.prompt_index], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + s.token_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].double() / 0.8
        logp = torch.log_softmax(logits, dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)
        selected = logp.gather(-1, torch.tensor(s.token_ids)[:, None]).squeeze(-1)
        assert max(abs(a - b) for a, b in zip(s.entropy, entropy.tolist())) < 1e-4
        assert max(abs(a - b) for a, b in zip(s.selected_logprob, selected.tolist())) < 1e-4
        assert all(0 <= h <= math.log(s.vocab_size) + 1e-6 for h in s.entropy)


def test_greedy_decoding_is_repeatable():
    model, tokenizer = load_model_and_tokenizer("carl-tiny", torch_dtype="float32")
    first = sample_with_stats(model, tokenizer, ["5+5="], do_sample=False, max_new_tokens=6)
    second = sample_with_stats(model, tokenizer, ["5+5="], do_sample=False, max_new_tokens=6)
    assert first[0].token_ids == second[0].token_ids and first[0].entropy == second[0].entropy
