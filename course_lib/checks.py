"""Instant feedback for the exercise notebooks.

Each ``check_<name>(fn)`` runs a learner's function against the library's reference
implementation on several seeded cases (edge cases included: padding, a fully masked row, a
batch of one, length one) and answers in **one sentence**:

* success: prints ``✅ <name>: all N cases match.`` and returns ``True``;
* the function still raises ``NotImplementedError``: prints ``⏳ <name>: not implemented yet …``
  and returns ``False`` *without raising*, so an unsolved notebook runs top to bottom;
* a wrong answer: raises ``AssertionError`` whose message names the likely mistake. The check
  finds it by comparing the learner's output with *known-wrong* variants of the reference
  (missing 1/√d_k, softmax over the wrong axis, an inverted mask, unshifted targets, …);
* any other exception: re-raised as an ``AssertionError`` with one sentence naming it.

``use_or_reference(mine, reference)`` lets a later task build on an earlier one: it returns the
learner's function when it passes its check, the library's otherwise, and says which.

The signatures the checks expect (the exercise notebooks state them too)::

    scaled_dot_product_attention(q, k, v, mask=None) -> out (..., T_q, d_v)
    causal_mask(t) -> bool (t, t)
    padding_mask(tokens, pad_id=0) -> bool (B, 1, 1, T)
    prefix_mask(t, prefix_len) -> bool (t, t)
    split_heads(x, n_heads) -> (B, H, T, D)          merge_heads(x) -> (B, T, H*D)
    cross_attention(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None) -> (B, T, d)
        (weights are (d, d) matrices used as ``x @ w_q``; no biases)
    mlm_corrupt(tokens, vocab_size, mask_id, p=0.15) -> (inputs, labels)
    mlm_loss(logits, labels) -> scalar          clm_loss(logits, tokens, pad_id=0) -> scalar
    shift_right(targets, bos_id) -> (B, T)      seq2seq_loss(logits, targets, pad_id=0) -> scalar
    greedy_decode_with_cache(model, prompt, max_new_tokens, eos_id=2, pad_id=0) -> (B, <= max_new_tokens)
"""
from __future__ import annotations

import contextlib
import functools
import io
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from .attention import MultiHeadAttention
from .attention import scaled_dot_product_attention as _ref_sdpa
from .config import ModelConfig
from .generation import generate
from .losses import IGNORE
from .losses import clm_loss as _ref_clm_loss
from .losses import mlm_loss as _ref_mlm_loss
from .losses import seq2seq_loss as _ref_seq2seq_loss
from .losses import shift_right as _ref_shift_right
from .masks import causal_mask as _ref_causal_mask
from .masks import padding_mask as _ref_padding_mask
from .masks import prefix_mask as _ref_prefix_mask
from .models import DecoderOnly

__all__ = [
    "check_scaled_dot_product_attention",
    "check_causal_mask",
    "check_padding_mask",
    "check_prefix_mask",
    "check_split_heads",
    "check_merge_heads",
    "check_cross_attention",
    "check_mlm_corrupt",
    "check_mlm_loss",
    "check_clm_loss",
    "check_shift_right",
    "check_seq2seq_loss",
    "check_greedy_decode_with_cache",
    "use_or_reference",
    "reference_split_heads",
    "reference_merge_heads",
    "reference_cross_attention",
    "reference_greedy_decode_with_cache",
    "toy_decoder",
]

# The course's special token ids (course_lib.tokenizer): PAD 0, BOS 1, EOS 2, UNK 3, MASK 4, SEP 5.
PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, SEP_ID = 0, 1, 2, 3, 4, 5
SPECIAL_IDS = (PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, SEP_ID)
NINF = float("-inf")


# --------------------------------------------------------------------------------------------
# references for the exercises that have no function of the same shape in the library
# --------------------------------------------------------------------------------------------
def reference_split_heads(x: Tensor, n_heads: int) -> Tensor:
    """``(B, T, H*D) -> (B, H, T, D)``: head h gets features ``h*D … (h+1)*D - 1``."""
    return rearrange(x, "b t (h d) -> b h t d", h=n_heads)


def reference_merge_heads(x: Tensor) -> Tensor:
    """``(B, H, T, D) -> (B, T, H*D)``, the inverse of :func:`reference_split_heads`."""
    return rearrange(x, "b h t d -> b t (h d)")


def _mha_from_matrices(w_q: Tensor, w_k: Tensor, w_v: Tensor, w_o: Tensor, n_heads: int) -> MultiHeadAttention:
    """A :class:`MultiHeadAttention` (no biases) computing ``Q = x @ w_q`` etc."""
    d = w_q.shape[0]
    mha = MultiHeadAttention(d, n_heads, bias=False)
    with torch.no_grad():
        mha.in_proj.weight.copy_(torch.cat([w_q.T, w_k.T, w_v.T], dim=0))  # nn.Linear computes x @ W.T
        mha.out_proj.weight.copy_(w_o.T)
    return mha.eval()


def reference_cross_attention(
    x: Tensor, context: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor, w_o: Tensor, n_heads: int, context_mask: Tensor | None = None
) -> Tensor:
    """Cross-attention with the library's :class:`MultiHeadAttention` (weights copied in):
    queries from the decoder stream ``x (B, T, d)``, keys/values from ``context (B, S, d)``."""
    with torch.no_grad():
        return _mha_from_matrices(w_q, w_k, w_v, w_o, n_heads)(x, context=context, mask=context_mask)


def reference_greedy_decode_with_cache(model, prompt: Tensor, max_new_tokens: int, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> Tensor:
    """Greedy decoding with the KV cache: :func:`course_lib.generate` with ``temperature=0``."""
    return generate(model, prompt, max_new_tokens, eos_id=eos_id, pad_id=pad_id)


# --------------------------------------------------------------------------------------------
# machinery
# --------------------------------------------------------------------------------------------
class _NotImplementedYet(Exception):
    """The learner's function raised NotImplementedError."""


class _Fail(Exception):
    """One-sentence diagnosis; turned into an AssertionError at the top of the check."""


@dataclass
class _Case:
    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)


