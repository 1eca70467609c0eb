"""Per-token entropy and selected log-probability from logits, in bounded memory.

The `[B, T, V]` logits are read in chunks of rows (one row = one token's `V` logits);
only unmasked rows are read. Each chunk works in two preallocated `[R, V]` buffers of the
compute dtype (float64 for float64 logits, else float32), plus, for logits of another
dtype or a layout that cannot be flattened without copying, the chunk's gathered rows.
So the extra memory is at most `chunk_bytes` (at least one row) plus the `[B, T]` outputs:
never a second full-size copy of the logits.

Per row, with `z = (x - max x) / τ` (the max is finite once NaN/+inf are ruled out):
    S = Σ exp z,   H = log S - Σ exp(z)·z / S,   log p(t) = z_t - log S
which is the log-sum-exp form of `H = -Σ p log p`; `-inf` logits contribute exactly 0.
"""

from __future__ import annotations

import torch

from carl_engine.coherence._inputs import non_finite_logit_error

DEFAULT_CHUNK_BYTES = 64 * 2**20


def rows_per_chunk(vocab_size: int, logits_dtype: torch.dtype, chunk_bytes: int, *, flat_view: bool = True) -> int:
    """How many rows fit the `chunk_bytes` budget (at least one)."""
    compute = _compute_dtype(logits_dtype)
    per_row = 2 * vocab_size * compute.itemsize
    if logits_dtype != compute or not flat_view:
        per_row += vocab_size * logits_dtype.itemsize  # the gathered rows before conversion
    return max(1, chunk_bytes // per_row)


def _compute_dtype(logits_dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if logits_dtype == torch.float64 else torch.float32


def token_stats(
    logits_BTV: torch.Tensor,
    token_ids_BT: torch.Tensor,
    mask_BT: torch.Tensor,
    temperature: float,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy (nats) and log-probability of the sampled token under `softmax(logits / τ)`.

    Args:
        logits_BTV: floating logits; NaN/+inf are refused at unmasked rows, -inf is legal.
        token_ids_BT: sampled token ids, already checked to lie in the vocabulary where unmasked.
        mask_BT: bool, True on real tokens; masked rows are never read.
        temperature: τ > 0.
        chunk_bytes: the working-memory budget (see the module docstring).

    Returns:
        (entropy_BT, selected_logprob_BT), float64, 0 at masked positions.

    Raises:
        InvalidSpecError: a row with NaN or +inf, or with every logit -inf (field `logits`),
            naming the sample, position and vocab index.
    """
    B, T, V = logits_BTV.shape
    compute = _compute_dtype(logits_BTV.dtype)
    device = logits_BTV.device
    entropy = torch.zeros(B * T, dtype=torch.float64, device=device)
    logprob = torch.zeros(B * T, dtype=torch.float64, device=device)
    rows = torch.nonzero(mask_BT.reshape(-1)).reshape(-1)  # flat indices of unmasked rows
    if rows.numel() == 0:
        return entropy.reshape(B, T), logprob.reshape(B, T)
    flat = _flat_view(logits_BTV)
    all_rows = rows.numel() == B * T
    ids = token_ids_BT.reshape(-1).to(torch.int64)
    R = min(rows_per_chunk(V, logits_BTV.dtype, chunk_bytes, flat_view=flat is not None), rows.numel())
    shifted = torch.empty(R, V, dtype=compute, device=device)  # z = (x - max x) / τ
    weights = torch.empty(R, V, dtype=compute, device=device)  # exp z, then exp(z)·z
    for start in range(0, rows.numel(), R):
        chunk = rows[start : start + R]
        n = chunk.numel()
        z = shifted[:n]
        if flat is not None and flat.dtype == compute and all_rows:
            src = flat[start : start + n]  # a view: all rows are read in order
            top = src.amax(dim=-1, keepdim=True)
            _check_rows(top, src, chunk, T)
            torch.sub(src, top, out=z)
        else:
            if flat is not None and flat.dtype == compute:
                torch.index_select(flat, 0, chunk, out=z)
            else:
                z.copy_(logits_BTV[chunk // T, chunk % T])
            top = z.amax(dim=-1, keepdim=True)
            _check_rows(top, z, chunk, T)
            z.sub_(top)
        if temperature != 1.0:
            z.div_(temperature)
        e = torch.exp(z, out=weights[:n])
        total = e.sum(dim=-1)
        log_total = torch.log(total)
        selected = z.gather(1, ids[chunk].unsqueeze(1)).squeeze(1)
        dot = e.mul_(z).sum(dim=-1)
        dot = _fix_neg_inf_rows(dot, z)
        entropy[chunk] = (log_total - dot / total).to(torch.float64)
        logprob[chunk] = (selected - log_total).to(torch.float64)
    return entropy.reshape(B, T), logprob.reshape(B, T)


def _flat_view(logits_BTV: torch.Tensor) -> torch.Tensor | None:
    """`[B*T, V]` as a view when the layout allows it (never a copy), else None."""
    B, T, V = logits_BTV.shape
    try:
        return logits_BTV.view(B * T, V)
    except RuntimeError:
        return None


def _check_rows(top_R1: torch.Tensor, rows_RV: torch.Tensor, chunk_R: torch.Tensor, T: int) -> None:
    """A row max that is NaN, +inf or -inf means NaN/+inf in the row, or no finite logit."""
    bad = ~torch.isfinite(top_R1.reshape(-1))
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        flat = int(chunk_R[i])
        raise non_finite_logit_error(rows_RV[i], flat // T, flat % T)


def _fix_neg_inf_rows(dot_R: torch.Tensor, z_RV: torch.Tensor) -> torch.Tensor:
    """Rows holding -inf logits give 0·(-inf) = NaN in Σ exp(z)·z; recompute them with 0 there."""
    nan_rows = torch.isnan(dot_R)
    if not bool(nan_rows.any()):
        return dot_R
    z = z_RV[nan_rows]
    finite = torch.where(torch.isinf(z), torch.zeros((), dtype=z.dtype, device=z.device), z)
    dot_R[nan_rows] = (torch.exp(z) * finite).sum(dim=-1)
    return dot_R
