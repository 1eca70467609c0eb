"""Group diversity R_div: the population-level guard against the coherence trap.

A mode-collapsed policy scores near-optimal coherence (the paper, section 5.2.3). Per GRPO
group of G completions of one prompt (consecutive in the batch, as TRL orders them):

    sim(i, j) = cosine of the token-bigram count vectors of completions i and j
                (unigram counts when either has fewer than 2 tokens)
    R_div,i   = 1 - mean_{j != i} sim(i, j);   None when G == 1

Decided here (CARL_MATH.md leaves it open): two empty completions are identical (sim 1);
an empty and a non-empty one share nothing (sim 0).

Pure Python over n-gram counters; imports no torch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from carl_engine.errors import InvalidSpecError


def group_diversity(token_id_lists: Sequence[Any], group_size: int) -> list[float | None]:
    """Per-completion diversity within its group of `group_size` consecutive completions.

    Args:
        token_id_lists: N completions, each a 1-D sequence of token ids (list, tuple,
            numpy array or torch tensor), unpadded; N a multiple of `group_size`.
        group_size: G, the completions per prompt (GRPO's `num_generations`).

    Returns:
        N values in [0, 1] (1 = shares nothing with its group), or None for each when G == 1.

    Raises:
        InvalidSpecError: `group_size` not a positive integer dividing N, or a completion
            that is not a 1-D sequence of integers (field `token_id_lists[i]`).

    >>> group_diversity([[1, 2, 3], [1, 2, 3], [4, 5, 6], [7, 8]], group_size=2)
    [0.0, 0.0, 1.0, 1.0]
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise InvalidSpecError("group_size", "must be a positive integer", got=group_size)
    if len(token_id_lists) % group_size:
        raise InvalidSpecError(
            "group_size", f"must divide the number of completions ({len(token_id_lists)})", got=group_size
        )
    sequences = [_as_ids(ids, i) for i, ids in enumerate(token_id_lists)]
    if group_size == 1:
        return [None] * len(sequences)
    out: list[float | None] = []
    for start in range(0, len(sequences), group_size):
        out.extend(_diversity_of_group(sequences[start : start + group_size]))
    return out


def _diversity_of_group(group: list[tuple[int, ...]]) -> list[float]:
    unigrams = [Counter(ids) for ids in group]
    bigrams = [Counter(zip(ids, ids[1:])) for ids in group]
    G = len(group)
    sim = [[0.0] * G for _ in range(G)]
    for i in range(G):
        for j in range(i + 1, G):
            short = len(group[i]) < 2 or len(group[j]) < 2
            counts = unigrams if short else bigrams
            sim[i][j] = sim[j][i] = _cosine(counts[i], counts[j])
    return [1.0 - sum(sim[i][j] for j in range(G) if j != i) / (G - 1) for i in range(G)]


def _cosine(a: Counter, b: Counter) -> float:
    if not a and not b:
        return 1.0  # two empty completions are the same completion
    if not a or not b:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    dot = sum(count * b[key] for key, count in a.items() if key in b)
    norm = math.sqrt(sum(c * c for c in a.values()) * sum(c * c for c in b.values()))  # exact for a == b
    return min(1.0, dot / norm)


def _as_ids(ids: Any, index: int) -> tuple[int, ...]:
    if hasattr(ids, "tolist"):  # numpy array or torch tensor
        ids = ids.tolist()
    if not isinstance(ids, (list, tuple)) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in ids
    ):
        raise InvalidSpecError(f"token_id_lists[{index}]", "must be a 1-D sequence of integer token ids")
    return tuple(ids)