@dataclass
class _Variant:
    """A known-wrong implementation and the sentence that explains the mistake.
    ``hint`` may use ``{got}`` and ``{expected}`` (the two shapes)."""

    fn: Callable[..., Any]
    hint: str


def _clone(obj):
    if isinstance(obj, Tensor):
        return obj.clone()
    if isinstance(obj, tuple):
        return tuple(_clone(o) for o in obj)
    if isinstance(obj, list):
        return [_clone(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    return obj


def _shape(t) -> tuple:
    return tuple(t.shape)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _call(name: str, fn: Callable, case: _Case):
    """Call the learner's function on a copy of the case's inputs."""
    try:
        with torch.no_grad():
            return fn(*_clone(case.args), **_clone(case.kwargs))
    except NotImplementedError:
        raise _NotImplementedYet from None
    except Exception as e:  # noqa: BLE001 - any learner error becomes one friendly sentence
        raise _Fail(f"{name} raised {_one_line(e).rstrip('.')} on the case '{case.name}'; read the error, fix the cell above and run it again.") from None


def _as_tensor(x):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return torch.tensor(float(x))
    return x


def _same(a, b, *, lenient: bool = False, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Do two results agree? ``lenient`` also accepts agreement once NaN/±inf become 0 (used only
    for matching known-wrong variants, whose NaNs a learner may have zeroed)."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y, lenient=lenient, atol=atol, rtol=rtol) for x, y in zip(a, b))
    a, b = _as_tensor(a), _as_tensor(b)
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        return False
    if a.numel() == 1 and b.numel() == 1:  # a loss: accept a 0-d tensor, a (1,) tensor or a float
        a, b = a.reshape(()), b.reshape(())
    if a.shape != b.shape:
        return False
    if a.dtype == torch.bool or b.dtype == torch.bool or not (a.is_floating_point() or b.is_floating_point()):
        return torch.equal(a.long(), b.long())
    a, b = a.detach().double(), b.detach().double()
    if torch.allclose(a, b, atol=atol, rtol=rtol, equal_nan=True) and torch.equal(a.isinf(), b.isinf()):
        return True
    if lenient:
        z = lambda t: torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
        return torch.allclose(z(a), z(b), atol=atol, rtol=rtol)
    return False


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _diagnose(name: str, case: _Case, got, expected, variants: Sequence[_Variant], *, is_mask: bool = False) -> str | None:
    """None if ``got`` matches ``expected``; otherwise one sentence naming the likely mistake."""
    if got is None:
        return f"{name} returned None on the case '{case.name}'; did you forget the `return` statement?"
    if is_mask and isinstance(got, Tensor) and got.dtype != torch.bool:
        if got.is_floating_point() and bool(torch.isinf(got).any()):
            return (
                f"{name} returned an additive float mask (0 / -inf); in this course a mask is boolean with "
                "True = may attend, so return a torch.bool tensor."
            )
        if got.shape == expected.shape and torch.equal(got != 0, expected):
            return f"{name} returned dtype {got.dtype} but masks in this course are boolean (True = may attend): add `.bool()` or build it with a comparison."
    if _same(got, expected):
        return None
    got_cmp = got.ne(0) if (is_mask and isinstance(got, Tensor) and got.dtype != torch.bool) else got
    for v in variants:
        try:
            with torch.no_grad():
                wrong = v.fn(*_clone(case.args), **_clone(case.kwargs))
        except Exception:  # noqa: BLE001 - a variant that cannot run on this case tells us nothing
            continue
        if _same(wrong, expected):
            continue  # this mistake is invisible on this case
        if _same(got_cmp, wrong) or _same(got_cmp, wrong, lenient=True):
            try:
                hint = v.hint.format(got=_fmt(_shape(got)), expected=_fmt(_shape(expected)))
            except Exception:  # noqa: BLE001
                hint = v.hint
            return f"{name}: {hint.rstrip('.')} (seen on the case '{case.name}')."
    if isinstance(expected, Tensor):
        if not isinstance(got, Tensor):
            if isinstance(got, (int, float)) and expected.numel() == 1:
                pass
            else:
                return f"{name} returned a {type(got).__name__} on the case '{case.name}' but should return a torch.Tensor of shape {_fmt(_shape(expected))}."
        got_t = _as_tensor(got)
        if expected.numel() == 1 and got_t.numel() != 1:
            return (
                f"{name} returned a tensor of shape {_fmt(_shape(got_t))} on the case '{case.name}' but should return a single "
                "number (the mean over the counted tokens), shape ()."
            )
        if got_t.numel() != 1 and got_t.shape != expected.shape:
            return f"{name} returned shape {_fmt(_shape(got_t))} but the expected shape is {_fmt(_shape(expected))} on the case '{case.name}'."
        if got_t.is_floating_point() and bool(torch.isnan(got_t).any()) and not bool(torch.isnan(expected).any()):
            return f"{name} returned NaN on the case '{case.name}', where the reference has finite values; look for a softmax or mean over an empty set."
        if got_t.is_floating_point() and expected.is_floating_point():
            diff = (got_t.detach().double().reshape(expected.shape) - expected.double()).abs().nan_to_num(nan=float("inf")).max().item()
            return f"{name} gives different values from the reference on the case '{case.name}' (largest difference {diff:.3g}); compare your code with the formula above, step by step."
        wrong = int((got_t.reshape(expected.shape).long() != expected.long()).sum())
        return f"{name} differs from the reference in {wrong} of {expected.numel()} entries on the case '{case.name}'; compare your code with the formula above."
    return f"{name} gives a different result from the reference on the case '{case.name}'."


def _ok(name: str, n: int, what: str = "cases match") -> bool:
    print(f"✅ {name}: all {n} {what}.")
    return True


def _pending(name: str) -> bool:
    print(f"⏳ {name}: not implemented yet — fill in the cell above and run it again.")
    return False


def _run(name: str, fn: Callable, cases: Sequence[_Case], reference: Callable, variants: Sequence[_Variant], *, is_mask: bool = False) -> bool:
    if not callable(fn):
        raise AssertionError(f"check_{name} needs your function itself, e.g. check_{name}({name}); got a {type(fn).__name__}.")
    try:
        with torch.random.fork_rng(devices=[]):  # a check never changes the notebook's random state
            for case in cases:
                torch.manual_seed(0)
                with torch.no_grad():
                    expected = reference(*_clone(case.args), **_clone(case.kwargs))
                got = _call(name, fn, case)
                problem = _diagnose(name, case, got, expected, variants, is_mask=is_mask)
                if problem:
                    raise _Fail(problem)
    except _NotImplementedYet:
        return _pending(name)
    except _Fail as e:
        raise AssertionError(str(e)) from None
    return _ok(name, len(cases))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=g)


def _padded_tokens(g: torch.Generator, lengths: Sequence[int], t: int, vocab: int = 20, bos: bool = False, eos: bool = False) -> Tensor:
    """Right-padded ids ``(B, t)``: ordinary tokens (ids >= 6), optional BOS/EOS, then PAD."""
    out = torch.full((len(lengths), t), PAD_ID, dtype=torch.long)
    for i, n in enumerate(lengths):
        row = torch.randint(len(SPECIAL_IDS), vocab, (n,), generator=g)
        if bos and n > 0:
            row[0] = BOS_ID
        if eos and n > 1:
            row[-1] = EOS_ID
        out[i, :n] = row
    return out


# --------------------------------------------------------------------------------------------
# 1. scaled dot-product attention
# --------------------------------------------------------------------------------------------
def _sdpa_formula(q, k, v, mask=None, *, scale="sqrt_dk", fill="ninf", axis=-1, empty="zero", weights_only=False):
    d = {"sqrt_dk": math.sqrt(q.shape[-1]), "none": 1.0, "dk": float(q.shape[-1]), "sqrt_dv": math.sqrt(v.shape[-1])}[scale]
    s = q @ k.transpose(-2, -1) / d
    if mask is not None:
        if fill == "ninf":
            s = s.masked_fill(~mask, NINF)
        elif fill == "inverted":
            s = s.masked_fill(mask, NINF)
        elif fill == "zero":
            s = s.masked_fill(~mask, 0.0)
        elif fill == "big":
            s = s.masked_fill(~mask, -1e9)
    w = s.softmax(dim=axis)
    if mask is not None and fill == "after":
        w = w.masked_fill(~mask, 0.0)
    if empty == "zero":
        w = torch.nan_to_num(w, nan=0.0)
    return w if weights_only else w @ v


_SDPA_VARIANTS = [
    _Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m, scale="none"),
             "the scores are not divided by √d_k; compute softmax(Q Kᵀ / √d_k) V with d_k = q.shape[-1]."),
    _Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m, scale="dk"),
             "the scores are divided by d_k instead of √d_k; use math.sqrt(d_k)."),
    _Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m, scale="sqrt_dv"),
             "the scores are scaled with the size of V; divide by √d_k, where d_k = q.shape[-1] is the size of the queries and keys."),
    _Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m, axis=-2),
             "the softmax runs over the wrong axis; normalise over the keys (dim=-1), so each query's weights sum to 1."),
    _Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m, fill="after"),
             "the mask is applied after the softmax, so the remaining weights no longer sum to 1; fill masked scores with -inf before the softmax."),
    _Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m, fill="inverted"),
             "the mask is inverted: True means 'may attend', so fill the scores where the mask is False (`~mask`) with -inf."),
    _Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m, fill="zero"),
             "masked scores are set to 0 instead of -inf, and a score of 0 still gets probability; use scores.masked_fill(~mask, float('-inf'))."),
    _Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m, empty="nan"),
             "a query whose keys are all masked gives NaN (the softmax of a row of -inf); give such rows an output of zeros, e.g. weights = torch.nan_to_num(weights)."),
    _Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m, fill="big"),
             "a query whose keys are all masked should get an output of zeros, not the average of all values; zero the weights of rows with no visible key."),
    _Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m, weights_only=True),
             "you returned the attention weights {got}; multiply them by V to get the output {expected}."),
]


