"""Per-token entropy and selected log-probability from logits, in bounded memory.

The `[B, T, V]` logits are read in chunks of rows (one row = one token's `V` logits);
only unmasked rows are read. Each chunk works in two preallocated `[R, V]` buffers of the
compute dtype (float64 for float64 logits, else float32), plus, for logits of another
dtype (bf16, fp16) or an unusual layout, a third `[R, V]` buffer of gathered rows in the
logits' dtype. `R` is chosen so that these fit `chunk_bytes`, so the extra memory is at
most `chunk_bytes` (at least one row) plus the `[B, T]` outputs: never a second full-size
copy of the logits. Rows are gathered with `index_select` into the buffers, through a row
view of the logits' storage (`_rows_view`), so slices such as `logits[:, :-1]` are not
copied either.

Per row, with `z = (x - max x) / τ` (the max is finite once NaN/+inf are ruled out):
    S = Σ exp z,   H = log S - Σ exp(z)·z / S,   log p(t) = z_t - log S
which is the log-sum-exp form of `H = -Σ p log p`; `-inf` logits contribute exactly 0.
"""

from __future__ import annotations

import torch

from carl_engine.coherence._inputs import non_finite_logit_error

DEFAULT_CHUNK_BYTES = 64 * 2**20


def rows_per_chunk(vocab_size: int, logits_dtype: torch.dtype, chunk_bytes: int, *, staging: bool) -> int:
    """How many rows fit the `chunk_bytes` budget (at least one); `staging` adds a buffer of
    gathered rows in the logits' own dtype."""
    per_row = 2 * vocab_size * _compute_dtype(logits_dtype).itemsize
    if staging:
        per_row += vocab_size * logits_dtype.itemsize
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
    rows = torch.nonzero(mask_BT.reshape(-1)).reshape(-1)  # flat indices b*T + t of unmasked rows
    if rows.numel() == 0:
        return entropy.reshape(B, T), logprob.reshape(B, T)
    view, step = _rows_view(logits_BTV)
    in_place = view is not None and step == T and rows.numel() == B * T and view.dtype == compute
    staging = view is None or view.dtype != compute  # rows gathered in the logits' dtype first
    ids = token_ids_BT.reshape(-1).to(torch.int64)
    R = min(rows_per_chunk(V, logits_BTV.dtype, chunk_bytes, staging=staging), rows.numel())
    shifted = torch.empty(R, V, dtype=compute, device=device)  # z = (x - max x) / τ
    weights = torch.empty(R, V, dtype=compute, device=device)  # exp z, then exp(z)·z
    gathered = torch.empty(R, V, dtype=logits_BTV.dtype, device=device) if view is not None and staging else None
    for start in range(0, rows.numel(), R):
        chunk = rows[start : start + R]
        n = chunk.numel()
        z = shifted[:n]
        if in_place:  # every row, in order: read the logits where they are
            src = view[start : start + n]
            top = src.amax(dim=-1, keepdim=True)
            _check_rows(top, src, chunk, T)
            torch.sub(src, top, out=z)
        else:
            _gather_rows(z, logits_BTV, chunk, view, step, None if gathered is None else gathered[:n])
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


def _gather_rows(z_RV: torch.Tensor, logits_BTV: torch.Tensor, chunk_R: torch.Tensor, view: torch.Tensor | None,
                 step: int, gathered_RV: torch.Tensor | None) -> None:  # fmt: skip
    """Copies the logits rows with flat indices `chunk_R` (b*T + t) into `z_RV`."""
    T = logits_BTV.shape[1]
    if view is None:  # a layout with no row view: advanced indexing (budgeted as staging)
        z_RV.copy_(logits_BTV[chunk_R // T, chunk_R % T])
        return
    index = chunk_R if step == T else (chunk_R // T) * step + chunk_R % T
    if gathered_RV is None:
        torch.index_select(view, 0, index, out=z_RV)
    else:  # gather in the logits' dtype, then convert
        z_RV.copy_(torch.index_select(view, 0, index, out=gathered_RV))


def _rows_view(logits_BTV: torch.Tensor) -> tuple[torch.Tensor | None, int]:
    """A `[N, V]` view of the logits' storage whose row `b*step + t` is `logits[b, t]`, and step.

    Contiguous logits give `step = T` (the plain `[B*T, V]` view). A slice along T of a
    bigger tensor (TRL's `logits[:, :-1]`) has batch stride = step x token stride, so it has
    such a view too and is never copied. Other layouts (an expanded T, a batch stride that is
    not a multiple of the token stride) return (None, 0).
    """
    B, T, V = logits_BTV.shape
    stride_b, stride_t, stride_v = logits_BTV.stride()
    if T == 1:
        stride_t, step = max(stride_b, 1), 1
    elif B == 1:
        step = T
    elif stride_t > 0 and stride_b % stride_t == 0:
        step = stride_b // stride_t
    else:
        return None, 0
    size = ((B - 1) * step + T, V)
    return logits_BTV.as_strided(size, (stride_t, stride_v), logits_BTV.storage_offset()), step


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
