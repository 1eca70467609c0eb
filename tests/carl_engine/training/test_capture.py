"""The capture during generation matches a separate fp32 forward pass of the same model."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from carl_engine.training.capture import GenerateCapture, TokenStatsProcessor

PAD, EOS = 0, 1


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


def left_padded(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def reference_stats(model, sequences, mask, prompt_length, temperature):
    """Entropy and selected log-prob from one full fp32 forward over prompt + completion."""
    full_mask = torch.cat([mask, torch.ones_like(sequences[:, prompt_length:])], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=sequences, attention_mask=full_mask, position_ids=positions).logits.float()
    logits = logits[:, prompt_length - 1 : -1] / temperature  # [B, T, V]: position k predicts token k
    logp = torch.log_softmax(logits, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    selected = logp.gather(-1, sequences[:, prompt_length:, None]).squeeze(-1)
    return entropy, selected


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_captured_entropy_and_logprob_match_a_separate_fp32_forward(temperature):
    model = tiny_llama()
    ids, mask = left_padded([[5, 6, 7, 8, 9], [10, 11, 12], [13, 14, 15, 16]])
    processor = TokenStatsProcessor(temperature)
    torch.manual_seed(1)
    out = model.generate(
        input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature, top_k=0, max_new_tokens=12,
        logits_processor=[processor], pad_token_id=PAD, eos_token_id=None,
    )
    entropy, selected = processor.finish(out)
    ref_entropy, ref_selected = reference_stats(model, out, mask, ids.shape[1], temperature)
    assert entropy.shape == ref_entropy.shape == (3, 12)
    torch.testing.assert_close(entropy, ref_entropy, atol=1e-4, rtol=0)
    torch.testing.assert_close(selected, ref_selected, atol=1e-4, rtol=0)


def test_the_processor_keeps_one_step_of_vocabulary_rows_not_all_of_them():
    processor = TokenStatsProcessor()
    ids = torch.zeros(4, 3, dtype=torch.long)
    for step in range(10):
        processor(torch.cat([ids, torch.zeros(4, step, dtype=torch.long)], dim=1), torch.randn(4, 50))
    tensors = [processor._prev_logp, *processor.entropy_steps, *processor.selected_steps]
    assert sum(t.numel() for t in tensors) == 4 * 50 + 10 * 4 + 9 * 4


def test_the_capture_wraps_generate_only_while_attached_and_cuts_rows_at_each_length():
    model = tiny_llama()
    ids, mask = left_padded([[5, 6, 7], [8, 9, 10]])
    capture = GenerateCapture(temperature=1.0)
    with capture.attached(model):
        assert "generate" in vars(model)
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=6, pad_token_id=PAD)
    assert "generate" not in vars(model)
    completions = [out[0, 3:5].tolist(), out[1, 3:9].tolist()]
    stats = capture.per_completion(completions)
    assert [len(row) for row in stats.entropy] == [2, 6]
    assert [len(row) for row in stats.selected_logprob] == [2, 6]
    assert all(v <= 0 for row in stats.selected_logprob for v in row)


def test_masked_vocabulary_entries_add_nothing_to_the_entropy():
    processor = TokenStatsProcessor(temperature=1.0)
    scores = torch.tensor([[0.0, 0.0, -torch.inf, -torch.inf]])
    processor(torch.zeros(1, 2, dtype=torch.long), scores)
    entropy, selected = processor.finish(torch.tensor([[0, 0, 1]]))
    assert entropy.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert selected.item() == pytest.approx(-torch.log(torch.tensor(2.0)).item())
