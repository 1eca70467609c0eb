"""A straightforward per-sample numpy transcription of CARL_MATH.md.

It exists to check and to measure `CoherenceField`: the tests use it as an oracle on random
inputs and `benchmarks/coherence_throughput.py` as the baseline. It is written to be read
against the spec line by line (one sample at a time, formulas as written), not to be fast.
Nothing in the engine calls it.
"""

from __future__ import annotations

import math

import numpy as np

from carl_engine.coherence.weights import CARLWeights

DEFECT_THRESHOLD = 0.03
MAX_SCALES = 16


def token_stats(
    logits_TV: np.ndarray, token_ids_T: np.ndarray, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Entropy (nats) and sampled-token log-probability of one sample's real tokens.

    Computes in the logits' precision (float32 stays float32), log-sum-exp form.
    """
    z = logits_TV / np.asarray(temperature, dtype=logits_TV.dtype)
    z = z - z.max(axis=-1, keepdims=True)
    total = np.exp(z).sum(axis=-1)
    log_total = np.log(total)
    logp = z - log_total[:, None]
    p = np.exp(logp)
    plogp = np.where(p > 0, p * np.where(np.isfinite(logp), logp, 0), 0)
    entropy = -plogp.sum(axis=-1)
    selected = logp[np.arange(len(token_ids_T)), token_ids_T]
    return entropy, selected


def sample_scores(entropy_T: np.ndarray, logprob_T: np.ndarray, vocab_size: int,
                  weights: CARLWeights | None = None, diversity: float | None = None) -> dict[str, float]:  # fmt: skip
    """Every score of one sample from its real tokens' entropy and selected log-probability."""
    weights = weights or CARLWeights()
    entropy_T = np.asarray(entropy_T, dtype=np.float64)
    T = len(entropy_T)
    phi = np.clip(1.0 - entropy_T / math.log(vocab_size), 0.0, 1.0)
    s = np.exp(np.asarray(logprob_T, dtype=np.float64))
    scales = scale_coherence(phi)
    out: dict[str, float] = {}
    if T == 0:
        nan = math.nan
        out.update(multiscale=nan, cloud=nan, discontinuity=nan, surprisal_mean=nan, defect_density=nan)
        out.update(kuramoto_r=0.0, n_crystallizations=0, n_meltings=0, composite=nan)
        return out
    w = np.array([2 ** (j / 2) for j in range(len(scales))])
    out["multiscale"] = float((w * scales).sum() / w.sum())
    out["cloud"] = float(np.mean(s * phi))
    out["surprisal_mean"] = float(np.mean(-np.asarray(logprob_T, dtype=np.float64)))
    delta = np.diff(phi)
    events = []
    for k, d in enumerate(delta):
        if d > DEFECT_THRESHOLD:
            events.append(0.8 if phi[k] < 0.5 else 0.3)
        elif d < -DEFECT_THRESHOLD:
            events.append(0.2 if phi[k] > 0.7 else 0.5)
    out["discontinuity"] = float(np.mean(events)) if events else 0.5
    out["n_crystallizations"] = int((delta > DEFECT_THRESHOLD).sum())
    out["n_meltings"] = int((delta < -DEFECT_THRESHOLD).sum())
    out["defect_density"] = len(events) / T
    out["kuramoto_r"] = float(abs(np.mean(np.exp(1j * np.pi * phi)))) if T >= 2 else 0.0
    composite = weights.multiscale * out["multiscale"] + weights.cloud * out["cloud"]
    composite += weights.discontinuity * out["discontinuity"]
    if weights.diversity > 0:
        composite += weights.diversity * (math.nan if diversity is None else diversity)
    out["composite"] = composite
    return out


def scale_coherence(phi_T: np.ndarray) -> np.ndarray:
    """C_j for j = 0 .. min(floor(log2 T), 15): 1 - mean block population std, clipped."""
    T = len(phi_T)
    if T == 0:
        return np.zeros(0)
    out = []
    for j in range(min(int(math.log2(T)) + 1, MAX_SCALES)):
        size = 2**j
        n = T // size
        blocks = phi_T[: n * size].reshape(n, size)
        out.append(float(np.clip(1.0 - blocks.std(axis=1, ddof=0).mean(), 0.0, 1.0)))
    return np.array(out)


def batch_scores(entropy_BT: np.ndarray, logprob_BT: np.ndarray, vocab_size: int, mask_BT: np.ndarray | None = None,
                 weights: CARLWeights | None = None) -> list[dict[str, float]]:  # fmt: skip
    """`sample_scores` for each sample in turn, keeping only its masked-in tokens."""
    mask_BT = np.ones(entropy_BT.shape, dtype=bool) if mask_BT is None else np.asarray(mask_BT, dtype=bool)
    return [sample_scores(h[m], lp[m], vocab_size, weights) for h, lp, m in zip(entropy_BT, logprob_BT, mask_BT)]


def batch_scores_from_logits(
    logits_BTV: np.ndarray,
    token_ids_BT: np.ndarray,
    mask_BT: np.ndarray | None = None,
    temperature: float = 1.0,
    weights: CARLWeights | None = None,
) -> list[dict[str, float]]:
    """Per sample: token statistics of its real tokens, then `sample_scores`."""
    B, T, V = logits_BTV.shape
    mask_BT = np.ones((B, T), dtype=bool) if mask_BT is None else np.asarray(mask_BT, dtype=bool)
    out = []
    for logits, ids, m in zip(logits_BTV, token_ids_BT, mask_BT):
        entropy, logprob = token_stats(logits[m], ids[m], temperature)
        out.append(sample_scores(entropy, logprob, V, weights))
    return out
