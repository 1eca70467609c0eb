"""Sample completions from a model and score their coherence (torch; imported lazily).

Two passes per prompt set:
- greedy: one completion per prompt (the accuracy the gate reads);
- sampled: `group_size` completions per prompt at `temperature` from the untruncated
  distribution (top-k and top-p off), then one no-grad forward over prompt + completion
  to get each completion token's logits in context, from which `CoherenceField.from_logits`
  computes Φ and the CARL components in bounded memory. Training captures these numbers
  during generation to save that forward; an eval can afford it and so stays independent
  of the trainer's capture path.
A completion's tokens run up to and including its first EOS (as TRL's `completion_ids`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

CHUNK = 32  # sequences per generate/forward call


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


def _completion_mask(new_ids, eos_ids: set[int]):
    """[B, T] bool: True up to and including the first EOS of each row."""
    import torch

    is_eos = torch.zeros_like(new_ids, dtype=torch.bool)
    for eos in eos_ids:
        is_eos |= new_ids == eos
    before = torch.cumsum(is_eos.to(torch.int64), dim=1) - is_eos.to(torch.int64)
    return before == 0


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    found = {tokenizer.eos_token_id}
    cfg = getattr(model, "generation_config", None)
    extra = getattr(cfg, "eos_token_id", None)
    if isinstance(extra, int):
        found.add(extra)
    elif isinstance(extra, list):
        found.update(extra)
    return {i for i in found if i is not None}


def _generate(model, tokenizer, prompts: list[str], *, sample: bool, repeats: int, temperature: float, max_new_tokens: int):
    """Returns (input_ids [B, P], attention_mask [B, P], new_ids [B*repeats, T]) for one chunk."""
    import torch

    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": sorted(_eos_ids(model, tokenizer)),
    }
    if sample:
        kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0, num_return_sequences=repeats)
    else:
        kwargs.update(do_sample=False, num_return_sequences=1)
    with torch.no_grad():
        out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kwargs)
    P = enc["input_ids"].shape[1]
    return enc["input_ids"], enc["attention_mask"], out[:, P:]


def _score(model, prompt_ids, prompt_mask, new_ids, mask, temperature: float):
    """Forward prompt + completion once; per-sample mean Φ and CARL scores."""
    import torch

    from carl_engine.coherence import CARLWeights, CoherenceField

    ids = torch.cat([prompt_ids, new_ids], dim=1)  # [B, P+T]
    attn = torch.cat([prompt_mask, mask.to(prompt_mask.dtype)], dim=1)
    positions = (torch.cumsum(attn, dim=1) - 1).clamp(min=0)
    P, T = prompt_ids.shape[1], new_ids.shape[1]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn, position_ids=positions).logits  # [B, P+T, V]
    logits_BTV = logits[:, P - 1 : P + T - 1, :].float()
    f = CoherenceField.from_logits(logits_BTV, new_ids, mask=mask, temperature=temperature)
    raw = f.scores(CARLWeights.paper())
    phi = torch.as_tensor(f.phi, dtype=torch.float64)
    m = torch.as_tensor(f.mask, dtype=torch.bool)
    lengths = m.sum(dim=1)
    phi_sum = (phi * m).sum(dim=1)
    out_phi: list[float | None] = [None if int(n) == 0 else float(s / n) for s, n in zip(phi_sum, lengths, strict=True)]
    out_scores: list[dict[str, float | None]] = []
    for b in range(ids.shape[0]):
        row: dict[str, float | None] = {}
        for key, values in raw.items():
            value = float(values[b])
            row[key] = value if math.isfinite(value) else None
        out_scores.append(row)
    return out_phi, out_scores


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
        model, tokenizer: a causal LM in eval mode and its tokenizer (pad set).
        prompts: plain-text prompts.
        group_size: sampled completions per prompt (G).
        temperature: sampling temperature τ (Φ is computed under softmax(logits/τ)).
        max_new_tokens: longest completion.
        seed: torch seed for sampling.

    Returns:
        `Samples` with len(prompts) greedy texts and len(prompts)*G sampled ones.
    """
    import torch

    tokenizer.padding_side = "left"
    model.eval()
    eos = _eos_ids(model, tokenizer)
    result = Samples(greedy_texts=[])
    for start in range(0, len(prompts), CHUNK):
        _, _, new = _generate(model, tokenizer, prompts[start : start + CHUNK], sample=False, repeats=1,
                              temperature=1.0, max_new_tokens=max_new_tokens)
        mask = _completion_mask(new, eos)
        result.greedy_texts += [tokenizer.decode(row[m], skip_special_tokens=True) for row, m in zip(new, mask, strict=True)]
    torch.manual_seed(seed)
    per_chunk = max(1, CHUNK // group_size)
    for start in range(0, len(prompts), per_chunk):
        chunk = prompts[start : start + per_chunk]
        p_ids, p_mask, new = _generate(model, tokenizer, chunk, sample=True, repeats=group_size,
                                       temperature=temperature, max_new_tokens=max_new_tokens)
        mask = _completion_mask(new, eos)
        p_ids = p_ids.repeat_interleave(group_size, dim=0)
        p_mask = p_mask.repeat_interleave(group_size, dim=0)
        phi, scores = _score(model, p_ids, p_mask, new, mask, temperature)
        result.phi_mean += phi
        result.scores += scores
        for row, m in zip(new, mask, strict=True):
            result.token_ids.append([int(t) for t in row[m]])
            result.texts.append(tokenizer.decode(row[m], skip_special_tokens=True))
    return result
