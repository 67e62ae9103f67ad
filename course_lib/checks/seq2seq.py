"""Checks for lesson 04: shift_right and the seq2seq loss."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..losses import IGNORE
from ..losses import seq2seq_loss as _ref_seq2seq_loss
from ..losses import shift_right as _ref_shift_right

from ._core import (_CHECKS, NINF, PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, SEP_ID, SPECIAL_IDS, _Case, _Fail, _NotImplementedYet, _Variant, _call, _clone, _diagnose, _fmt, _gen, _logits_case, _MEAN, _nll, _ok, _one_line, _padded_tokens, _pads_ignored, _pending, _randn, _run, _same, _shape, register)  # noqa: F401

__all__ = ["check_shift_right", "check_seq2seq_loss"]



# --------------------------------------------------------------------------------------------
# 7. seq2seq: shift_right and the loss
# --------------------------------------------------------------------------------------------
_SHIFT_VARIANTS = [
    _Variant(lambda y, bos: y.clone(),
             "the decoder input is the target itself, so the decoder sees the token it must predict; shift right: [BOS, y_1, …, y_{{T-1}}]."),
    _Variant(lambda y, bos: torch.cat([torch.full_like(y[:, :1], PAD_ID), y[:, :-1]], 1),
             "the first decoder input must be BOS (bos_id), not padding: [BOS, y_1, …, y_{{T-1}}]."),
    _Variant(lambda y, bos: y[:, :-1],
             "BOS is missing: prepend bos_id so the decoder input keeps the targets' length T ([BOS, y_1, …, y_{{T-1}}]); got shape {got}, expected {expected}."),
    _Variant(lambda y, bos: torch.cat([torch.full_like(y[:, :1], bos), y], 1),
             "drop the last target token after prepending BOS, so the decoder input keeps length T; got shape {got}, expected {expected}."),
    _Variant(lambda y, bos: torch.cat([y[:, 1:], torch.full_like(y[:, :1], PAD_ID)], 1),
             "the targets are shifted left instead of right: the decoder input is [BOS, y_1, …, y_{{T-1}}]."),
    _Variant(lambda y, bos: torch.cat([y[:, 1:], torch.full_like(y[:, :1], bos)], 1),
             "the targets are shifted left instead of right: the decoder input is [BOS, y_1, …, y_{{T-1}}]."),
    _Variant(lambda y, bos: torch.cat([torch.full_like(y[:, :1], BOS_ID), y[:, :-1]], 1),
             "the bos_id argument is ignored; fill the first column with bos_id, not a hard-coded 1."),
]


@register("shift_right")
def check_shift_right(fn: Callable) -> bool:
    """Check ``fn(targets (B, T), bos_id) -> [BOS, y_1 … y_{T-1}] (B, T)``."""
    g = _gen(808)
    cases = [
        _Case("targets ending in EOS, then padding", (_padded_tokens(g, [5, 3], 6, eos=True), BOS_ID)),
        _Case("no padding", (_padded_tokens(g, [4, 4, 4], 4, eos=True), BOS_ID)),
        _Case("a batch of one, length one", (torch.tensor([[EOS_ID]]), BOS_ID)),
        _Case("bos_id=9", (_padded_tokens(g, [3, 2], 3, eos=True), 9)),
    ]
    return _run("shift_right", fn, cases, _ref_shift_right, _SHIFT_VARIANTS)


_S2S_VARIANTS = [
    _Variant(lambda lg, y, pad_id=0: F.cross_entropy(lg[:, :-1].flatten(0, 1), y[:, 1:].flatten(), ignore_index=pad_id),
             "the logits are already aligned with the targets (the decoder input was shifted right), so do not shift again: compare logits[:, t] with targets[:, t]."),
    _Variant(lambda lg, y, pad_id=0: F.cross_entropy(lg.flatten(0, 1), y.flatten()),
             "padding is scored: targets equal to pad_id must be ignored (ignore_index=pad_id)."),
    _Variant(lambda lg, y, pad_id=0: _nll(lg, _pads_ignored(y, pad_id)).sum(), _MEAN),
    _Variant(lambda lg, y, pad_id=0: F.cross_entropy(lg.flatten(0, 1), _ref_shift_right(y, BOS_ID).flatten(), ignore_index=pad_id),
             "the logits are scored against the decoder input; score them against the targets y (what the decoder must predict), not shift_right(y)."),
    _Variant(lambda lg, y, pad_id=0: _nll(lg, _pads_ignored(y, pad_id)).mean(),
             "the loss is averaged over all positions, padding included; divide by the number of non-pad targets."),
]


@register("seq2seq_loss")
def check_seq2seq_loss(fn: Callable) -> bool:
    """Check ``fn(logits (B, T, V), targets (B, T), pad_id=0) -> scalar``: cross-entropy of the decoder's
    logits (from ``shift_right(targets)``) against ``targets``, padding ignored, mean over real tokens."""
    g = _gen(909)
    V = 13
    tk = lambda lengths, t: _padded_tokens(g, lengths, t, vocab=V, eos=True)
    cases = [
        _Case("targets ending in EOS, then padding", (_logits_case(g, 3, 5, V), tk([5, 3, 2], 5))),
        _Case("no padding", (_logits_case(g, 2, 4, V), tk([4, 4], 4))),
        _Case("a batch of one, length one", (_logits_case(g, 1, 1, V), torch.tensor([[EOS_ID]]))),
        _Case("large logits (numerical stability)", (_logits_case(g, 2, 4, V, scale=200.0), tk([4, 2], 4))),
    ]
    return _run("seq2seq_loss", fn, cases, lambda lg, y: _ref_seq2seq_loss(lg, y, pad_id=PAD_ID), _S2S_VARIANTS)