def _sdpa_cases() -> list[_Case]:
    g = _gen(101)
    cases = [_Case("no mask, (B, H, T, d) inputs", (_randn(g, 2, 2, 4, 8), _randn(g, 2, 2, 4, 8), _randn(g, 2, 2, 4, 6)))]
    cases.append(_Case("a causal mask (T, T)", (_randn(g, 2, 3, 5, 8), _randn(g, 2, 3, 5, 8), _randn(g, 2, 3, 5, 8), _ref_causal_mask(5))))
    pad = _ref_padding_mask(_padded_tokens(g, [6, 3], 6))
    cases.append(_Case("a padding mask (B, 1, 1, T_k) with T_q != T_k", (_randn(g, 2, 2, 3, 8), _randn(g, 2, 2, 6, 8), _randn(g, 2, 2, 6, 4), pad)))
    cases.append(_Case("a batch of one with a single query and key", (_randn(g, 1, 1, 1, 8), _randn(g, 1, 1, 1, 8), _randn(g, 1, 1, 1, 8))))
    cases.append(_Case("3-D inputs (B, T, d) without a head axis", (_randn(g, 3, 4, 16), _randn(g, 3, 5, 16), _randn(g, 3, 5, 16))))
    full = torch.ones(2, 1, 4, 5, dtype=torch.bool)
    full[0, 0, 1] = False  # query 1 of the first sequence may see no key at all
    full[1, 0, :, 3:] = False
    cases.append(_Case("a fully masked query row", (_randn(g, 2, 1, 4, 8), _randn(g, 2, 1, 5, 8), _randn(g, 2, 1, 5, 8), full)))
    return cases


