"""Bad input is refused with a ValueError that names the argument, and the sample and position."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from carl_engine.coherence import CARLWeights, CoherenceField, group_diversity
from carl_engine.errors import InvalidSpecError


def logits_and_ids(B=2, T=4, V=6):
    gen = torch.Generator().manual_seed(3)
    return torch.randn(B, T, V, generator=gen), torch.randint(0, V, (B, T), generator=gen)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda lg, ids: (lg[0], ids), "logits"),  # rank 2
        (lambda lg, ids: (lg, ids[:, :3]), "token_ids"),  # T mismatch
        (lambda lg, ids: (lg, ids[0]), "token_ids"),  # rank 1
        (lambda lg, ids: (lg.to(torch.int64), ids), "logits"),  # not floating
        (lambda lg, ids: (lg, ids.to(torch.float32)), "token_ids"),  # not integers
        (lambda lg, ids: (lg[:, :, :1], ids * 0), "vocab_size"),  # V < 2
    ],
)
def test_shapes_ranks_and_dtypes_are_checked(make, field):
    with pytest.raises(ValueError, match=field) as err:
        CoherenceField.from_logits(*make(*logits_and_ids()))
    assert isinstance(err.value, InvalidSpecError) and err.value.field == field


def test_a_mask_of_the_wrong_shape_or_kind_is_refused():
    logits, ids = logits_and_ids()
    with pytest.raises(ValueError, match="mask"):
        CoherenceField.from_logits(logits, ids, mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        CoherenceField.from_logits(logits, ids, mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="mask.*sample 1, position 2"):
        CoherenceField.from_logits(logits, ids, mask=torch.tensor([[1, 1, 1, 1], [1, 1, 2, 1]]))


def test_token_ids_outside_the_vocabulary_name_the_sample_and_position():
    logits, ids = logits_and_ids()
    ids[1, 2] = 6
    with pytest.raises(ValueError, match=r"token_ids.*\[0, 6\).*sample 1, position 2 holds 6"):
        CoherenceField.from_logits(logits, ids)
    ids[1, 2] = -1
    with pytest.raises(ValueError, match="sample 1, position 2 holds -1"):
        CoherenceField.from_logits(logits, ids)


def test_padding_ids_at_masked_positions_are_fine():
    logits, ids = logits_and_ids()
    ids[1, 3] = -100
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 3] = False
    assert CoherenceField.from_logits(logits, ids, mask).lengths.tolist() == [4, 3]


@pytest.mark.parametrize(("value", "kind"), [(math.nan, "NaN"), (math.inf, r"\+inf")])
def test_non_finite_logits_name_sample_position_and_vocab_index(value, kind):
    logits, ids = logits_and_ids()
    logits[1, 2, 3] = value
    with pytest.raises(ValueError, match=rf"logits.*{kind} at sample 1, position 2, vocab index 3"):
        CoherenceField.from_logits(logits, ids)
    with pytest.raises(ValueError, match=rf"{kind} at sample 1, position 2, vocab index 3"):
        CoherenceField.from_logits(logits[:, :, :], ids, chunk_bytes=1, mask=torch.rand(2, 4) < 2)


def test_non_finite_logits_at_masked_positions_are_ignored():
    logits, ids = logits_and_ids()
    logits[1, 2, 3] = math.nan
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 2] = False
    assert not torch.isnan(CoherenceField.from_logits(logits, ids, mask).scores()["composite"]).any()


def test_a_row_with_every_logit_minus_infinity_is_refused():
    logits, ids = logits_and_ids()
    logits[0, 1] = -math.inf
    with pytest.raises(ValueError, match="every logit is -inf at sample 0, position 1"):
        CoherenceField.from_logits(logits, ids)


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, math.inf, "1"])
def test_temperature_must_be_positive_and_finite(temperature):
    with pytest.raises(ValueError, match="temperature"):
        CoherenceField.from_logits(*logits_and_ids(), temperature=temperature)


def test_stats_are_checked_with_sample_and_position():
    h, lp = torch.full((2, 3), 0.5), torch.full((2, 3), -0.5)
    with pytest.raises(ValueError, match="selected_logprob"):
        CoherenceField.from_stats(h, lp[:, :2], 8)
    with pytest.raises(ValueError, match="vocab_size"):
        CoherenceField.from_stats(h, lp, 1)
    with pytest.raises(ValueError, match="vocab_size"):
        CoherenceField.from_stats(h, lp, 8.0)
    bad = h.clone()
    bad[1, 2] = math.nan
    with pytest.raises(ValueError, match="entropy.*sample 1, position 2"):
        CoherenceField.from_stats(bad, lp, 8)
    bad[1, 2] = math.log(8) + 0.01  # more than a uniform distribution can have
    with pytest.raises(ValueError, match="entropy.*sample 1, position 2"):
        CoherenceField.from_stats(bad, lp, 8)
    bad_lp = lp.clone()
    bad_lp[0, 1] = 0.2
    with pytest.raises(ValueError, match="selected_logprob.*sample 0, position 1"):
        CoherenceField.from_stats(h, bad_lp, 8)
    bad_lp[0, 1] = -math.inf  # a zero-probability token is legal
    assert math.isinf(float(CoherenceField.from_stats(h, bad_lp, 8).scores()["surprisal_mean"][0]))


def test_inputs_that_are_not_arrays_are_refused():
    with pytest.raises(ValueError, match="logits"):
        CoherenceField.from_logits("logits", torch.zeros(1, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="entropy"):
        CoherenceField.from_stats(np.array([["a"]]), np.zeros((1, 1)), 4)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cloud": -0.1}, "weights.cloud"),
        ({"multiscale": math.nan}, "weights.multiscale"),
        ({"diversity": math.inf}, "weights.diversity"),
        ({"discontinuity": "0.2"}, "weights.discontinuity"),
        ({"multiscale": 0, "cloud": 0, "discontinuity": 0}, "weights"),
    ],
)
def test_weights_must_be_non_negative_and_not_all_zero(kwargs, field):
    with pytest.raises(ValueError, match=field) as err:
        CARLWeights(**kwargs)
    assert err.value.field == field


def test_scores_want_carl_weights():
    f = CoherenceField.from_stats(torch.zeros(1, 2), torch.zeros(1, 2), 4)
    with pytest.raises(ValueError, match="weights"):
        f.scores({"multiscale": 1.0})


@pytest.mark.parametrize("group_size", [0, -2, 3, 1.5, True])
def test_group_size_must_be_a_positive_divisor_of_the_batch(group_size):
    with pytest.raises(ValueError, match="group_size"):
        group_diversity([[1], [2], [3], [4]], group_size)


def test_completions_must_be_sequences_of_integer_ids():
    with pytest.raises(ValueError, match=r"token_id_lists\[1\]"):
        group_diversity([[1, 2], [1.5, 2]], 2)
