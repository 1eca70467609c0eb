"""The coherence field of a batch of completions and its CARL scores (../shared/CARL_MATH.md).

Everything is vectorised over batch and tokens: a fixed number of torch ops per call
whatever B and T (no loop over samples, tokens or scales); the only Python loop runs over
chunks of logits rows. All scales of the multiscale term at once: see `multiscale.py`.

Where this implementation departs from, or pins down, the paper's reference package:
- It scores the exact tokens that were sampled, in context, under the distribution they
  were sampled from (`softmax(logits / τ)` at the sampling temperature): never a
  re-tokenisation of decoded text, nor another temperature. `V` is the logits' last
  dimension, not `len(tokenizer)`.
- Entropy is computed in log-sum-exp form over the full vocabulary (`-inf` logits are
  legal and contribute 0), never as `log(p + eps)`; no probability is floored.
- The block std of the multiscale term is the population std (ddof = 0), as CARL_MATH.md
  fixes it; scales stop at j = 15 (16 scales); the tail beyond the last whole block is dropped.
- Masked positions are removed before any statistic: a sample is the sequence of its
  unmasked tokens in order (a hole in the mask closes up; padding never counts).
- Edge cases the paper left open follow CARL_MATH.md: T = 0 gives NaN for every reward
  component and the composite (the reward layer maps NaN to None); T = 1 gives
  R_ms = 1 and R_disc = 0.5; the Kuramoto order is 0 when T < 2.
- The composite's weights are used as given (not renormalised), and it can carry a fourth,
  population-level term `w_div · R_div` (the "guarded" preset) against the coherence trap;
  see `CoherenceField.scores` and `group_diversity`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from carl_engine.coherence import _inputs as inputs
from carl_engine.coherence.multiscale import scale_coherence, weighted_scales
from carl_engine.coherence.token_stats import DEFAULT_CHUNK_BYTES, token_stats
from carl_engine.coherence.weights import CARLWeights
from carl_engine.errors import InvalidSpecError

DEFECT_THRESHOLD = 0.03
SCORE_KEYS = (
    "multiscale", "cloud", "discontinuity", "composite", "kuramoto_r",
    "n_crystallizations", "n_meltings", "defect_density", "surprisal_mean",
)  # fmt: skip


class CoherenceField:
    """Per-token order parameter Φ of a batch of completions, and the CARL scores built on it.

    Build it with `from_logits` or `from_stats`. The public arrays are `[B, T]` in the input
    layout, 0 at masked positions; they are numpy arrays when the inputs were numpy.
    """

    def __init__(self, entropy_BT: torch.Tensor, logprob_BT: torch.Tensor, mask_BT: torch.Tensor,
                 vocab_size: int, *, as_numpy: bool = False) -> None:  # fmt: skip
        """Use `from_logits` or `from_stats`; this takes checked float64 tensors, the
        log-probability 0 where masked (the entropy's masked entries are never used)."""
        self.vocab_size = vocab_size
        self._as_numpy = as_numpy
        self._mask = mask_BT
        self._entropy = entropy_BT
        self._logprob = logprob_BT
        log_v = math.log(vocab_size)
        phi = torch.where(mask_BT, entropy_BT, math.inf)  # masked: Φ = clamp(-inf) = 0 exactly
        self._phi = phi.mul_(-1.0 / log_v).add_(1.0).clamp_(0.0, 1.0)
        self._lengths = mask_BT.sum(dim=1)
        self._phi_c, self._logprob_c, self._prefix_c = _compact(self._phi, logprob_BT, mask_BT, self._lengths)

    @classmethod
    def from_logits(cls, logits: Any, token_ids: Any, mask: Any = None, temperature: float = 1.0,
                    *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> CoherenceField:  # fmt: skip
        """The field of sampled completions from the policy's logits.

        Memory: the logits are read in chunks of rows; the extra memory is at most
        `chunk_bytes` (default 64 MiB, at least one `V`-row) plus O(B·T) outputs, never a
        second full-size copy of the logits (see `token_stats`).

        Args:
            logits: `[B, T, V]` float logits at the completion positions (torch or numpy).
                `-inf` is legal; NaN and +inf are refused at unmasked positions.
            token_ids: `[B, T]` the sampled token ids.
            mask: `[B, T]` bool (or 0/1), True on real tokens; None means all real.
            temperature: τ > 0, the sampling temperature (`p = softmax(logits / τ)`).
            chunk_bytes: working-memory budget for the chunked pass.

        Returns:
            The field; its arrays and scores are numpy when `logits` was numpy.

        Raises:
            InvalidSpecError (a ValueError) naming the argument: wrong rank or mismatched
            shapes, V < 2, token ids outside [0, V), a non-finite logit (with the sample,
            position and vocab index), a bad mask or temperature.
        """
        logits_t, was_numpy = inputs.as_tensor(logits, "logits")
        inputs.check_shape(logits_t, "logits", "[B, T, V]", (None, None, None))
        inputs.check_float(logits_t, "logits")
        B, T, V = logits_t.shape
        ids, _ = inputs.as_tensor(token_ids, "token_ids")
        inputs.check_shape(ids, "token_ids", "[B, T]", (B, T))
        mask_t, _ = inputs.as_mask(mask, B, T)
        ids, mask_t = ids.to(logits_t.device), mask_t.to(logits_t.device)
        vocab_size = inputs.check_vocab_size(V)
        tau = inputs.check_temperature(temperature)
        if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
            raise InvalidSpecError("chunk_bytes", "must be a positive integer", got=chunk_bytes)
        inputs.check_token_ids(ids, mask_t, vocab_size)
        entropy, logprob = token_stats(logits_t, ids, mask_t, tau, chunk_bytes)
        return cls(entropy, logprob, mask_t, vocab_size, as_numpy=was_numpy)

    @classmethod
    def from_stats(cls, entropy: Any, selected_logprob: Any, vocab_size: int, mask: Any = None) -> CoherenceField:
        """The field from per-token entropy and sampled-token log-probability (the fast path).

        Given the same distribution, this equals `from_logits` (the two share all code past
        the per-token statistics).

        Args:
            entropy: `[B, T]` entropy in nats of `softmax(logits / τ)` at each position.
            selected_logprob: `[B, T]` log-probability of the sampled token (-inf allowed).
            vocab_size: V, the logits' last dimension (>= 2).
            mask: `[B, T]` bool (or 0/1), True on real tokens; None means all real.

        Returns:
            The field; numpy arrays out when `entropy` was numpy.

        Raises:
            InvalidSpecError (a ValueError) naming the argument: wrong rank or mismatched
            shapes, V < 2, an entropy outside [0, log V] or non-finite, a log-probability
            above 0 or NaN (with the sample and position), a bad mask.
        """
        h, was_numpy = inputs.as_tensor(entropy, "entropy")
        inputs.check_shape(h, "entropy", "[B, T]", (None, None))
        inputs.check_float(h, "entropy")
        B, T = h.shape
        lp, _ = inputs.as_tensor(selected_logprob, "selected_logprob")
        inputs.check_shape(lp, "selected_logprob", "[B, T]", (B, T))
        inputs.check_float(lp, "selected_logprob")
        vocab_size = inputs.check_vocab_size(vocab_size)
        mask_t, _ = inputs.as_mask(mask, B, T)
        h, lp, mask_t = h.to(torch.float64), lp.to(h.device, torch.float64), mask_t.to(h.device)
        lp = torch.where(mask_t, lp, 0.0)  # masked values take no part (the entropy's: see __init__)
        inputs.check_stats(h, lp, mask_t, vocab_size)
        return cls(h, lp, mask_t, vocab_size, as_numpy=was_numpy)

    # ---- the per-token arrays --------------------------------------------------------------

    @property
    def phi(self) -> Any:
        """`[B, T]` order parameter Φ = clip(1 - H / log V, 0, 1); 0 where masked."""
        return self._out(self._phi)

    @property
    def entropy(self) -> Any:
        """`[B, T]` entropy in nats; 0 where masked."""
        return self._out(torch.where(self._mask, self._entropy, 0.0))

    @property
    def selected_prob(self) -> Any:
        """`[B, T]` probability of the sampled token; 0 where masked."""
        return self._out(torch.exp(self._logprob) * self._mask)

    @property
    def mask(self) -> Any:
        """`[B, T]` bool, True on real tokens."""
        return self._out(self._mask)

    @property
    def lengths(self) -> Any:
        """`[B]` int64, the number of real tokens of each sample."""
        return self._out(self._lengths)

    def _out(self, tensor: torch.Tensor) -> Any:
        return tensor.numpy() if self._as_numpy else tensor

    # ---- scores ----------------------------------------------------------------------------

    def scale_coherence(self) -> Any:
        """`[B, n_scales]` per-scale coherence C_j, NaN where scale j does not exist for a sample
        (2^j > T_b). n_scales = min(floor(log2 max T_b) + 1, 16); 0 when every sample is empty."""
        return self._out(scale_coherence(self._phi_c, self._lengths))

    def scores(self, weights: CARLWeights | None = None, *, diversity: Any = None) -> dict[str, Any]:
        """The CARL components, composite and diagnostics of every sample.

        Args:
            weights: the composite's weights (default `CARLWeights()`, the paper's 0.5/0.3/0.2).
            diversity: `[B]` per-sample R_div (from `group_diversity`; None or NaN where
                undefined). Required when `weights.diversity > 0`, ignored when it is 0.
                The composite is NaN where the diversity it needs is NaN.

        Returns:
            `[B]` arrays by name: multiscale, cloud, discontinuity, composite, kuramoto_r
            (float64); n_crystallizations, n_meltings (int64); defect_density,
            surprisal_mean (float64). Rewards and composite are NaN for T_b = 0.

        Raises:
            InvalidSpecError: `weights` not a CARLWeights; `diversity` missing while its
                weight is positive, or not `[B]`.
        """
        weights = CARLWeights() if weights is None else weights
        if not isinstance(weights, CARLWeights):
            raise InvalidSpecError("weights", "must be a CARLWeights", got=type(weights).__name__)
        L = self._lengths.to(torch.float64)  # 0 for an empty sample: its means are 0/0 = NaN
        scales = scale_coherence(self._phi_c, self._lengths)
        phi32 = self._phi_c.to(torch.float32)  # for the transcendental terms (see _cloud_sums, _kuramoto)
        out = {
            "multiscale": weighted_scales(scales),
            "cloud": _cloud_sums(phi32, self._logprob_c) / L,
            "surprisal_mean": -self._logprob_c.sum(dim=1) / L,
            "kuramoto_r": _kuramoto(phi32, self._lengths, L),  # last user of phi32: overwrites it
        }
        out.update(_discontinuity(self._phi_c, self._prefix_c, L))
        composite = torch.mul(out["multiscale"], weights.multiscale).add_(out["cloud"], alpha=weights.cloud)
        composite.add_(out["discontinuity"], alpha=weights.discontinuity)
        if weights.diversity > 0:
            composite.add_(self._diversity(diversity), alpha=weights.diversity)
        out["composite"] = composite
        return {key: self._out(out[key]) for key in SCORE_KEYS}

    def _diversity(self, diversity: Any) -> torch.Tensor:
        if diversity is None:
            raise InvalidSpecError(
                "diversity", "is required when weights.diversity > 0 (pass group_diversity(...) per sample)"
            )
        if isinstance(diversity, (list, tuple)):
            diversity = [math.nan if value is None else value for value in diversity]
        values, _ = inputs.as_tensor(diversity, "diversity")
        inputs.check_shape(values, "diversity", "[B]", (self._phi.shape[0],))
        return values.to(self._phi.device, torch.float64)


def _compact(phi_BT: torch.Tensor, logprob_BT: torch.Tensor, mask_BT: torch.Tensor,
             lengths_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Moves each sample's real tokens to the front, in order, and trims to the longest one (L).

    Returns:
        Φ `[B, L]`, log-probability `[B, L]` (0 past each length) and the compacted mask
        `[B, L]` (True on the first T_b positions).
    """
    B, T = mask_BT.shape
    longest = int(lengths_B.max()) if B else 0
    if not bool((mask_BT[:, 1:] > mask_BT[:, :-1]).sum()):  # no real token after padding
        return phi_BT[:, :longest], logprob_BT[:, :longest], mask_BT[:, :longest]
    order = torch.argsort((~mask_BT).to(torch.int8), dim=1, stable=True)  # real tokens first
    prefix = torch.arange(longest, device=mask_BT.device) < lengths_B.unsqueeze(1)
    return phi_BT.gather(1, order[:, :longest]), logprob_BT.gather(1, order[:, :longest]), prefix


def _kuramoto(phi32_BL: torch.Tensor, lengths_B: torch.Tensor, lengths_f64_B: torch.Tensor) -> torch.Tensor:
    """|mean_k exp(iπΦ_k)|, 0 when T < 2. Padding holds Φ = 0: its cos is 1 and its sin 0.

    Float32 sines (together ~60% of one float64 cosine's cost here), summed in float64; each
    term is within ~1e-7. With w = 1/2 - Φ (exact in float32): cos πΦ = sin πw, and
    sin πΦ = sin π(1/2 - |w|), whose argument is exactly 0 at Φ = 0 and 1, so sin πΦ is too.
    """
    w = phi32_BL.neg_().add_(0.5)  # in place: the caller's phi32_BL is spent
    cos = torch.mul(w, math.pi).sin_()
    sin = w.abs_().mul_(-math.pi).add_(math.pi / 2).sin_()
    re = cos.sum(dim=1, dtype=torch.float64) - (phi32_BL.shape[1] - lengths_B)  # less the padding's cos 0 = 1
    im = sin.sum(dim=1, dtype=torch.float64)
    r = torch.hypot(re, im).div_(lengths_f64_B).clamp_(max=1.0)  # rounding could pass 1; 0/0 -> where
    return torch.where(lengths_B >= 2, r, 0.0)


def _cloud_sums(phi32_BL: torch.Tensor, logprob_BL: torch.Tensor) -> torch.Tensor:
    """`[B]` Σ_k s_k·Φ_k (padding has Φ = 0). exp and the product run in float32, summed in
    float64: each term's error is ~1e-7 relative (|s·Φ| <= 1), at half float64's cost."""
    return logprob_BL.to(torch.float32).exp_().mul_(phi32_BL).sum(dim=1, dtype=torch.float64)


def _discontinuity(phi_BL: torch.Tensor, prefix_BL: torch.Tensor,
                   lengths_f64_B: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
    """R_disc, crystallization and melting counts, and defect density.

    An event's score depends on its direction and on the Φ before it; counting the four
    kinds of event is enough: R_disc = (0.3·up + 0.5·up_low + 0.5·down - 0.3·down_high) / events.
    """
    B, L = phi_BL.shape
    delta = torch.diff(phi_BL, dim=1)  # [B, L-1]
    before, valid = phi_BL[:, :-1], prefix_BL[:, 1:]  # δ_k is real when token k + 1 is
    flags = torch.empty(4, B, max(L - 1, 0), dtype=torch.bool, device=phi_BL.device)
    up, up_low, down, down_high = flags
    torch.gt(delta, DEFECT_THRESHOLD, out=up).logical_and_(valid)  # commitment / crystallization
    torch.lt(before, 0.5, out=up_low).logical_and_(up)  # scored 0.8 instead of 0.3
    torch.lt(delta, -DEFECT_THRESHOLD, out=down).logical_and_(valid)  # dissolution / melting
    torch.gt(before, 0.7, out=down_high).logical_and_(down)  # scored 0.2 instead of 0.5
    counts_4B = flags.sum(dim=2)
    n_up, n_down = counts_4B[0], counts_4B[2]
    events = n_up + n_down
    scores = torch.tensor((0.3, 0.5, 0.5, -0.3), dtype=torch.float64, device=phi_BL.device)
    total = scores @ counts_4B.to(torch.float64)  # Σ event scores
    disc = torch.where(events > 0, total / events.clamp(min=1), 0.5)
    return {
        "discontinuity": torch.where(lengths_f64_B > 0, disc, math.nan),
        "n_crystallizations": n_up,
        "n_meltings": n_down,
        "defect_density": events / lengths_f64_B,  # NaN (0/0) for an empty sample
    }