def check_scaled_dot_product_attention(fn: Callable) -> bool:
    """Check ``fn(q, k, v, mask=None) -> softmax(QKᵀ/√d_k, masked) V`` (a query with no visible key -> zeros)."""

    def ref(q, k, v, mask=None):
        return _ref_sdpa(q, k, v, mask)

    def learner(q, k, v, mask=None):
        out = fn(q, k, v) if mask is None else fn(q, k, v, mask)
        if isinstance(out, tuple) and len(out) == 2:  # (out, weights) is fine too
            out = out[0]
        return out

    if not callable(fn):
        return _run("scaled_dot_product_attention", fn, [], ref, [])
    return _run("scaled_dot_product_attention", learner, _sdpa_cases(), ref, _SDPA_VARIANTS)


# --------------------------------------------------------------------------------------------
# 2. masks
# --------------------------------------------------------------------------------------------
_INVERTED = "the mask is inverted: True must mean 'may attend' (and False 'hidden'), so flip it with `~`."

_CAUSAL_VARIANTS = [
    _Variant(lambda t: torch.ones(t, t, dtype=torch.bool).tril(-1),
             "the diagonal is missing: every position must also attend to itself (j <= i), so use tril with diagonal=0."),
    _Variant(lambda t: torch.ones(t, t, dtype=torch.bool).tril(1),
             "one future token is visible: query i may see keys j <= i, not j <= i + 1."),
    _Variant(lambda t: torch.ones(t, t, dtype=torch.bool).triu(1), _INVERTED),
    _Variant(lambda t: torch.ones(t, t, dtype=torch.bool).triu(),
             "the mask is transposed: query i (row) sees keys j >= i, the future; keep the lower triangle (torch.tril)."),
    _Variant(lambda t: torch.ones(t, t, dtype=torch.bool),
             "every key is visible, which is the encoder's mask; a decoder must hide the future keys j > i."),
]


def check_causal_mask(fn: Callable) -> bool:
    """Check ``fn(t) -> bool (t, t)`` with True where key j <= query i."""
    cases = [_Case(f"t={t}", (t,)) for t in (4, 1, 2, 7)]
    cases[1].name = "t=1 (a single position)"
    return _run("causal_mask", fn, cases, lambda t: _ref_causal_mask(t), _CAUSAL_VARIANTS, is_mask=True)


_PADDING_VARIANTS = [
    _Variant(lambda tok, pad_id=0: (tok == pad_id)[:, None, None, :], _INVERTED),
    _Variant(lambda tok, pad_id=0: tok != pad_id,
             "the mask has shape {got} but must be (B, 1, 1, T) so it broadcasts over heads and queries: index it with [:, None, None, :]."),
    _Variant(lambda tok, pad_id=0: (tok != pad_id)[:, None, :, None],
             "the mask hides padded *queries* (shape {got}); it must hide padded *keys*, shape (B, 1, 1, T)."),
    _Variant(lambda tok, pad_id=0: (tok != pad_id)[:, None, :],
             "the mask has shape {got} but must be (B, 1, 1, T), one axis for heads and one for queries: index it with [:, None, None, :]."),
    _Variant(lambda tok, pad_id=0: (tok != 0)[:, None, None, :],
             "the pad_id argument is ignored; compare the tokens with pad_id, not with 0."),
    _Variant(lambda tok, pad_id=0: (tok == pad_id)[:, None, :],
             "the mask is inverted and has shape {got}: True must mean 'may attend', and the shape must be (B, 1, 1, T)."),
]


def check_padding_mask(fn: Callable) -> bool:
    """Check ``fn(tokens, pad_id=0) -> bool (B, 1, 1, T)``, True on real (non-pad) tokens."""
    g = _gen(202)
    cases = [
        _Case("a right-padded batch", (_padded_tokens(g, [5, 3, 1], 5),)),
        _Case("no padding at all", (_padded_tokens(g, [4, 4], 4),)),
        _Case("a batch of one, length one", (_padded_tokens(g, [1], 1),)),
        _Case("a row that is all padding", (_padded_tokens(g, [3, 0], 3),)),
    ]
    toks = _padded_tokens(g, [4, 2], 4) + 3  # pad 0 -> 3; ids now >= 3, with 9 used as the pad
    toks[0, 1] = 0  # an id 0 that is *not* padding here
    toks[toks == 3] = 9
    cases.append(_Case("pad_id=9 passed as the second argument", (toks, 9)))
    return _run("padding_mask", fn, cases, _ref_padding_mask, _PADDING_VARIANTS, is_mask=True)


def _tri(t: int) -> Tensor:
    return torch.ones(t, t, dtype=torch.bool).tril()


_PREFIX_VARIANTS = [
    _Variant(lambda t, p: _tri(t),
             "the prefix is not bidirectional: every query must see all prefix keys j < prefix_len (and the rest causally)."),
    _Variant(lambda t, p: _tri(t) | (torch.arange(t) < p)[:, None],
             "queries inside the prefix see the tokens after it (the future); make the prefix *keys* visible, i.e. columns j < prefix_len, not rows."),
    _Variant(lambda t, p: _tri(t) | (torch.arange(t) <= p)[None, :],
             "off by one: the prefix is keys 0 … prefix_len - 1, so use j < prefix_len, not j <= prefix_len."),
    _Variant(lambda t, p: _tri(t) | (torch.arange(t) < p - 1)[None, :],
             "off by one: the prefix is keys 0 … prefix_len - 1, so use j < prefix_len, not j < prefix_len - 1."),
    _Variant(lambda t, p: ~(_tri(t) | (torch.arange(t) < p)[None, :]), _INVERTED),
    _Variant(lambda t, p: torch.ones(t, t, dtype=torch.bool),
             "everything is visible: after the prefix the mask must be causal (query i sees keys j <= i)."),
    _Variant(lambda t, p: (_tri(t) | (torch.arange(t) < p)[None, :]) & ((torch.arange(t) < p)[:, None] & (torch.arange(t) < p)[None, :]),
             "positions after the prefix see nothing: they must see the whole prefix plus themselves and earlier positions (causal)."),
]


