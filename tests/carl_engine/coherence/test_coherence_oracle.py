"""The vectorised field agrees with the straightforward per-sample numpy transcription of the
spec (carl_engine.coherence.reference) on random inputs, to 1e-5."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carl_engine.coherence import SCORE_KEYS, CARLWeights, CoherenceField
from carl_engine.coherence import reference as ref

CASES = [  # (B, T, V, temperature, mask kind, dtype)
    (1, 1, 2, 1.0, "none", np.float64),
    (3, 17, 11, 0.7, "ragged", np.float64),
    (5, 64, 100, 1.0, "holes", np.float32),
    (2, 130, 7, 1.7, "ragged", np.float32),
    (4, 33, 257, 0.3, "holes", np.float64),
    (6, 8, 3, 1.0, "empty_rows", np.float32),
]


def random_batch(B, T, V, mask_kind, dtype, seed):
    rng = np.random.default_rng(seed)
    spread = rng.uniform(0.05, 6.0, size=(B, T, 1))  # from near-uniform to peaked rows
    logits = (rng.normal(size=(B, T, V)) * spread).astype(dtype)
    logits[rng.random((B, T, V)) < 0.1] = -np.inf  # some masked-out vocabulary
    logits[..., 0] = np.maximum(logits[..., 0], 0)  # at least one finite logit per row
    ids = rng.integers(0, V, size=(B, T))
    ids = np.where(np.isfinite(np.take_along_axis(logits, ids[..., None], -1)[..., 0]), ids, 0)
    if mask_kind == "none":
        mask = np.ones((B, T), dtype=bool)
    elif mask_kind == "ragged":
        mask = np.arange(T) < rng.integers(0, T + 1, size=(B, 1))
    elif mask_kind == "holes":
        mask = rng.random((B, T)) < 0.8
    else:
        mask = np.arange(T) < rng.integers(0, T + 1, size=(B, 1))
        mask[::2] = False
    return logits, ids, mask


def assert_agrees(ours, expected):
    for key in SCORE_KEYS:
        want = np.array([row[key] for row in expected], dtype=np.float64)
        got = np.asarray(ours[key], dtype=np.float64)
        assert np.array_equal(np.isnan(got), np.isnan(want)), key
        np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=0, atol=1e-5, err_msg=key)


@pytest.mark.parametrize(("B", "T", "V", "tau", "mask_kind", "dtype"), CASES)
def test_from_logits_agrees_with_the_per_sample_reference(B, T, V, tau, mask_kind, dtype):
    logits, ids, mask = random_batch(B, T, V, mask_kind, dtype, seed=B * 1000 + T)
    ours = CoherenceField.from_logits(logits, ids, mask, temperature=tau, chunk_bytes=V * 4 * 2 * 5)
    # the oracle computes in float64 from the same numbers
    assert_agrees(ours.scores(), ref.batch_scores_from_logits(logits.astype(np.float64), ids, mask, tau))


@pytest.mark.parametrize(("B", "T", "V", "tau", "mask_kind", "dtype"), CASES)
def test_per_token_statistics_agree_with_the_reference(B, T, V, tau, mask_kind, dtype):
    logits, ids, mask = random_batch(B, T, V, mask_kind, dtype, seed=B * 1000 + T + 1)
    f = CoherenceField.from_logits(logits, ids, mask, temperature=tau)
    for b in range(B):
        entropy, logprob = ref.token_stats(logits[b][mask[b]].astype(np.float64), ids[b][mask[b]], tau)
        np.testing.assert_allclose(f.entropy[b][mask[b]], entropy, atol=1e-5)
        np.testing.assert_allclose(f.selected_prob[b][mask[b]], np.exp(logprob), atol=1e-5)
        np.testing.assert_allclose(f.phi[b][mask[b]], np.clip(1 - entropy / math.log(V), 0, 1), atol=1e-5)
        assert (f.phi[b][~mask[b]] == 0).all()


@pytest.mark.parametrize("seed", range(4))
def test_from_stats_agrees_with_the_reference_for_both_presets(seed):
    rng = np.random.default_rng(seed)
    B, T, V = 8, int(rng.integers(1, 300)), int(rng.integers(2, 50_000))
    entropy = rng.uniform(0, math.log(V), size=(B, T)) * (rng.random((B, 1)) < 0.5)  # some rows all-delta
    entropy[rng.random((B, T)) < 0.2] = 0.0
    logprob = np.log(rng.uniform(1e-6, 1, size=(B, T)))
    mask = np.arange(T) < rng.integers(0, T + 1, size=(B, 1))
    f = CoherenceField.from_stats(entropy, logprob, V, mask)
    assert_agrees(f.scores(), ref.batch_scores(entropy, logprob, V, mask))
    diversity = rng.uniform(0, 1, size=B)
    guarded = f.scores(CARLWeights.guarded(), diversity=diversity)["composite"]
    expected = [ref.sample_scores(h[m], lp[m], V, CARLWeights.guarded(), d)["composite"]
                for h, lp, m, d in zip(entropy, logprob, mask, diversity)]  # fmt: skip
    np.testing.assert_allclose(guarded, expected, atol=1e-5)


def test_scale_coherence_agrees_with_the_reference_for_long_samples():
    rng = np.random.default_rng(9)
    T = 3000
    phi = np.clip(np.cumsum(rng.normal(scale=0.05, size=(3, T)), axis=1) % 1.0, 0, 1)
    lengths = np.array([T, 1025, 7])
    mask = np.arange(T) < lengths[:, None]
    f = CoherenceField.from_stats((1 - phi) * math.log(100), np.zeros((3, T)), 100, mask)
    table = f.scale_coherence()
    for b, n in enumerate(lengths):
        expected = ref.scale_coherence(phi[b, :n])
        np.testing.assert_allclose(table[b, : len(expected)], expected, atol=1e-9)
        assert np.isnan(table[b, len(expected):]).all()


def test_scale_coherence_of_constant_runs_stays_within_the_prefix_sum_bound():
    # Block variances come from float64 prefix sums (E[x²] - E[x]²): a block of equal values
    # (true std 0) keeps a rounding residue of at most ~sqrt(1e-16 * T / b) in its std.
    rng = np.random.default_rng(11)
    T = 2**14
    runs = rng.uniform(0, 1, size=(2, T // 8)).repeat(8, axis=1)  # Φ constant over runs of 8
    runs[1, : T // 2] = 1.0  # and a long stretch of fully confident tokens (Φ = 1)
    f = CoherenceField.from_stats((1 - runs) * math.log(100), np.zeros((2, T)), 100)
    table = f.scale_coherence()
    for b in range(2):
        expected = ref.scale_coherence(runs[b])
        assert expected[:4].tolist() == [1.0, 1.0, 1.0, 1.0]  # blocks of <= 8 lie inside a run
        np.testing.assert_allclose(table[b], expected, rtol=0, atol=2e-6)
