"""Checks and conversions of the coherence inputs; every failure names the argument.

All checks look only at unmasked positions (masked ones take no part in any statistic)
and, where a value is at fault, name the first offending sample and position.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from carl_engine.errors import InvalidSpecError


def as_tensor(value: Any, name: str) -> tuple[torch.Tensor, bool]:
    """`value` as a torch tensor (sharing memory where possible) and whether it was numpy.

    Raises:
        InvalidSpecError: neither a torch tensor nor a numpy array (nor a nested list).
    """
    if isinstance(value, torch.Tensor):
        return value.detach(), False
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise InvalidSpecError(name, "must hold bools, integers or floats", got=str(value.dtype))
        if any(stride < 0 for stride in value.strides):
            value = value.copy()  # torch cannot view negative strides
        return torch.from_numpy(value), True
    if isinstance(value, (list, tuple)):
        try:
            return torch.as_tensor(np.asarray(value)), False
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InvalidSpecError(name, f"must be a rectangular array of numbers ({exc})") from None
    raise InvalidSpecError(name, "must be a torch tensor or a numpy array", got=type(value).__name__)


def check_shape(tensor: torch.Tensor, name: str, layout: str, expected: tuple[int | None, ...]) -> None:
    """Checks rank and sizes; `None` in `expected` accepts any size for that dimension.

    Raises:
        InvalidSpecError: wrong number of dimensions or a size that does not match.
    """
    shape = tuple(tensor.shape)
    if len(shape) != len(expected):
        raise InvalidSpecError(name, f"must have shape {layout} ({len(expected)} dims)", got=shape)
    for size, want in zip(shape, expected):
        if want is not None and size != want:
            raise InvalidSpecError(name, f"must have shape {layout} = {_fill(layout, expected)}", got=shape)


def _fill(layout: str, expected: tuple[int | None, ...]) -> str:
    names = layout.strip("[]").split(",")
    return "[" + ", ".join(str(want) if want is not None else n.strip() for n, want in zip(names, expected)) + "]"


def check_float(tensor: torch.Tensor, name: str) -> None:
    if not tensor.is_floating_point():
        raise InvalidSpecError(name, "must hold floating-point numbers", got=str(tensor.dtype))


def as_mask(mask: Any, batch: int, length: int) -> tuple[torch.Tensor, bool]:
    """The `[B, T]` bool mask (all True when `mask` is None) and whether it came as numpy.

    Integer masks of 0/1 (an attention mask) are accepted.

    Raises:
        InvalidSpecError: wrong shape, a float mask, or an integer other than 0/1 (field `mask`).
    """
    if mask is None:
        return torch.ones(batch, length, dtype=torch.bool), False
    tensor, was_numpy = as_tensor(mask, "mask")
    check_shape(tensor, "mask", "[B, T]", (batch, length))
    if tensor.dtype != torch.bool:
        if tensor.is_floating_point() or tensor.is_complex():
            raise InvalidSpecError("mask", "must be bool (True on real tokens) or 0/1 integers", got=str(tensor.dtype))
        if bool(((tensor != 0) & (tensor != 1)).any()):
            b, t = first_true((tensor != 0) & (tensor != 1))
            held = int(tensor[b, t])
            raise InvalidSpecError("mask", f"integer masks must hold 0 or 1; sample {b}, position {t} holds {held}")
        tensor = tensor != 0
    return tensor, was_numpy


def first_true(flags_BT: torch.Tensor) -> tuple[int, int]:
    """(sample, position) of the first True entry of a `[B, T]` bool tensor, row-major."""
    flat = int(torch.nonzero(flags_BT.reshape(-1))[0, 0])
    return flat // flags_BT.shape[1], flat % flags_BT.shape[1]


def check_token_ids(token_ids: torch.Tensor, mask: torch.Tensor, vocab_size: int) -> None:
    """Token ids at unmasked positions lie in [0, vocab_size).

    Raises:
        InvalidSpecError: a float dtype, or an id outside the vocabulary (field `token_ids`).
    """
    if token_ids.is_floating_point() or token_ids.is_complex() or token_ids.dtype == torch.bool:
        raise InvalidSpecError("token_ids", "must hold integers", got=str(token_ids.dtype))
    outside = mask & ((token_ids < 0) | (token_ids >= vocab_size))
    if bool(outside.any()):
        b, t = first_true(outside)
        raise InvalidSpecError(
            "token_ids",
            f"must lie in [0, {vocab_size}) (the logits' last dimension) at unmasked positions; "
            f"sample {b}, position {t} holds {int(token_ids[b, t])}",
        )


def check_temperature(temperature: Any) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise InvalidSpecError("temperature", "must be a number > 0", got=temperature)
    if not math.isfinite(temperature) or temperature <= 0:
        raise InvalidSpecError("temperature", "must be a finite number > 0", got=temperature)
    return float(temperature)


def check_vocab_size(vocab_size: Any) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 2:
        raise InvalidSpecError("vocab_size", "must be an integer >= 2 (the logits' last dimension)", got=vocab_size)
    return int(vocab_size)


def check_stats(entropy: torch.Tensor, selected_logprob: torch.Tensor, mask: torch.Tensor, vocab_size: int) -> None:
    """Entropy in [0, log V] and finite; selected log-probability <= 0 and not NaN/+inf (-inf is
    a zero-probability token). A tolerance of 1e-4 nats absorbs rounding.

    Raises:
        InvalidSpecError: the first offending sample and position (field `entropy` or `selected_logprob`).
    """
    tol = 1e-4
    if entropy.numel() == 0 or _stats_in_range(entropy, selected_logprob, math.log(vocab_size) + tol, tol):
        return
    # NaN fails every comparison, so these two also refuse NaN and ±inf
    bad = mask & ~((entropy >= -tol) & (entropy <= math.log(vocab_size) + tol))
    if bool(bad.any()):
        b, t = first_true(bad)
        raise InvalidSpecError(
            "entropy",
            f"must be finite and within [0, log(vocab_size) = {math.log(vocab_size):.4f}] nats at unmasked "
            f"positions; sample {b}, position {t} holds {float(entropy[b, t])}",
        )
    bad = mask & ~(selected_logprob <= tol)
    if bool(bad.any()):
        b, t = first_true(bad)
        raise InvalidSpecError(
            "selected_logprob",
            f"must be <= 0 and not NaN at unmasked positions; sample {b}, position {t} holds "
            f"{float(selected_logprob[b, t])}",
        )


def _stats_in_range(entropy: torch.Tensor, selected_logprob: torch.Tensor, top: float, tol: float) -> bool:
    """The fast path of `check_stats`: every value, masked ones included, in range (NaN fails).
    False sends `check_stats` to the exact check of the unmasked positions only."""
    low, high = torch.aminmax(entropy)
    return -tol <= float(low) and float(high) <= top and float(selected_logprob.max()) <= tol


def non_finite_logit_error(row_BV: torch.Tensor, sample: int, position: int) -> InvalidSpecError:
    """The error for a logits row that holds NaN or +inf, or only -inf."""
    nan = torch.nonzero(torch.isnan(row_BV))
    pos_inf = torch.nonzero(row_BV == math.inf)
    if len(nan) or len(pos_inf):
        kind, index = ("NaN", int(nan[0, 0])) if len(nan) else ("+inf", int(pos_inf[0, 0]))
        detail = f"{kind} at sample {sample}, position {position}, vocab index {index}"
    else:
        detail = f"every logit is -inf at sample {sample}, position {position}"
    return InvalidSpecError("logits", f"must be finite (or -inf for masked-out vocab) at unmasked positions; {detail}")