def check_prefix_mask(fn: Callable) -> bool:
    """Check ``fn(t, prefix_len) -> bool (t, t)``: the prefix keys are visible to all, the rest is causal."""
    cases = [
        _Case("t=6, prefix_len=3", (6, 3)),
        _Case("t=5, prefix_len=2", (5, 2)),
        _Case("prefix_len=0 (plain causal)", (4, 0)),
        _Case("prefix_len=t (fully bidirectional)", (4, 4)),
        _Case("t=1, prefix_len=1", (1, 1)),
        _Case("t=7, prefix_len=5", (7, 5)),
    ]
    return _run("prefix_mask", fn, cases, lambda t, p: _ref_prefix_mask(t, p), _PREFIX_VARIANTS, is_mask=True)


# --------------------------------------------------------------------------------------------
# 3. heads
# --------------------------------------------------------------------------------------------
_HD = "the heads are split in the wrong order: use 'b t (h d) -> b h t d', so head h gets one contiguous block of d_head features."

_SPLIT_VARIANTS = [
    _Variant(lambda x, h: rearrange(x, "b t (d h) -> b h t d", h=h), _HD),
    _Variant(lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h),
             "reshaping straight to (B, H, T, D) mixes positions and heads; split the last axis into (H, D), then move H in front of T (transpose, or einops.rearrange)."),
    _Variant(lambda x, h: rearrange(x, "b t (h d) -> b t h d", h=h),
             "the result has shape {got}, i.e. (B, T, H, D); move the head axis in front of T to get {expected} = (B, H, T, D)."),
    _Variant(lambda x, h: rearrange(x, "b t (h d) -> b d t h", h=h),
             "n_heads is the number of heads H, not the size of a head: got shape {got}, expected (B, H, T, D) = {expected}."),
    _Variant(lambda x, h: rearrange(x, "b t (h d) -> b h t d", d=h),
             "n_heads is the number of heads H, not the size of a head: got shape {got}, expected (B, H, T, D) = {expected}."),
]

_MERGE_VARIANTS = [
    _Variant(lambda x: rearrange(x, "b h t d -> b t (d h)"),
             "the heads are merged in the wrong order: use 'b h t d -> b t (h d)', so head h's features stay one contiguous block."),
    _Variant(lambda x: x.reshape(x.shape[0], x.shape[2], -1),
             "reshaping (B, H, T, D) straight to (B, T, H*D) mixes positions and heads; move T in front of H first (transpose(1, 2), or einops.rearrange)."),
    _Variant(lambda x: rearrange(x, "b h t d -> b t h d"),
             "the result has shape {got}; the heads must also be concatenated into one feature axis, (B, T, H*D) = {expected}."),
]


def check_split_heads(fn: Callable) -> bool:
    """Check ``fn(x, n_heads)``: ``(B, T, H*D) -> (B, H, T, D)`` in the (h d) order."""
    g = _gen(303)
    cases = [
        _Case("B=2, T=5, H=3, D=4", (_randn(g, 2, 5, 12), 3)),
        _Case("B=2, T=3, H=2, D=6", (_randn(g, 2, 3, 12), 2)),
        _Case("a batch of one, length one", (_randn(g, 1, 1, 8), 2)),
        _Case("one head (H=1)", (_randn(g, 2, 3, 6), 1)),
        _Case("heads of size one (D=1)", (_randn(g, 2, 4, 4), 4)),
    ]
    return _run("split_heads", fn, cases, reference_split_heads, _SPLIT_VARIANTS)


def check_merge_heads(fn: Callable) -> bool:
    """Check ``fn(x)``: ``(B, H, T, D) -> (B, T, H*D)``, the inverse of ``split_heads``."""
    g = _gen(304)
    cases = [
        _Case("B=2, H=3, T=5, D=4", (_randn(g, 2, 3, 5, 4),)),
        _Case("B=2, H=2, T=3, D=6", (_randn(g, 2, 2, 3, 6),)),
        _Case("a batch of one, length one", (_randn(g, 1, 2, 1, 4),)),
        _Case("one head (H=1)", (_randn(g, 2, 1, 3, 6),)),
        _Case("heads of size one (D=1)", (_randn(g, 2, 4, 3, 1),)),
    ]
    return _run("merge_heads", fn, cases, reference_merge_heads, _MERGE_VARIANTS)


# --------------------------------------------------------------------------------------------
# 4. cross-attention
# --------------------------------------------------------------------------------------------
def _cross_formula(x, ctx, w_q, w_k, w_v, w_o, n_heads, context_mask=None, *, q_from="x", kv_from="ctx", order="h d",
                   scale="head", use_mask=True, use_wo=True, transpose_w=False, causal=False):
    lin = (lambda a, w: a @ w.T) if transpose_w else (lambda a, w: a @ w)
    q_in = x if q_from == "x" else ctx
    kv_in = ctx if kv_from == "ctx" else x
    split = lambda t: rearrange(t, f"b t ({order}) -> b h t d", h=n_heads)
    q, k, v = split(lin(q_in, w_q)), split(lin(kv_in, w_k)), split(lin(kv_in, w_v))
    d = {"head": math.sqrt(q.shape[-1]), "model": math.sqrt(w_q.shape[0]), "none": 1.0}[scale]
    s = q @ k.transpose(-2, -1) / d
    mask = context_mask if use_mask else None
    if causal:
        c = torch.ones(s.shape[-2], s.shape[-1], dtype=torch.bool).tril()
        mask = c if mask is None else mask & c
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    out = rearrange(torch.nan_to_num(s.softmax(-1)) @ v, f"b h t d -> b t ({order})")
    return lin(out, w_o) if use_wo else out


def _cv(hint: str, **flags) -> _Variant:
    return _Variant(lambda *a, **kw: _cross_formula(*a, **kw, **flags), hint)


