"""Multiscale coherence C_j of every sample and scale, in a fixed number of torch ops.

C_j = clamp(1 - mean over the whole blocks of size 2^j of the block's population std, 0, 1)
(CARL_MATH.md, component 1). Rows are compacted (a sample's real tokens first, padding
after), so sample b has `T_b >> j` whole blocks at scale j: the first ones of the row.

All blocks of all scales are laid out side by side in one `[B, W]` table of stds, scale by
scale, each run of blocks preceded by a 0 column. The per-sample sum over its whole blocks
of scale j is then a difference of two entries of that table's running sum, so validity
costs one gather, not a mask per scale.
- scale 0: a single token has std 0, so its column of the table is never built;
- scale 1: the std of a pair is |x1 - x0| / 2 (no square root);
- scales >= 2: block sums of Φ - 1/2 and of its square come from float64 prefix sums over
  4-token groups, read at every block boundary of every scale at once (one `cat` of
  strided views); then var = E[x²] - E[x]² (clamped at 0). Centring on 1/2 keeps
  |x| <= 1/2, so the prefix sums stay below T/4 and the cancellation error of a block's
  variance is ~1e-16·T/b. The std error is largest for a block of equal values (true std
  0): at most ~sqrt(1e-16·T/b), ~1e-6 at T = 2^15 (measured 4e-8 at T = 2^14), below 1e-5.
"""

from __future__ import annotations

import functools
import math

import torch

MAX_SCALES = 16


@functools.lru_cache(maxsize=64)
def _layout(L: int, n_scales: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Where each scale's blocks start in the std table, and the table's 1/b per column.

    Returns:
        starts: `starts[j - 1]` is the column of scale j's first block, for j = 1 .. J-1;
            the column before it is always 0 in the table.
        inv_size: for the columns from scale 2 on, 1/2^j on a block of scale j, 0 on the
            separator columns between scales.
    """
    starts, inv_size = [1], []
    for j in range(1, n_scales - 1):
        starts.append(starts[-1] + (L >> j) + 1)
    for j in range(2, n_scales):
        inv_size += [0.0] * (j > 2) + [2.0**-j] * (L >> j)
    return tuple(starts), tuple(inv_size)


def n_scales_of(longest: int) -> int:
    """Scales of the longest sample: min(floor(log2 L) + 1, 16); 0 when it is empty."""
    return min(int(math.log2(longest)) + 1, MAX_SCALES) if longest > 0 else 0


def scale_coherence(phi_BL: torch.Tensor, lengths_B: torch.Tensor) -> torch.Tensor:
    """`[B, J]` C_j of compacted rows (`phi_BL` float64, 0 past each length); NaN where
    scale j has no whole block in sample b. J = `n_scales_of(L)`."""
    B, L = phi_BL.shape
    J = n_scales_of(L)
    std_sums_BJ = torch.zeros(B, J, dtype=torch.float64, device=phi_BL.device)  # scale 0: std 0
    whole_BJ = lengths_B.unsqueeze(1) >> torch.arange(J, device=phi_BL.device)  # whole blocks
    if J >= 2:
        starts, inv_size = _layout(L, J)
        table_BW = torch.empty(B, starts[-1] + (L >> (J - 1)), dtype=torch.float64, device=phi_BL.device)
        table_BW[:, [start - 1 for start in starts]] = 0.0  # the 0 column before each run; the rest is written
        _pair_stds(phi_BL, out_BN=table_BW[:, 1 : 1 + (L >> 1)])
        if J >= 3:
            _block_stds(phi_BL, J, inv_size, out_BN=table_BW[:, starts[1] :])
        running_BW = table_BW.cumsum_(dim=1)
        first = _tensor(tuple(start - 1 for start in starts), phi_BL.device, torch.int64)  # [J-1] 0 column of each run
        std_sums_BJ[:, 1:] = running_BW.gather(1, first + whole_BJ[:, 1:]) - running_BW[:, first]
    return torch.clamp(1.0 - std_sums_BJ / whole_BJ, 0.0, 1.0)  # 0/0 = NaN: no such scale


def _pair_stds(phi_BL: torch.Tensor, out_BN: torch.Tensor) -> None:
    """Writes the std of each pair (scale-1 block) of the row, |x1 - x0| / 2, into `out_BN`."""
    n = out_BN.shape[1]
    torch.sub(phi_BL[:, 1 : 2 * n : 2], phi_BL[:, 0 : 2 * n : 2], out=out_BN)
    out_BN.abs_().mul_(0.5)


def _block_stds(phi_BL: torch.Tensor, n_scales: int, inv_size: tuple[float, ...], out_BN: torch.Tensor) -> None:
    """Writes the population std of every whole block of scales 2 .. J-1 into `out_BN`, scale
    after scale with one 0 column between scales (the layout of `_layout`)."""
    B, L = phi_BL.shape
    m = L >> 2  # whole 4-token groups
    prefix_2BM = torch.empty(2 * B, m + 1, dtype=torch.float64, device=phi_BL.device)  # [Σx; Σx²], x = Φ - 1/2
    prefix_2BM[:, 0] = 0.0
    sums_BM, squares_BM = prefix_2BM[:B, 1:], prefix_2BM[B:, 1:]
    quarters = [phi_BL[:, i : 4 * m : 4] for i in range(4)]  # the i-th token of each 4-group
    torch.add(quarters[0], quarters[1], out=sums_BM).add_(quarters[2]).add_(quarters[3])
    torch.mul(quarters[0], quarters[0], out=squares_BM)
    for quarter in quarters[1:]:
        squares_BM.addcmul_(quarter, quarter)
    squares_BM.sub_(sums_BM).add_(1.0)  # Σ(Φ - 1/2)² = ΣΦ² - ΣΦ + 1 over 4 tokens
    sums_BM.sub_(2.0)  # Σ(Φ - 1/2)
    prefix_2BM.cumsum_(dim=1)
    # every block boundary of every scale j >= 2 (in 4-groups: 0, c, 2c, .. with c = 2^(j-2))
    bounds = [prefix_2BM[:, : ((L >> j) << (j - 2)) + 1 : 1 << (j - 2)] for j in range(2, n_scales)]
    means_2BN = torch.diff(torch.cat(bounds, dim=1), dim=1)  # block sums; junk at the separators
    means_2BN.mul_(_tensor(inv_size, phi_BL.device))  # / block size: means; junk -> 0
    var_BN = means_2BN[B:].addcmul_(means_2BN[:B], means_2BN[:B], value=-1.0).clamp_(min=0.0)  # E[x²] - E[x]²
    torch.add(var_BN, 1e-300, out=out_BN).rsqrt_().mul_(var_BN)  # sqrt: 0 stays 0; ~40% cheaper here


@functools.lru_cache(maxsize=64)
def _tensor(values: tuple[float, ...], device: torch.device, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A small constant tensor, made once per (values, device, dtype); never written to."""
    return torch.tensor(values, dtype=dtype, device=device)


def weighted_scales(scales_BJ: torch.Tensor) -> torch.Tensor:
    """R_ms = Σ w_j C_j / Σ w_j over the scales that exist, w_j = 2^(j/2); NaN when none does."""
    w_J = _tensor(tuple(2.0 ** (j / 2) for j in range(scales_BJ.shape[1])), scales_BJ.device)
    exists_BJ = (scales_BJ == scales_BJ).to(torch.float64)  # not NaN
    return (torch.nan_to_num(scales_BJ) @ w_J) / (exists_BJ @ w_J)  # 0/0 = NaN for an empty sample
