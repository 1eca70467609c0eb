"""Sample completions from a model and score their coherence (torch; imported lazily).

Two passes per prompt set, both through the training engine's generation helper
(`carl_engine.training.generation.sample_with_stats`, the same capture the GRPO reward
uses, so no second forward pass):
- greedy: one completion per prompt (the accuracy the gate reads);
- sampled: `group_size` completions per prompt at `temperature` from the untruncated
  distribution (top-k and top-p off); their per-token entropy and selected log-probability
  give Φ and the CARL components through `CoherenceField.from_stats`.
A completion's tokens run up to and including its first EOS (as TRL's `completion_ids`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Samples:
    """Completions of one model on one prompt list.

    `greedy_texts[i]` answers prompt i; `texts[i*G + g]` is sample g of prompt i, with its
    token ids (up to and including EOS), mean Φ and CARL scores.
    """

    greedy_texts: list[str]
    texts: list[str] = field(default_factory=list)
    token_ids: list[list[int]] = field(default_factory=list)
    phi_mean: list[float | None] = field(default_factory=list)
    scores: list[dict[str, float | None]] = field(default_factory=list)


def _scores(completions: list[Any]) -> tuple[list[float | None], list[dict[str, float | None]]]:
    """Per completion: mean Φ over its tokens and its CARL scores (paper weights); None where T = 0."""
    import torch

    from carl_engine.coherence import CARLWeights, CoherenceField

    B = len(completions)
    T = max((len(c.token_ids) for c in completions), default=0)
    if B == 0 or T == 0:
        return [None] * B, [{} for _ in range(B)]
    entropy = torch.zeros(B, T, dtype=torch.float64)  # [B, T], 0 on padding
    logprob = torch.zeros(B, T, dtype=torch.float64)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, c in enumerate(completions):
        n = len(c.token_ids)
        entropy[b, :n] = torch.tensor(c.entropy, dtype=torch.float64)
        logprob[b, :n] = torch.tensor(c.selected_logprob, dtype=torch.float64)
        mask[b, :n] = True
    f = CoherenceField.from_stats(entropy, logprob, completions[0].vocab_size, mask=mask)
    raw = f.scores(CARLWeights.paper())
    phi = torch.as_tensor(f.phi, dtype=torch.float64)
    lengths = mask.sum(dim=1)
    phi_sum = (phi * mask).sum(dim=1)
    phis = [None if int(n) == 0 else float(s / n) for s, n in zip(phi_sum, lengths, strict=True)]
    rows: list[dict[str, float | None]] = []
    for b in range(B):
        row: dict[str, float | None] = {}
        for key, values in raw.items():
            value = float(values[b])
            row[key] = value if math.isfinite(value) else None
        rows.append(row)
    return phis, rows


def sample(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    group_size: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
) -> Samples:
    """Greedy and sampled completions of `prompts`, with coherence scores of the sampled ones.

    Args:
        model, tokenizer: a causal LM and its tokenizer (pad set).
        prompts: plain-text prompts.
        group_size: sampled completions per prompt (G).
        temperature: sampling temperature τ (Φ is computed under softmax(logits/τ)).
        max_new_tokens: longest completion.
        seed: torch seed for sampling.

    Returns:
        `Samples` with len(prompts) greedy texts and len(prompts)*G sampled ones.
    """
    from carl_engine.training.generation import sample_with_stats

    greedy = sample_with_stats(model, tokenizer, prompts, num_samples=1, max_new_tokens=max_new_tokens,
                               do_sample=False, seed=seed)
    sampled = sample_with_stats(model, tokenizer, prompts, num_samples=group_size, max_new_tokens=max_new_tokens,
                                temperature=temperature, do_sample=True, seed=seed)
    phis, scores = _scores(sampled)
    return Samples(
        greedy_texts=[c.text for c in greedy],
        texts=[c.text for c in sampled],
        token_ids=[list(c.token_ids) for c in sampled],
        phi_mean=phis,
        scores=scores,
    )