_CROSS_VARIANTS = [
    _cv("K and V are computed from the decoder stream x; in cross-attention Q comes from x, but K and V come from the encoder output `context`.", kv_from="x"),
    _cv("queries and keys/values are swapped: Q = x @ w_q comes from the decoder (x), K and V from the encoder output (context).", q_from="ctx", kv_from="x"),
    _cv("the source padding is not masked; pass context_mask to the attention so decoder queries cannot attend to padded source tokens.", use_mask=False),
    _cv("cross-attention must not be causal: every decoder position may see the whole source, so use only context_mask.", causal=True),
    _cv("the scores are not divided by √d_head; scale each head's scores by 1/√(d_model / n_heads).", scale="none"),
    _cv("the scores are divided by √d_model; the scale is per head, 1/√d_head with d_head = d_model / n_heads.", scale="model"),
    _cv(_HD.replace("heads are split", "heads are split (or merged)"), order="d h"),
    _cv("the output projection W_O is missing: multiply the merged heads by w_o.", use_wo=False),
    _cv("the weights are used transposed: the projections here are plain matrices, so compute x @ w_q (not F.linear(x, w_q), which is x @ w_qᵀ).", transpose_w=True),
]


def check_cross_attention(fn: Callable) -> bool:
    """Check ``fn(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None) -> (B, T, d)`` against
    :class:`course_lib.MultiHeadAttention` with the same weights (Q from x, K and V from context)."""
    g = _gen(404)

    def case(name, b, t, s, d, h, lengths=None):
        w = [_randn(g, d, d) / math.sqrt(d) for _ in range(4)]
        x, ctx = _randn(g, b, t, d), _randn(g, b, s, d)
        mask = None if lengths is None else _ref_padding_mask(_padded_tokens(g, lengths, s))
        return _Case(name, (x, ctx, *w, h, mask))

    cases = [
        case("source and target of the same length, no padding", 2, 4, 4, 16, 4),
        case("a longer, padded source (B, 1, 1, S) mask", 2, 3, 6, 16, 4, lengths=[6, 2]),
        case("a batch of one with one target token", 1, 1, 5, 8, 2, lengths=[5]),
        case("one head", 2, 3, 2, 8, 1),
        case("a shorter source than target, padded", 3, 5, 3, 12, 3, lengths=[3, 1, 2]),
    ]
    return _run("cross_attention", fn, cases, reference_cross_attention, _CROSS_VARIANTS)


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


def _nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-position −log p(target); targets equal to IGNORE give 0."""
    safe = targets.clamp(min=0)
    out = -F.log_softmax(logits.float(), dim=-1).gather(-1, safe[..., None]).squeeze(-1)
    return out.masked_fill(targets == IGNORE, 0.0)


_MEAN = "the loss is a sum; return the mean over the counted tokens, so batches with different padding are comparable."

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


def _logits_case(g: torch.Generator, b: int, t: int, v: int, scale: float = 2.0) -> Tensor:
    return _randn(g, b, t, v) * scale


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


# --------------------------------------------------------------------------------------------
# 6. CLM loss
# --------------------------------------------------------------------------------------------
def _pads_ignored(t: Tensor, pad_id: int) -> Tensor:
    return t.masked_fill(t == pad_id, IGNORE)


_SHIFT = "the targets are not shifted: the logits at position t predict the token at t+1, so compare logits[:, :-1] with tokens[:, 1:]."

_CLM_VARIANTS = [
    _Variant(lambda lg, tok, pad_id=0: F.cross_entropy(lg.flatten(0, 1), _pads_ignored(tok, pad_id).flatten(), ignore_index=IGNORE), _SHIFT),
    _Variant(lambda lg, tok, pad_id=0: F.cross_entropy(lg.flatten(0, 1), tok.flatten()), _SHIFT),
    _Variant(lambda lg, tok, pad_id=0: F.cross_entropy(lg[:, 1:].flatten(0, 1), _pads_ignored(tok[:, :-1], pad_id).flatten(), ignore_index=IGNORE),
             "the shift goes the wrong way: drop the *last* logit and the *first* token (logits[:, :-1] against tokens[:, 1:])."),
    _Variant(lambda lg, tok, pad_id=0: F.cross_entropy(lg[:, :-1].flatten(0, 1), tok[:, 1:].flatten()),
             "padding is scored: targets equal to pad_id must be ignored (set them to -100, or pass ignore_index=pad_id)."),
    _Variant(lambda lg, tok, pad_id=0: _nll(lg[:, :-1], _pads_ignored(tok[:, 1:], pad_id)).sum(), _MEAN),
    _Variant(lambda lg, tok, pad_id=0: (_nll(lg[:, :-1], _pads_ignored(tok[:, 1:], pad_id)).sum(1) / (tok[:, 1:] != pad_id).sum(1)).mean(),
             "the loss is averaged per sequence and then over the batch; average over all counted tokens at once, so every token weighs the same."),
    _Variant(lambda lg, tok, pad_id=0: _nll(lg[:, :-1], _pads_ignored(tok[:, 1:], pad_id)).mean(),
             "the loss is averaged over all positions, padding included; divide by the number of non-pad targets."),
]


def check_clm_loss(fn: Callable) -> bool:
    """Check ``fn(logits (B, T, V), tokens (B, T), pad_id=0) -> scalar``: next-token cross-entropy
    (logits at t against the token at t+1), padding ignored, mean over the counted targets."""
    g = _gen(707)
    V = 13
    tk = lambda lengths, t: _padded_tokens(g, lengths, t, vocab=V, bos=True, eos=True)
    cases = [
        _Case("a right-padded batch", (_logits_case(g, 3, 6, V), tk([6, 4, 2], 6))),
        _Case("no padding", (_logits_case(g, 2, 4, V), tk([4, 4], 4))),
        _Case("a batch of one, length two", (_logits_case(g, 1, 2, V), tk([2], 2))),
        _Case("large logits (numerical stability)", (_logits_case(g, 2, 5, V, scale=200.0), tk([5, 3], 5))),
    ]
    return _run("clm_loss", fn, cases, lambda lg, tok: _ref_clm_loss(lg, tok, pad_id=PAD_ID), _CLM_VARIANTS)


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


# --------------------------------------------------------------------------------------------
# 8. greedy decoding with a KV cache
# --------------------------------------------------------------------------------------------
class _ToyDecoder(DecoderOnly):
    """A seeded random :class:`DecoderOnly` with two rules on top of its logits, so that greedy
    decoding is varied but predictable: special ids other than EOS are never predicted, and EOS
    is predicted exactly after the token ``eos_after`` (and never elsewhere)."""

    def __init__(self, cfg: ModelConfig, eos_after: int) -> None:
        super().__init__(cfg)
        bias = torch.zeros(cfg.vocab_size)
        bias[[PAD_ID, BOS_ID, UNK_ID, MASK_ID, SEP_ID]] = -1e4
        self.register_buffer("logit_bias", bias, persistent=False)
        self.eos_after = eos_after

    def forward(self, tokens: Tensor, **kwargs) -> Tensor:
        logits = super().forward(tokens, **kwargs) + self.logit_bias
        eos = torch.where(tokens == self.eos_after, 1e4, -1e4).to(logits.dtype)
        return torch.cat([logits[..., :EOS_ID], eos[..., None], logits[..., EOS_ID + 1 :]], dim=-1)


@functools.lru_cache(maxsize=None)
def _toy_decoder_cached(seed: int, vocab_size: int) -> _ToyDecoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = ModelConfig(vocab_size=vocab_size, d_model=32, n_heads=4, n_layers=2, max_len=256)
        model = _ToyDecoder(cfg, eos_after=vocab_size - 1)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, 0.5)  # large weights: confident, varied predictions
            model.embed.pos.weight.normal_(0.0, 1.0)
    return model.eval()


def toy_decoder(seed: int = 3, vocab_size: int = 16) -> DecoderOnly:
    """A fresh copy of the small seeded random decoder the greedy-decoding check uses: special ids
    other than EOS are never predicted, and the last id (``vocab_size - 1``) is always followed by EOS."""
    import copy

    return copy.deepcopy(_toy_decoder_cached(seed, vocab_size))


class _Recorder:
    """Records each forward call of a model (a forward pre-hook): (cached positions or None, new tokens)."""

    def __init__(self, model) -> None:
        self.calls: list[tuple[int | None, int]] = []
        self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        tokens = args[0] if args else kwargs.get("tokens")
        cache = kwargs.get("cache", args[1] if len(args) > 1 else None)
        past = None
        if cache is not None:
            try:
                past = len(cache[0]["self"])
            except Exception:  # noqa: BLE001 - an unusual cache object: the model will complain itself
                past = -1
        self.calls.append((past, int(tokens.shape[1]) if isinstance(tokens, Tensor) and tokens.dim() == 2 else -1))

    def close(self) -> None:
        self._handle.remove()


def _greedy_rows(model, n_cand: int, p_len: int, steps: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Candidate prompts, the step of each row's first greedy EOS (``steps`` if none), and whether
    every greedy choice had a safe margin (so tiny float differences cannot flip the argmax)."""
    g = _gen(seed)
    prompts = torch.randint(len(SPECIAL_IDS), model.cfg.vocab_size, (n_cand, p_len), generator=g)
    out = generate(model, prompts, steps, eos_id=None)  # no early stop: all rows have `steps` tokens
    is_eos = out == EOS_ID
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full((n_cand,), steps))
    with torch.no_grad():
        logits = model(torch.cat([prompts, out], 1))[:, p_len - 1 : p_len - 1 + steps]
    top2 = logits.topk(2, dim=-1).values
    margin = top2[..., 0] - top2[..., 1]
    upto = torch.arange(steps)[None, :] <= first[:, None]
    safe = (margin.masked_fill(~upto, float("inf")) > 1e-2).all(1)
    return prompts, first, safe


