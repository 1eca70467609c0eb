"""Group diversity and the weight presets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from carl_engine.coherence import CARLWeights, group_diversity


def test_a_collapsed_group_has_zero_diversity_and_a_varied_one_more():
    collapsed = group_diversity([[5, 6, 7, 8]] * 4, group_size=4)
    assert collapsed == [0.0, 0.0, 0.0, 0.0]
    varied = group_diversity([[1, 2, 3], [1, 2, 4], [9, 8, 7], [7, 8, 9]], group_size=4)
    assert all(v > 0.5 for v in varied)


def test_diversity_is_one_minus_the_mean_bigram_cosine_to_the_rest_of_the_group():
    # bigrams: a = {12, 23}, b = {12, 24}, c = {12, 23}
    # cos(a,b) = 1/2, cos(a,c) = 1, cos(b,c) = 1/2
    got = group_diversity([[1, 2, 3], [1, 2, 4], [1, 2, 3]], group_size=3)
    assert got == pytest.approx([1 - (0.5 + 1) / 2, 1 - (0.5 + 0.5) / 2, 1 - (1 + 0.5) / 2])


def test_bigram_counts_weigh_repeats():
    # a = {11: 2}, b = {11: 1, 12: 1}: cos = 2 / (2 * sqrt 2)
    assert group_diversity([[1, 1, 1], [1, 1, 2]], 2) == pytest.approx([1 - 1 / math.sqrt(2)] * 2)


def test_pairs_with_a_one_token_completion_compare_unigrams():
    # [3] vs [3, 4]: unigrams {3} . {3, 4} = 1 / sqrt 2; [3, 4] vs [4, 3]: bigrams differ -> 0
    got = group_diversity([[3], [3, 4], [4, 3]], 3)
    assert got[0] == pytest.approx(1 - (1 / math.sqrt(2) + 1 / math.sqrt(2)) / 2)
    assert got[1] == pytest.approx(1 - (1 / math.sqrt(2) + 0) / 2)


def test_empty_completions_match_each_other_and_nothing_else():
    assert group_diversity([[], [], [1, 2]], 3) == pytest.approx([0.5, 0.5, 1.0])


def test_groups_are_consecutive_and_a_group_of_one_is_undefined():
    got = group_diversity([[1, 2], [1, 2], [3, 4], [5, 6]], 2)
    assert got == [0.0, 0.0, 1.0, 1.0]
    assert group_diversity([[1, 2], [3]], 1) == [None, None]
    assert group_diversity([], 4) == []


def test_tensors_and_arrays_are_accepted_as_completions():
    got = group_diversity([torch.tensor([1, 2, 3]), np.array([1, 2, 3]), (1, 2, 3), [1, 2, 3]], 4)
    assert got == [0.0] * 4


def test_presets_follow_the_spec():
    assert CARLWeights.paper() == CARLWeights() == CARLWeights(0.5, 0.3, 0.2, 0.0)
    guarded = {"multiscale": 0.4, "cloud": 0.25, "discontinuity": 0.15, "diversity": 0.2}
    assert CARLWeights.guarded().as_dict() == guarded
    assert CARLWeights.preset("guarded") == CARLWeights.guarded()
    with pytest.raises(ValueError, match="preset"):
        CARLWeights.preset("fancy")


def test_importing_weights_and_diversity_does_not_load_torch():
    import subprocess
    import sys

    code = "import sys; from carl_engine.coherence import CARLWeights, group_diversity; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
