"""The CARL reward: the coherence composite of each completion, from captured statistics.

Where this departs from the paper's implementation: the paper re-ran the model on each
completion's text alone (re-tokenized, without its prompt) to get the per-token
distributions. This reward reads the entropy and sampled-token log-probability that were
captured while the completion was sampled (carl_engine.training.capture), so it scores the
exact sampled tokens in their context and costs no forward pass.

Inputs arrive as TRL reward kwargs, one entry per completion:
    token_entropy      list[float], H_k in nats of softmax(logits_k / tau)
    token_logprob      list[float], log p_k(t_k) of the sampled token
    vocab_size         int, the logits' last dimension
"""

from __future__ import annotations

import math
from typing import Any

from carl_engine.coherence import CARLWeights
from carl_engine.rewards.diversity import diversity_per_completion, nanmean

STAT_KWARGS = ("token_entropy", "token_logprob", "vocab_size")
LOGGED_PARTS = ("multiscale", "cloud", "discontinuity", "kuramoto_r")


class CarlReward:
    """The CARL composite per completion; None for an empty completion.

    Args:
        weights: the composite's weights (CARLWeights.paper() by default). With a positive
            diversity weight (the guarded preset) the group diversity term is part of it.

    Logs through `log_metric` (batch means over non-empty completions): carl/multiscale,
    carl/cloud, carl/discontinuity, carl/kuramoto_r, carl/phi_mean, carl/composite,
    carl/diversity.

    Raises (when called):
        ValueError: the statistics kwargs are missing (the trainer did not capture them).
    """

    __name__ = "carl"

    def __init__(self, weights: CARLWeights | None = None) -> None:
        self.weights = weights or CARLWeights.paper()

    def __call__(self, prompts: list, completions: list, completion_ids: list, **kwargs: Any) -> list[float | None]:
        missing = [k for k in STAT_KWARGS if kwargs.get(k) is None]
        if missing:
            raise ValueError(
                f"the carl reward needs {', '.join(missing)} per completion; train with CarlGRPOTrainer, "
                "which captures them during generation"
            )
        entropy, logprob, vocab = kwargs["token_entropy"], kwargs["token_logprob"], int(kwargs["vocab_size"][0])
        diversity = diversity_per_completion(prompts, completion_ids)
        scores, phi_mean = coherence_scores(entropy, logprob, vocab, self.weights, diversity)
        rewards = [None if not math.isfinite(v) else float(v) for v in scores["composite"]]
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            for part in LOGGED_PARTS:
                _log_mean(log_metric, f"carl/{part}", [float(v) for v in scores[part]], entropy)
            _log_mean(log_metric, "carl/composite", [float(v) for v in scores["composite"]], entropy)
            if math.isfinite(phi_mean):
                log_metric("carl/phi_mean", phi_mean)
            if math.isfinite(nanmean(diversity)):
                log_metric("carl/diversity", nanmean(diversity))
        return rewards


def coherence_scores(
    entropy: list[list[float]],
    logprob: list[list[float]],
    vocab_size: int,
    weights: CARLWeights,
    diversity: list[float | None] | None = None,
) -> tuple[dict[str, Any], float]:
    """CARL scores of ragged per-token statistics.

    Args:
        entropy: N rows of per-token entropy (nats), possibly of different lengths.
        logprob: N rows of sampled-token log-probabilities, the same lengths.
        vocab_size: V.
        weights: composite weights.
        diversity: N per-completion R_div values (needed when weights.diversity > 0).

    Returns:
        (scores, phi_mean): the `CoherenceField.scores` arrays ([N] numpy) and the mean Phi
        over every token of the batch (NaN when no token).
    """
    import numpy as np

    from carl_engine.coherence import CoherenceField

    width = max((len(row) for row in entropy), default=0)
    n = len(entropy)
    entropy_NT = np.zeros((n, max(width, 1)))
    logprob_NT = np.zeros((n, max(width, 1)))
    mask_NT = np.zeros((n, max(width, 1)), dtype=bool)
    for i, (h_row, lp_row) in enumerate(zip(entropy, logprob, strict=True)):
        entropy_NT[i, : len(h_row)] = h_row
        logprob_NT[i, : len(lp_row)] = lp_row
        mask_NT[i, : len(h_row)] = True
    # Rounding (e.g. a bf16 forward) can put a statistic a hair outside its range.
    entropy_NT = np.clip(entropy_NT, 0.0, math.log(vocab_size))
    logprob_NT = np.minimum(logprob_NT, 0.0)
    field = CoherenceField.from_stats(entropy_NT, logprob_NT, vocab_size, mask=mask_NT)
    scores = field.scores(weights, diversity=diversity if weights.diversity > 0 else None)
    tokens = int(mask_NT.sum())
    phi_mean = float(field.phi[mask_NT].sum() / tokens) if tokens else math.nan
    return scores, phi_mean


def _log_mean(log_metric: Any, name: str, values: list[float], entropy: list[list[float]]) -> None:
    kept = [v for v, row in zip(values, entropy) if row and math.isfinite(v)]
    if kept:
        log_metric(name, sum(kept) / len(kept))
