"""Every component and edge case of the coherence field, against small cases worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from carl_engine.coherence import SCORE_KEYS, CARLWeights, CoherenceField

V = 16
LOG_V = math.log(V)
SQ2 = math.sqrt(2)


def field(phis, probs=None, mask=None):
    """A field whose tokens have exactly the order parameters `phis` (rows padded with 0)."""
    phi = torch.tensor(phis, dtype=torch.float64).reshape(len(phis), -1)
    prob = torch.full_like(phi, 0.5) if probs is None else torch.tensor(probs, dtype=torch.float64).reshape(phi.shape)
    return CoherenceField.from_stats((1 - phi) * LOG_V, torch.log(prob), V, mask=mask)


def one(field_, key, sample=0):
    return float(field_.scores()[key][sample])


def test_multiscale_averages_block_std_over_scales_with_weights_root_two_to_the_j():
    f = field([[0.0, 1.0, 0.0, 1.0]])
    # C_0 = 1; blocks of 2 and of 4 all have population std 0.5 -> C_1 = C_2 = 0.5
    assert f.scale_coherence()[0].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert one(f, "multiscale") == pytest.approx((1 + 0.5 * SQ2 + 0.5 * 2) / (1 + SQ2 + 2))


def test_multiscale_drops_the_tail_beyond_the_last_whole_block():
    with_tail = field([[0.0, 1.0, 0.0, 1.0, 0.3]])
    assert with_tail.scale_coherence()[0].tolist() == pytest.approx([1.0, 0.5, 0.5])
    three = field([[0.2, 0.4, 0.9]])  # one block of 2: std 0.1; the 0.9 is dropped
    assert three.scale_coherence()[0].tolist() == pytest.approx([1.0, 0.9])
    assert one(three, "multiscale") == pytest.approx((1 + 0.9 * SQ2) / (1 + SQ2))


def test_scale_coherence_is_nan_where_a_scale_does_not_exist_for_a_sample():
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    f = field([[0.1, 0.3, 0.1, 0.3], [0.5, 0.5, 0.0, 0.0]], mask=mask)
    table = f.scale_coherence()
    assert table.shape == (2, 3)
    assert table[0].tolist() == pytest.approx([1.0, 0.9, 0.9])
    assert table[1, :2].tolist() == pytest.approx([1.0, 1.0]) and math.isnan(table[1, 2])


def test_cloud_is_the_mean_of_selected_probability_times_phi():
    f = field([[0.5, 1.0]], probs=[[0.5, 0.25]])
    assert one(f, "cloud") == pytest.approx(0.25)


def test_discontinuity_scores_commitments_and_dissolutions_by_the_phi_before_them():
    # deltas: +0.4 (from 0.2: 0.8), +0.3 (from 0.6: 0.3), -0.1 (from 0.9: 0.2),
    # -0.5 (from 0.8: 0.2), +0.01 (no event), -0.21 (from 0.31: 0.5)
    f = field([[0.2, 0.6, 0.9, 0.8, 0.3, 0.31, 0.1]])
    s = f.scores()
    assert float(s["discontinuity"][0]) == pytest.approx((0.8 + 0.3 + 0.2 + 0.2 + 0.5) / 5)
    assert int(s["n_crystallizations"][0]) == 2 and int(s["n_meltings"][0]) == 3
    assert float(s["defect_density"][0]) == pytest.approx(5 / 7)


def test_jumps_within_the_defect_threshold_are_no_events_and_score_one_half():
    f = field([[0.5, 0.52, 0.5, 0.529]])
    s = f.scores()
    assert float(s["discontinuity"][0]) == 0.5
    assert int(s["n_crystallizations"][0]) == 0 and int(s["n_meltings"][0]) == 0
    assert float(s["defect_density"][0]) == 0.0


def test_kuramoto_order_is_the_length_of_the_mean_phase_vector():
    assert one(field([[0.0, 1.0]]), "kuramoto_r") == pytest.approx(0.0, abs=1e-12)
    assert one(field([[0.5, 0.5]]), "kuramoto_r") == pytest.approx(1.0)
    assert one(field([[0.0, 0.5]]), "kuramoto_r") == pytest.approx(SQ2 / 2)


def test_surprisal_mean_is_the_mean_negative_log_selected_probability():
    f = field([[0.3, 0.7]], probs=[[0.5, 0.25]])
    assert one(f, "surprisal_mean") == pytest.approx(1.5 * math.log(2))


def test_composite_uses_the_weights_as_given():
    f = field([[0.2, 0.6, 0.9]], probs=[[0.9, 0.6, 0.3]])
    s = f.scores()
    parts = float(s["multiscale"][0]), float(s["cloud"][0]), float(s["discontinuity"][0])
    assert float(s["composite"][0]) == pytest.approx(0.5 * parts[0] + 0.3 * parts[1] + 0.2 * parts[2])
    unnormalised = f.scores(CARLWeights(1.0, 1.0, 1.0))["composite"]
    assert float(unnormalised[0]) == pytest.approx(sum(parts))


def test_guarded_composite_adds_the_weighted_diversity_and_needs_it():
    f = field([[0.2, 0.6], [0.9, 0.1]])
    base = f.scores(CARLWeights(0.4, 0.25, 0.15))["composite"]
    guarded = f.scores(CARLWeights.guarded(), diversity=torch.tensor([1.0, 0.25]))["composite"]
    assert guarded.tolist() == pytest.approx([float(base[0]) + 0.2, float(base[1]) + 0.05])
    from_list = f.scores(CARLWeights.guarded(), diversity=[0.5, None])["composite"]
    assert float(from_list[0]) == pytest.approx(float(base[0]) + 0.1) and math.isnan(float(from_list[1]))
    with pytest.raises(ValueError, match="diversity"):
        f.scores(CARLWeights.guarded())
    with pytest.raises(ValueError, match="diversity"):
        f.scores(CARLWeights.guarded(), diversity=[0.5])


def test_the_paper_composite_ignores_diversity():
    f = field([[0.2, 0.6]])
    assert f.scores(diversity=[0.9])["composite"].tolist() == f.scores()["composite"].tolist()


def test_an_empty_completion_has_undefined_rewards_and_empty_diagnostics():
    f = CoherenceField.from_stats(torch.zeros(2, 0), torch.zeros(2, 0), V)
    s = f.scores()
    for key in ("multiscale", "cloud", "discontinuity", "composite", "defect_density", "surprisal_mean"):
        assert torch.isnan(s[key]).all(), key
    assert s["kuramoto_r"].tolist() == [0.0, 0.0] and s["n_crystallizations"].tolist() == [0, 0]
    assert f.scale_coherence().shape == (2, 0)
    assert f.lengths.tolist() == [0, 0]


def test_a_single_token_has_full_multiscale_and_neutral_discontinuity():
    s = field([[0.4]], probs=[[0.5]]).scores()
    assert float(s["multiscale"][0]) == 1.0 and float(s["discontinuity"][0]) == 0.5
    assert float(s["cloud"][0]) == pytest.approx(0.2) and float(s["kuramoto_r"][0]) == 0.0


def test_two_tokens():
    s = field([[0.2, 0.6]]).scores()
    assert float(s["multiscale"][0]) == pytest.approx((1 + 0.8 * SQ2) / (1 + SQ2))
    assert float(s["discontinuity"][0]) == pytest.approx(0.8)
    assert float(s["kuramoto_r"][0]) == pytest.approx(math.cos(0.2 * math.pi))


def test_an_all_masked_row_is_empty_and_leaves_its_neighbours_alone():
    mask = torch.tensor([[True, True, True], [False, False, False]])
    s = field([[0.2, 0.6, 0.9], [0.5, 0.5, 0.5]], mask=mask).scores()
    alone = field([[0.2, 0.6, 0.9]]).scores()
    assert math.isnan(float(s["composite"][1])) and float(s["kuramoto_r"][1]) == 0.0
    for key in SCORE_KEYS:
        assert float(s[key][0]) == pytest.approx(float(alone[key][0])), key


def test_ragged_masks_and_holes_score_only_the_real_tokens_in_order():
    phis = [0.2, 0.6, 0.9, 0.3]
    mask = torch.tensor([[True] * 4 + [False] * 2, [True, False, True, True, False, True]])
    padded = field([phis + [0.99, 0.0], [0.2, 0.7, 0.6, 0.9, 0.0, 0.3]], mask=mask)
    alone = field([phis]).scores()
    scores = padded.scores()
    for key in SCORE_KEYS:
        assert scores[key].tolist() == pytest.approx([float(alone[key][0])] * 2), key
    assert padded.lengths.tolist() == [4, 4]
    assert padded.phi[1].tolist() == pytest.approx([0.2, 0.0, 0.6, 0.9, 0.0, 0.3])


def test_from_logits_gives_entropy_phi_and_selected_probability():
    logits = torch.tensor([[[0.0, math.log(3.0), -math.inf, -math.inf], [0.0, 0.0, -math.inf, -math.inf],
                            [1.0, 1.0, 1.0, 1.0]]])  # fmt: skip
    f = CoherenceField.from_logits(logits, torch.tensor([[1, 0, 3]]))
    h0 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert f.entropy[0].tolist() == pytest.approx([h0, math.log(2), math.log(4)])
    assert f.phi[0].tolist() == pytest.approx([1 - h0 / math.log(4), 0.5, 0.0], abs=1e-7)
    assert f.selected_prob[0].tolist() == pytest.approx([0.75, 0.5, 0.25])


def test_from_logits_samples_at_the_given_temperature():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    f = CoherenceField.from_logits(logits, torch.tensor([[1]]), temperature=0.5)
    # softmax(logits / 0.5) = [1, 9] / 10
    assert float(f.selected_prob[0, 0]) == pytest.approx(0.9)
    assert float(f.entropy[0, 0]) == pytest.approx(-(0.1 * math.log(0.1) + 0.9 * math.log(0.9)))


def test_a_delta_distribution_has_phi_one_and_a_uniform_one_phi_zero():
    delta = torch.full((1, 1, 8), -math.inf)
    delta[0, 0, 5] = 3.0
    f = CoherenceField.from_logits(torch.cat([delta, torch.zeros(1, 1, 8)], dim=1), torch.tensor([[5, 2]]))
    assert f.phi[0].tolist() == pytest.approx([1.0, 0.0], abs=1e-7)
    assert float(f.selected_prob[0, 0]) == 1.0


def test_chunking_layout_and_dtype_do_not_change_the_result():
    gen = torch.Generator().manual_seed(0)
    full = torch.randn(3, 9, 41, generator=gen) * 3
    logits = full[:, 1:, :]  # not viewable as [B*T, V]
    ids = torch.randint(0, 41, (3, 8), generator=gen)
    mask = torch.rand(3, 8, generator=gen) < 0.7
    base = CoherenceField.from_logits(logits.contiguous(), ids, mask, temperature=0.8)
    for variant in (
        CoherenceField.from_logits(logits, ids, mask, temperature=0.8),
        CoherenceField.from_logits(logits.contiguous(), ids, mask, temperature=0.8, chunk_bytes=1),
        CoherenceField.from_logits(logits.to(torch.float64), ids, mask, temperature=0.8, chunk_bytes=4000),
        CoherenceField.from_logits(logits.contiguous(), ids, None, temperature=0.8, chunk_bytes=1000),
    ):
        same = variant.mask == base.mask
        assert torch.allclose(variant.entropy[same & base.mask], base.entropy[same & base.mask], atol=1e-5)
    half = CoherenceField.from_logits(logits.to(torch.bfloat16), ids, mask, temperature=0.8, chunk_bytes=3000)
    assert torch.allclose(half.entropy, base.entropy, atol=0.05)
    odd_layouts = (
        logits.transpose(0, 1).contiguous().transpose(0, 1),  # batch stride < token stride
        logits[:, :1].expand(3, 8, 41),  # one row repeated along T (token stride 0)
    )
    for odd in odd_layouts:
        got = CoherenceField.from_logits(odd, ids, mask, temperature=0.8, chunk_bytes=1000)
        want = CoherenceField.from_logits(odd.contiguous(), ids, mask, temperature=0.8)
        assert torch.allclose(got.entropy, want.entropy, atol=1e-6)
        assert torch.allclose(got.selected_prob, want.selected_prob, atol=1e-6)


def test_numpy_in_gives_numpy_out_and_torch_in_gives_torch_out():
    rng = np.random.default_rng(1)
    f = CoherenceField.from_logits(rng.normal(size=(2, 3, 5)).astype(np.float32), rng.integers(0, 5, (2, 3)))
    assert isinstance(f.phi, np.ndarray) and isinstance(f.lengths, np.ndarray)
    assert all(isinstance(v, np.ndarray) for v in f.scores().values())
    assert isinstance(f.scale_coherence(), np.ndarray)
    g = CoherenceField.from_stats(torch.zeros(2, 3), torch.zeros(2, 3), 5)
    assert all(isinstance(v, torch.Tensor) for v in g.scores().values())
    assert set(g.scores()) == set(SCORE_KEYS)


def test_an_attention_style_integer_mask_is_accepted():
    ints = CoherenceField.from_stats(torch.zeros(1, 3), torch.zeros(1, 3), 5, mask=torch.tensor([[1, 1, 0]]))
    assert ints.mask.tolist() == [[True, True, False]] and ints.lengths.tolist() == [2]
