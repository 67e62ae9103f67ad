"""Attention masks: the one thing that tells the three families apart.

Convention everywhere (the same as ``torch.nn.functional.scaled_dot_product_attention``):
a **boolean** mask where ``True`` means *this query may attend to this key*.
Masks broadcast against attention scores of shape ``(B, H, T_q, T_k)``:

* ``padding_mask``  -> ``(B, 1, 1, T_k)``   hide padded keys (every family)
* ``causal_mask``   -> ``(T, T)``           no peeking at the future (decoders)
* ``prefix_mask``   -> ``(T, T)`` or ``(B, 1, T, T)``  bidirectional over a prompt, causal after it
* ``combine_masks`` -> logical AND of any of the above
"""
from __future__ import annotations

import numbers

import torch
from torch import Tensor


def _length(name: str, value, function: str) -> int:
    """``value`` as a length (a whole number >= 0), or a clear error naming the argument."""
    if type(value) is int and value >= 0:  # the common case, checked first: this runs on every attention call
        return value
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{function}: {name} is a number of positions, a whole number >= 0; got {value!r}.")
    if value < 0:
        raise ValueError(f"{function}: {name} is a number of positions, a whole number >= 0; got {value}.")
    return int(value)  # numpy integers


def padding_mask(tokens: Tensor, pad_id: int = 0) -> Tensor:
    """Keys that are real tokens. ``tokens (B, T)`` -> bool ``(B, 1, 1, T)``."""
    if tokens.dim() != 2:
        raise ValueError(f"padding_mask expects token ids of shape (B, T); got shape {tuple(tokens.shape)}.")
    if tokens.is_floating_point():
        raise TypeError(f"padding_mask expects integer token ids; got dtype {tokens.dtype} (convert with tokens.long()).")
    return (tokens != pad_id)[:, None, None, :]


def causal_mask(t_q: int, t_k: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Query i may attend to keys j <= i. Returns bool ``(t_q, t_k)``.

    With ``t_k > t_q`` (decoding with a KV cache) the queries are the *last* ``t_q``
    positions, so query i sits at absolute position ``t_k - t_q + i``.
    """
    t_q = _length("t_q", t_q, "causal_mask")
    t_k = t_q if t_k is None else _length("t_k", t_k, "causal_mask")
    if t_k < t_q:
        raise ValueError(f"causal_mask needs t_k >= t_q (queries are the newest positions); got t_q={t_q}, t_k={t_k}.")
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t_q)


def prefix_mask(t: int, prefix_len: int | Tensor, device: torch.device | str | None = None) -> Tensor:
    """Prefix-LM ("BiAttn") mask: every query sees the whole prefix; after it, causal.

    ``prefix_len`` an int -> ``(t, t)``; a tensor ``(B,)`` of lengths -> ``(B, 1, t, t)``.
    """
    causal = causal_mask(_length("t", t, "prefix_mask"), device=device)
    if not isinstance(prefix_len, (Tensor, list, tuple)):  # one length for every row
        prefix_len = _length("prefix_len", prefix_len, "prefix_mask")
    if isinstance(prefix_len, int):
        keys_in_prefix = torch.arange(t, device=device) < prefix_len  # (t,)
        return causal | keys_in_prefix[None, :]
    lengths = torch.as_tensor(prefix_len, device=device)
    if lengths.dim() != 1:
        raise ValueError(f"prefix_len must be an int or a 1-D tensor of lengths (B,); got shape {tuple(lengths.shape)}.")
    keys_in_prefix = torch.arange(t, device=device)[None, :] < lengths[:, None]  # (B, t)
    return (causal[None] | keys_in_prefix[:, None, :])[:, None]


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """AND together any number of boolean masks (``None`` entries are skipped)."""
    out = None
    for m in masks:
        if m is None:
            continue
        check_mask(m)
        out = m if out is None else out & m
    return out


def check_mask(mask: Tensor) -> None:
    """Raise a clear error for a mask that is not boolean (the classic float/int mask mix-up)."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"A mask must be a torch.Tensor of dtype torch.bool; got {type(mask).__name__}.")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"Masks in this course are boolean (True = may attend); got dtype {mask.dtype}. "
            "Convert with `mask.bool()` if 1 means 'may attend', or `mask == 0` if it is an additive -inf mask."
        )