@functools.lru_cache(maxsize=None)
def _greedy_cases() -> tuple[_Case, ...]:
    model = _toy_decoder_cached(3, 16)

    def pick(p_len, steps, seed, want):  # want: list of predicates on the first-EOS step
        prompts, first, safe = _greedy_rows(model, 96, p_len, steps, seed)
        rows, used = [], set()
        for pred in want:
            for i in range(prompts.shape[0]):
                if i not in used and bool(safe[i]) and pred(int(first[i])):
                    rows.append(i)
                    used.add(i)
                    break
            else:  # pragma: no cover - only if the toy model changed
                raise RuntimeError("could not build the greedy-decoding cases; the toy decoder changed.")
        return prompts[rows]

    no_eos = lambda f: f >= 8
    return (
        _Case("3 prompts of length 4, 8 new tokens, no EOS", (pick(4, 8, 11, [no_eos] * 3), 8)),
        _Case("a batch of one with a prompt of length one", (pick(1, 6, 12, [lambda f: f >= 6]), 6)),
        _Case("max_new_tokens=1", (pick(3, 1, 13, [lambda f: True] * 2), 1)),
        _Case("one row emits EOS early and must be padded after it", (pick(4, 8, 14, [no_eos, lambda f: 2 <= f <= 6, no_eos]), 8)),
        _Case("every row emits EOS, so decoding stops early", (pick(3, 10, 15, [lambda f: 1 <= f <= 7, lambda f: 1 <= f <= 7]), 10)),
    )


