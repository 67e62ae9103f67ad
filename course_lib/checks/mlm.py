"""Checks for lesson 02: MLM corruption and loss."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..losses import IGNORE
from ..losses import mlm_loss as _ref_mlm_loss

from ._core import (_CHECKS, NINF, PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, SEP_ID, SPECIAL_IDS, _Case, _Fail, _NotImplementedYet, _Variant, _call, _clone, _diagnose, _fmt, _gen, _logits_case, _MEAN, _nll, _ok, _one_line, _padded_tokens, _pads_ignored, _pending, _randn, _run, _same, _shape, register)  # noqa: F401

__all__ = ["check_mlm_corrupt", "check_mlm_loss"]



# --------------------------------------------------------------------------------------------
# 5. MLM corruption and loss
# --------------------------------------------------------------------------------------------
def _mlm_stats(tokens: Tensor, inputs: Tensor, labels: Tensor, vocab_size: int, mask_id: int) -> dict:
    special = torch.zeros_like(tokens, dtype=torch.bool)
    for s in SPECIAL_IDS:
        special |= tokens == s
    chosen = labels != IGNORE
    n_chosen = max(int(chosen.sum()), 1)
    masked = chosen & (inputs == mask_id)
    same = chosen & (inputs == tokens)
    rand = chosen & ~masked & ~same
    return {
        "special": special,
        "chosen": chosen,
        "frac_chosen": int((chosen & ~special).sum()) / max(int((~special).sum()), 1),
        "frac_mask": int(masked.sum()) / n_chosen,
        "frac_random": int(rand.sum()) / n_chosen,
        "frac_same": int(same.sum()) / n_chosen,
        "random_ids": inputs[rand],
    }


def _check_mlm_case(name: str, case: _Case, tokens: Tensor, got, p: float, vocab_size: int, mask_id: int) -> None:
    where = f"(seen on the case '{case.name}')"
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(t, Tensor) for t in got)):
        raise _Fail(f"{name} should return a pair of tensors (inputs, labels); got {type(got).__name__} {where}.")
    inputs, labels = got
    for what, t in (("inputs", inputs), ("labels", labels)):
        if t.shape != tokens.shape:
            raise _Fail(f"{name} returned {what} of shape {_fmt(_shape(t))} but the expected shape is {_fmt(_shape(tokens))} (the shape of tokens) {where}.")
        if t.is_floating_point() or t.dtype == torch.bool:
            raise _Fail(f"{name} returned {what} of dtype {t.dtype}; token ids must be integers (torch.long) {where}.")
    if not bool((labels == IGNORE).any()) and bool((labels == PAD_ID).any()) and bool(((labels == PAD_ID) & (tokens != PAD_ID)).any()):
        raise _Fail(f"{name}: positions that were not chosen must get the label IGNORE = -100 (course_lib.IGNORE), not 0, which is the PAD token {where}.")
    if tokens.numel() >= 1000 and p < 0.9 and float((labels != IGNORE).float().mean()) > 0.98:
        raise _Fail(f"{name}: every position got a label; labels must be IGNORE (-100) at positions that were not chosen, so the loss only scores the ~{p:.0%} chosen ones {where}.")
    st = _mlm_stats(tokens, inputs, labels, vocab_size, mask_id)
    special, chosen = st["special"], st["chosen"]
    if bool((chosen & special).any()) or bool((inputs[special] != tokens[special]).any()):
        raise _Fail(f"{name}: special tokens (PAD, BOS, EOS, …, ids {list(SPECIAL_IDS)}) were corrupted or given labels; never choose a position that holds a special id {where}.")
    if bool((labels[chosen] != tokens[chosen]).any()):
        if torch.equal(labels[chosen], inputs[chosen]):
            raise _Fail(f"{name}: the labels hold the corrupted inputs; they must hold the original token at each chosen position {where}.")
        raise _Fail(f"{name}: at a chosen position the label must be the original token (tokens[i, t]) {where}.")
    big = int((~special).sum()) >= 1000  # small edge cases: only the exact properties
    fc = st["frac_chosen"]
    if big and fc > 0.98 and p < 0.9:
        raise _Fail(f"{name}: every non-special position got a label; labels must be IGNORE (-100) at positions that were not chosen, so the loss only scores the ~{p:.0%} chosen ones {where}.")
    if big and abs(fc - 0.8 * p) < min(0.02, abs(fc - p)) and st["frac_mask"] > 0.97:
        raise _Fail(f"{name}: only the [MASK]ed positions got labels ({fc:.1%} instead of {p:.0%}); the 10% replaced by a random token and the 10% left unchanged are predicted too, so label every chosen position {where}.")
    if bool((inputs[~chosen] != tokens[~chosen]).any()):
        raise _Fail(f"{name}: some positions were changed but their label is IGNORE; every changed position must be chosen and labelled with its original token {where}.")
    if not big:
        return
    if abs(fc - p) > 0.02:
        raise _Fail(f"{name} chose {fc:.1%} of the non-special positions but p={p}; choose each position independently with probability p {where}.")
    fm, fr, fs = st["frac_mask"], st["frac_random"], st["frac_same"]
    if abs(fm - 0.8) > 0.035 or abs(fr - 0.1) > 0.035 or abs(fs - 0.1) > 0.035:
        raise _Fail(
            f"{name}: of the chosen positions 80% should become MASK, 10% a random token and 10% stay unchanged, "
            f"but yours are {fm:.0%} / {fr:.0%} / {fs:.0%} {where}."
        )
    rid = st["random_ids"]
    if rid.numel() and (bool((rid < len(SPECIAL_IDS)).any()) or bool((rid >= vocab_size).any())):
        raise _Fail(f"{name}: random replacements must be ordinary tokens, ids {len(SPECIAL_IDS)} … vocab_size - 1, never special ids or ids outside the vocabulary {where}.")


@register("mlm_corrupt")
def check_mlm_corrupt(fn: Callable) -> bool:
    """Check ``fn(tokens, vocab_size, mask_id, p=0.15) -> (inputs, labels)``: BERT's 80/10/10
    corruption of a fraction p of the non-special tokens. Randomness differs from the reference,
    so the check tests *properties*: shapes, specials untouched, labels, proportions."""
    name = "mlm_corrupt"
    if not callable(fn):
        raise AssertionError(f"check_{name} needs your function itself, e.g. check_{name}({name}); got a {type(fn).__name__}.")
    g = _gen(505)
    vocab = 50
    big = _padded_tokens(g, torch.randint(20, 49, (256,), generator=g).tolist(), 48, vocab=vocab, bos=True, eos=True)
    tiny = torch.tensor([[7]])
    specials = torch.tensor([[BOS_ID, EOS_ID, PAD_ID, PAD_ID], [BOS_ID, SEP_ID, UNK_ID, EOS_ID]])
    cases = [
        _Case("a large padded batch with BOS/EOS, p=0.15", (big, vocab, MASK_ID), {"p": 0.15}),
        _Case("the same batch with p=0.5", (big, vocab, MASK_ID), {"p": 0.5}),
        _Case("a batch of one, length one", (tiny, vocab, MASK_ID), {"p": 0.15}),
        _Case("rows made only of special tokens", (specials, vocab, MASK_ID), {"p": 0.5}),
    ]
    try:
        for i, case in enumerate(cases):
            tokens = case.args[0]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(1000 + i)
                got = _call(name, fn, _Case(case.name, (tokens,) + case.args[1:], case.kwargs))
            # _call works on a copy; in-place edits are probed once more below, on the real tensor
            _check_mlm_case(name, case, tokens.clone(), got, case.kwargs["p"], vocab, MASK_ID)
        probe = big.clone()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            with torch.no_grad():
                fn(probe, vocab, MASK_ID, p=0.5)
        if not torch.equal(probe, big):
            raise _Fail(f"{name} changed `tokens` in place; work on a copy (tokens.clone()) so the original sentence stays intact.")
    except _NotImplementedYet:
        return _pending(name)
    except _Fail as e:
        raise AssertionError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - the in-place probe above called fn directly
        if isinstance(e, NotImplementedError):
            return _pending(name)
        raise AssertionError(f"{name} raised {_one_line(e).rstrip('.')}; read the error, fix the cell above and run it again.") from None
    return _ok(name, len(cases), "cases pass")


_MLM_LOSS_VARIANTS = [  # the NaN one first: on the all-IGNORE case every NaN-giving variant matches
    _Variant(lambda lg, lb: F.cross_entropy(lg.flatten(0, 1), lb.flatten(), ignore_index=IGNORE),
             "when no position is masked the loss must be 0, not NaN (0 / 0); return `logits.sum() * 0.0` in that case."),
    _Variant(lambda lg, lb: _nll(lg, lb.clamp(min=0)).mean(),
             "the loss counts positions that were not masked; only positions whose label is not IGNORE (-100) count."),
    _Variant(lambda lg, lb: _nll(lg, lb).mean(),
             "the loss is averaged over all positions; divide the summed loss by the number of masked positions (labels != IGNORE), not by B·T."),
    _Variant(lambda lg, lb: _nll(lg, lb).sum(), _MEAN),
    _Variant(lambda lg, lb: F.nll_loss(lg.flatten(0, 1), lb.flatten(), ignore_index=IGNORE),
             "the logits are used as log-probabilities; apply log_softmax first (or call F.cross_entropy on the logits)."),
    _Variant(lambda lg, lb: F.nll_loss(lg.softmax(-1).log().flatten(0, 1), lb.flatten(), ignore_index=IGNORE),
             "log(softmax(logits)) underflows to -inf for large logits; use F.log_softmax or F.cross_entropy, which are numerically stable."),
]


@register("mlm_loss")
def check_mlm_loss(fn: Callable) -> bool:
    """Check ``fn(logits (B, T, V), labels (B, T)) -> scalar``: mean cross-entropy over labels != IGNORE."""
    g = _gen(606)

    def labels_like(tokens, keep):
        return torch.where(keep, tokens, torch.full_like(tokens, IGNORE))

    tok = torch.randint(6, 11, (2, 6), generator=g)
    keep = torch.rand(2, 6, generator=g) < 0.4
    keep[0, 0] = True
    cases = [_Case("a batch with a few masked positions", (_logits_case(g, 2, 6, 11), labels_like(tok, keep)))]
    tok = torch.randint(6, 11, (1, 1), generator=g)
    cases.append(_Case("a batch of one, length one", (_logits_case(g, 1, 1, 11), tok.clone())))
    tok = torch.randint(6, 11, (3, 4), generator=g)
    keep = torch.zeros(3, 4, dtype=torch.bool)
    keep[1, 2] = True
    cases.append(_Case("exactly one masked position", (_logits_case(g, 3, 4, 11), labels_like(tok, keep))))
    tok = torch.randint(6, 11, (2, 5), generator=g)
    keep = torch.rand(2, 5, generator=g) < 0.5
    keep[1, 4] = True
    cases.append(_Case("large logits (numerical stability)", (_logits_case(g, 2, 5, 11, scale=200.0), labels_like(tok, keep))))
    cases.append(_Case("no masked position at all", (_logits_case(g, 2, 3, 11), torch.full((2, 3), IGNORE))))
    return _run("mlm_loss", fn, cases, lambda lg, lb: _ref_mlm_loss(lg, lb), _MLM_LOSS_VARIANTS)


