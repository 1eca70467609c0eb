"""Sample completions with their per-token entropy and sampled-token log-probability.

The same capture the GRPO reward uses (carl_engine.training.capture), for evaluation and
benchmarks: no second forward pass. Completions are cut as TRL cuts them: up to and
including the first EOS.

    samples = sample_with_stats(model, tokenizer, ["2+3=", "7-4="], num_samples=4, max_new_tokens=8)
    samples[0].token_ids, samples[0].entropy, samples[0].selected_logprob   # lists of equal length
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carl_engine.training.capture import TokenStatsProcessor


@dataclass
class SampledCompletion:
    """One completion of one prompt."""

    prompt_index: int
    text: str
    token_ids: list[int]  # up to and including the first EOS
    entropy: list[float]  # nats, per token, of softmax(logits / temperature)
    selected_logprob: list[float]  # log-probability of each sampled token
    vocab_size: int


def sample_with_stats(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    num_samples: int = 1,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    do_sample: bool = True,
    batch_size: int = 32,
    seed: int | None = None,
) -> list[SampledCompletion]:
    """Generate `num_samples` completions per prompt and capture their token statistics.

    Args:
        model: a causal LM (transformers), any device.
        tokenizer: its tokenizer (pad and eos set).
        prompts: plain-text prompts.
        num_samples: completions per prompt (consecutive in the result).
        max_new_tokens: longest completion.
        temperature: sampling temperature (the statistics are of softmax(logits / temperature)).
        do_sample: False for greedy decoding (statistics still of softmax(logits / temperature)).
        batch_size: sequences per generate call.
        seed: torch seed for reproducible samples.

    Returns:
        len(prompts) * num_samples completions, grouped by prompt in prompt order.
    """
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    eos_ids = _eos_ids(model, tokenizer)
    rows = [(i, p) for i, p in enumerate(prompts) for _ in range(num_samples)]
    out: list[SampledCompletion] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), batch_size):
            out.extend(_one_batch(model, tokenizer, rows[start : start + batch_size], eos_ids,
                                  max_new_tokens=max_new_tokens, temperature=temperature, do_sample=do_sample))
    finally:
        model.train(was_training)
    return out


def _one_batch(model, tokenizer, rows, eos_ids, *, max_new_tokens, temperature, do_sample) -> list[SampledCompletion]:
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer([p for _, p in rows], return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    enc = {k: v.to(model.device) for k, v in enc.items()}
    processor = TokenStatsProcessor(temperature)
    sampling = {"temperature": temperature, "top_k": 0, "top_p": 1.0} if do_sample else {}
    with torch.no_grad():
        sequences = model.generate(
            **enc, do_sample=do_sample, max_new_tokens=max_new_tokens, logits_processor=[processor],
            pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(eos_ids), **sampling,
        )
    entropy_BT, selected_BT = processor.finish(sequences)
    new_ids = sequences[:, enc["input_ids"].shape[1] :].tolist()
    result = []
    for b, (prompt_index, _) in enumerate(rows):
        ids = _cut_at_eos(new_ids[b], eos_ids)
        result.append(SampledCompletion(
            prompt_index=prompt_index,
            text=tokenizer.decode(ids, skip_special_tokens=True),
            token_ids=ids,
            entropy=entropy_BT[b, : len(ids)].tolist(),
            selected_logprob=selected_BT[b, : len(ids)].tolist(),
            vocab_size=int(processor.vocab_size or 0),
        ))
    return result


def _cut_at_eos(ids: list[int], eos_ids: set[int]) -> list[int]:
    for k, token in enumerate(ids):
        if token in eos_ids:
            return ids[: k + 1]
    return ids


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    found = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    found.update(configured if isinstance(configured, list) else [configured])
    return {i for i in found if i is not None}