def check_greedy_decode_with_cache(fn: Callable, model=None) -> bool:
    """Check ``fn(model, prompt (B, P), max_new_tokens, eos_id=2, pad_id=0) -> new tokens (B, <= N)``:
    greedy decoding that prefills the prompt into a KV cache, then feeds one token per step, pads
    rows that emitted EOS and stops once every row has. Must equal :func:`course_lib.generate`.
    ``model`` defaults to the check's own seeded toy decoder (see :func:`toy_decoder`)."""
    name = "greedy_decode_with_cache"
    if not callable(fn):
        raise AssertionError(f"check_{name} needs your function itself, e.g. check_{name}({name}); got a {type(fn).__name__}.")
    model = _toy_decoder_cached(3, 16) if model is None else model
    cases = _greedy_cases()
    try:
        used_cache, n_calls = False, 0
        for case in cases:
            prompt, n = case.args
            expected = generate(model, prompt, n, eos_id=EOS_ID, pad_id=PAD_ID)
            rec = _Recorder(model)
            try:
                got = _call(name, fn, _Case(case.name, (model, prompt, n)))
            finally:
                rec.close()
            where = f"(seen on the case '{case.name}')"
            refed = any(past is not None and past > 0 and t > 1 for past, t in rec.calls)
            used_cache = used_cache or any(past is not None for past, _ in rec.calls)
            n_calls += len(rec.calls)
            if isinstance(got, Tensor) and _same(got, expected):
                continue
            if refed:
                raise _Fail(
                    f"{name}: after the prefill, feed only the newest token to the model; re-feeding the whole sequence "
                    f"into the cache stores its keys and values again (duplicated positions) {where}."
                )
            if not isinstance(got, Tensor):
                raise _Fail(f"{name} returned {'None' if got is None else 'a ' + type(got).__name__} {where}; return the new tokens as a LongTensor (B, number of new tokens).")
            if got.dim() != 2 or got.shape[0] != expected.shape[0]:
                raise _Fail(f"{name} returned shape {_fmt(_shape(got))} but the expected shape is {_fmt(_shape(expected))} {where}.")
            P = prompt.shape[1]
            if got.shape[1] == P + expected.shape[1] and torch.equal(got[:, P:].long(), expected):
                raise _Fail(f"{name}: return only the new tokens (B, ≤ max_new_tokens), without the prompt {where}.")
            no_stop = generate(model, prompt, n, eos_id=None)
            L = got.shape[1]
            eos_matters = not torch.equal(no_stop, expected)
            if L < expected.shape[1] and torch.equal(got.long(), expected[:, :L]) and bool((got == EOS_ID).any()):
                raise _Fail(f"{name} stopped when the first row emitted EOS; keep going until every row has emitted EOS (pad the finished ones) {where}.")
            if eos_matters and L <= n and torch.equal(got.long(), no_stop[:, :L]):
                raise _Fail(
                    f"{name}: a row that emitted EOS must be padded with pad_id from then on, and decoding stops once every "
                    f"row has emitted EOS {where}."
                )
            E = expected.shape[1]
            if L > E and torch.equal(got[:, :E].long(), expected) and bool((got[:, E:] == PAD_ID).all()):
                raise _Fail(f"{name}: once every row has emitted EOS, stop decoding instead of adding more padding {where}.")
            if got.shape != expected.shape:
                raise _Fail(f"{name} returned shape {_fmt(_shape(got))} but the expected shape is {_fmt(_shape(expected))} {where}.")
            if got.is_floating_point():
                raise _Fail(f"{name} returned dtype {got.dtype}; token ids are integers (use argmax, which returns torch.long) {where}.")
            bad = int((got.long() != expected).any(0).nonzero()[0])
            raise _Fail(
                f"{name} differs from course_lib.generate from new token {bad} on (case '{case.name}'); the first new token comes from "
                "the logits at the prompt's last position, and each next one from the logits of the token just fed."
            )
        if n_calls and not used_cache:  # (calls through model.forward are not seen: no verdict then)
            raise _Fail(f"{name} gives the right tokens but never passes a KV cache; create one with model.new_cache() and call model(new_tokens, cache=cache).")
    except _NotImplementedYet:
        return _pending(name)
    except _Fail as e:
        raise AssertionError(str(e)) from None
    return _ok(name, len(cases))


# --------------------------------------------------------------------------------------------
# use the learner's function if it works, the library's otherwise
# --------------------------------------------------------------------------------------------
_CHECKS: dict[str, Callable[[Callable], bool]] = {
    "scaled_dot_product_attention": check_scaled_dot_product_attention,
    "causal_mask": check_causal_mask,
    "padding_mask": check_padding_mask,
    "prefix_mask": check_prefix_mask,
    "split_heads": check_split_heads,
    "merge_heads": check_merge_heads,
    "cross_attention": check_cross_attention,
    "mlm_corrupt": check_mlm_corrupt,
    "mlm_loss": check_mlm_loss,
    "clm_loss": check_clm_loss,
    "shift_right": check_shift_right,
    "seq2seq_loss": check_seq2seq_loss,
    "greedy_decode_with_cache": check_greedy_decode_with_cache,
}


def _check_name(*fns: Callable, name: str | None) -> str | None:
    if name is not None:
        if name not in _CHECKS:
            raise ValueError(f"no check named {name!r}; known: {', '.join(_CHECKS)}.")
        return name
    for f in fns:
        n = getattr(f, "__name__", "")
        for cand in (n, n.removeprefix("my_"), n.removeprefix("reference_")):
            if cand in _CHECKS:
                return cand
    return None


def use_or_reference(learner_fn: Callable, reference_fn: Callable, *, name: str | None = None) -> Callable:
    """Return ``learner_fn`` if it passes its check (run silently), else ``reference_fn``; print which.

    A later task can then rely on an earlier one without depending on it being solved::

        sdpa = use_or_reference(scaled_dot_product_attention, course_lib.scaled_dot_product_attention)

    The check is found from the functions' names (``my_``/``reference_`` prefixes are dropped) or
    from ``name=``; a function without a check is used as it is.
    """
    label = name or getattr(learner_fn, "__name__", None) or getattr(reference_fn, "__name__", "function")
    ref_label = getattr(reference_fn, "__module__", "course_lib") or "course_lib"
    ref_label = "course_lib" if ref_label.startswith("course_lib") else ref_label
    if learner_fn is None or not callable(learner_fn):
        print(f"→ {label}: using {ref_label}'s version (yours is not defined).")
        return reference_fn
    check = _check_name(learner_fn, reference_fn, name=name)
    if check is None:
        print(f"→ {label}: using yours (there is no check for it).")
        return learner_fn
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            ok = _CHECKS[check](learner_fn)
    except AssertionError:
        print(f"→ {check}: using {ref_label}'s version for now (yours does not pass its check yet).")
        return reference_fn
    if not ok:
        print(f"→ {check}: using {ref_label}'s version for now (yours is not implemented yet).")
        return reference_fn
    print(f"→ {check}: using yours (it passes its check).")
    return learner_fn
