"""Properties of the field that hold for any input (hypothesis, bounded example counts)."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from carl_engine.coherence import SCORE_KEYS, CoherenceField
from carl_engine.coherence import reference as ref

FEW = settings(max_examples=75, deadline=None)
finite_logit = st.floats(-30, 30, allow_nan=False, width=64)
small = st.floats(-5, 5)


@st.composite
def batches(draw, max_b=4, max_t=12, vocab=st.integers(2, 9)):
    """(logits [B,T,V] float64 with some -inf, token ids, ragged mask)."""
    B, T, V = draw(st.integers(1, max_b)), draw(st.integers(0, max_t)), draw(vocab)
    logits = draw(hnp.arrays(np.float64, (B, T, V), elements=finite_logit))
    dropped = draw(hnp.arrays(np.bool_, (B, T, V)))
    dropped[..., 0] = False  # at least one finite logit per row
    logits[dropped] = -np.inf
    ids = draw(hnp.arrays(np.int64, (B, T), elements=st.integers(0, V - 1)))
    ids = np.where(dropped[np.arange(B)[:, None], np.arange(T)[None, :], ids], 0, ids)  # sampled tokens have p > 0
    lengths = draw(hnp.arrays(np.int64, (B,), elements=st.integers(0, T)))
    return logits, ids, np.arange(T) < lengths[:, None]


def close(a, b, atol=1e-9):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.array_equal(np.isnan(a), np.isnan(b)) and np.allclose(a[~np.isnan(a)], b[~np.isnan(b)], atol=atol)


@FEW
@given(batches(), st.floats(0.1, 5.0))
def test_phi_lies_in_zero_one(batch, temperature):
    logits, ids, mask = batch
    phi = CoherenceField.from_logits(logits, ids, mask, temperature=temperature).phi
    assert ((phi >= 0) & (phi <= 1)).all()


@FEW
@given(st.integers(1, 6), st.integers(2, 300), st.floats(-1e4, 1e4), st.floats(0.1, 5.0))
def test_uniform_logits_give_phi_zero(T, V, level, temperature):
    logits = torch.full((1, T, V), level, dtype=torch.float64)
    f = CoherenceField.from_logits(logits, torch.zeros(1, T, dtype=torch.int64), temperature=temperature)
    assert torch.allclose(f.phi, torch.zeros(1, T, dtype=torch.float64), atol=1e-9)


@FEW
@given(st.integers(2, 300), st.integers(0, 299), st.floats(60.0, 1e4), hnp.arrays(np.float64, 300, elements=small))
def test_near_one_hot_logits_give_phi_near_one(V, hot, gap, rest):
    logits = torch.from_numpy(rest[:V].copy()).reshape(1, 1, V)
    logits[0, 0, hot % V] = gap
    f = CoherenceField.from_logits(logits, torch.tensor([[hot % V]]))
    assert float(f.phi[0, 0]) > 1 - 1e-9  # every other token has p < e^-55
    assert float(f.selected_prob[0, 0]) > 1 - 1e-9


@FEW
@given(batches(max_b=3), st.integers(1, 5), st.data())
def test_padding_a_sample_does_not_change_its_scores(batch, extra, data):
    logits, ids, mask = batch
    B, T, V = logits.shape
    junk = data.draw(st.sampled_from([np.nan, np.inf, 0.0, 7.0]))
    padded_logits = np.concatenate([logits, np.full((B, extra, V), junk)], axis=1)
    padded_ids = np.concatenate([ids, np.full((B, extra), -100)], axis=1)
    padded_mask = np.concatenate([mask, np.zeros((B, extra), dtype=bool)], axis=1)
    base = CoherenceField.from_logits(logits, ids, mask).scores()
    padded = CoherenceField.from_logits(padded_logits, padded_ids, padded_mask).scores()
    for key in SCORE_KEYS:
        assert close(base[key], padded[key]), key


@FEW
@given(batches(vocab=st.sampled_from([2, 3, 5, 6, 7, 8])), st.floats(0.2, 3.0))
def test_from_logits_equals_from_stats_of_the_same_distribution(batch, temperature):
    logits, ids, mask = batch
    B, T, V = logits.shape
    entropy, logprob = np.zeros((B, T)), np.zeros((B, T))
    for b in range(B):  # the distribution's statistics, computed independently
        entropy[b, mask[b]], logprob[b, mask[b]] = ref.token_stats(logits[b][mask[b]], ids[b][mask[b]], temperature)
    direct = CoherenceField.from_logits(logits, ids, mask, temperature=temperature)
    stats = CoherenceField.from_stats(entropy, logprob, V, mask)
    assert close(direct.phi, stats.phi, atol=1e-9)
    for key in SCORE_KEYS:
        assert close(direct.scores()[key], stats.scores()[key], atol=1e-6), key


@FEW
@given(batches(), st.randoms(use_true_random=False))
def test_permuting_the_batch_permutes_every_output(batch, random):
    logits, ids, mask = batch
    order = list(range(len(logits)))
    random.shuffle(order)
    base = CoherenceField.from_logits(logits, ids, mask)
    shuffled = CoherenceField.from_logits(logits[order], ids[order], mask[order])
    assert close(base.phi[order], shuffled.phi)
    assert close(base.scale_coherence()[order], shuffled.scale_coherence())
    for key in SCORE_KEYS:
        assert close(base.scores()[key][order], shuffled.scores()[key]), key


@FEW
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(0, 40)), elements=st.floats(0, 1)))
def test_rewards_lie_in_zero_one_and_kuramoto_too(phi):
    f = CoherenceField.from_stats((1 - phi) * math.log(50), np.log(np.full(phi.shape, 0.5)), 50)
    s = f.scores()
    for key in ("multiscale", "cloud", "discontinuity", "composite", "kuramoto_r"):
        values = s[key][~np.isnan(s[key])]
        assert ((values >= -1e-12) & (values <= 1 + 1e-12)).all(), key
