"""Checks for lesson 01: attention, masks, heads, cross-attention."""
from __future__ import annotations

import math
from typing import Callable

import torch
from einops import rearrange
from torch import Tensor

from ...attention import MultiHeadAttention
from ...attention import scaled_dot_product_attention as _ref_sdpa
from ...masks import causal_mask as _ref_causal_mask
from ...masks import padding_mask as _ref_padding_mask
from ...masks import prefix_mask as _ref_prefix_mask

from ._core import (NINF, BOS_ID, EOS_ID, Case, Fail, Variant, _gen, _padded_tokens, _randn, device_property, grad_property,
                    ignored_arg_probe, number, register, run_check, same, variant_grid)
from ._core import Case as _Case  # noqa: F401
from ._core import Variant as _Variant  # noqa: F401

__all__ = ["check_scaled_dot_product_attention", "check_causal_mask", "check_padding_mask", "check_prefix_mask", "check_split_heads", "check_merge_heads", "check_cross_attention", "reference_split_heads", "reference_merge_heads", "reference_cross_attention", "check_sliding_window_mask", "reference_sliding_window_mask"]


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
    mha = MultiHeadAttention(d, n_heads, bias=False).to(w_q.device)
    with torch.no_grad():
        mha.in_proj.weight.copy_(torch.cat([w_q.T, w_k.T, w_v.T], dim=0))  # nn.Linear computes x @ W.T
        mha.out_proj.weight.copy_(w_o.T)
    return mha.eval()


def reference_cross_attention(
    x: Tensor, context: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor, w_o: Tensor, n_heads: int, context_mask: Tensor | None = None
) -> Tensor:
    """Cross-attention with the library's :class:`MultiHeadAttention` (weights copied in):
    queries from the decoder stream ``x (B, T, d)``, keys/values from ``context (B, S, d)``. Differentiable
    in ``x`` and ``context`` (the weights are copied into the module's parameters)."""
    return _mha_from_matrices(w_q, w_k, w_v, w_o, n_heads)(x, context=context, mask=context_mask)


# --------------------------------------------------------------------------------------------
# 1. scaled dot-product attention
# --------------------------------------------------------------------------------------------
def _sdpa_formula(q, k, v, mask=None, *, scale="sqrt_dk", fill="ninf", axis=-1, empty="zero", weights_only=False,
                  transpose_v=False, kq=False):
    d = {"sqrt_dk": math.sqrt(q.shape[-1]), "none": 1.0, "dk": float(q.shape[-1]), "sqrt_dv": math.sqrt(v.shape[-1]),
         "sqrt_tk": math.sqrt(k.shape[-2])}[scale]
    s = (k @ q.transpose(-2, -1) if kq else q @ k.transpose(-2, -1)) / d
    if mask is not None:
        if fill == "ninf":
            s = s.masked_fill(~mask, NINF)
        elif fill == "inverted":
            s = s.masked_fill(mask, NINF)
        elif fill == "zero":
            s = s.masked_fill(~mask, 0.0)
        elif fill == "big":
            s = s.masked_fill(~mask, -1e9)
        elif fill == "posinf":
            s = s.masked_fill(~mask, float("inf"))
    w = s.softmax(dim=axis)
    if mask is not None and fill == "after":
        w = w.masked_fill(~mask, 0.0)
    if empty == "zero":
        w = torch.nan_to_num(w, nan=0.0)
    return w if weights_only else w @ (v.transpose(-2, -1) if transpose_v else v)


_SDPA_AXES = {
    "scale": {"sqrt_dk": "",
              "none": "the scores are not divided by √d_k; compute softmax(Q Kᵀ / √d_k) V with d_k = q.shape[-1].",
              "dk": "the scores are divided by d_k instead of √d_k; use math.sqrt(d_k).",
              "sqrt_dv": "the scores are scaled with the size of V; divide by √d_k, where d_k = q.shape[-1] is the size of the queries and keys.",
              "sqrt_tk": "the scores are divided by the square root of the number of keys; d_k is the size of each query and key vector, q.shape[-1]."},
    "axis": {-1: "", -2: "the softmax runs over the wrong axis; normalise over the keys (dim=-1), so each query's weights sum to 1.",
             1: "the softmax runs over the wrong axis (dim=1); normalise over the keys, dim=-1, so each query's weights sum to 1."},
    "fill": {"ninf": "",
             "after": "the mask is applied after the softmax, so the remaining weights no longer sum to 1; fill masked scores with -inf before the softmax.",
             "inverted": "the mask is inverted: True means 'may attend', so fill the scores where the mask is False (`~mask`) with -inf.",
             "zero": "masked scores are set to 0 instead of -inf, and a score of 0 still gets probability; use scores.masked_fill(~mask, float('-inf')).",
             "big": "a query whose keys are all masked should get an output of zeros, not the average of all values; zero the weights of rows with no visible key.",
             "posinf": "masked scores are set to +inf instead of -inf, so the softmax gives NaN (or all the weight to hidden keys); fill them with float('-inf').",
             "ignore": "the mask is ignored; fill the scores where the mask is False with -inf before the softmax, so hidden keys get weight 0."},
    "empty": {"zero": "", "nan": "a query whose keys are all masked gives NaN (the softmax of a row of -inf); give such rows an output of zeros, e.g. weights = torch.nan_to_num(weights)."},
    "weights_only": {False: "", True: "you returned the attention weights {got}; multiply them by V to get the output {expected}."},
}
_SDPA_VARIANTS = variant_grid(_sdpa_formula, _SDPA_AXES) + [
    Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m, transpose_v=True),
            "the weights multiply Vᵀ or V is transposed; the output is weights @ v, shape (…, T_q, d_v)."),
    Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m, kq=True),
            "the scores are K Qᵀ (keys × queries); compute Q Kᵀ so that row i holds query i's scores over the keys."),
    Variant(lambda q, k, v, m=None: _sdpa_formula(q, q, v, m),
            "the keys are not used: the scores must be Q Kᵀ (you compared the queries with themselves)."),
    Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, v, m).transpose(-2, -1),
            "the output is transposed: weights @ v already has shape (…, T_q, d_v), so return it as it is; got shape {got}."),
    Variant(lambda q, k, v, m=None: _sdpa_formula(q, k, k, m),
            "the output mixes the keys instead of the values: multiply the weights by V."),
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
    x = _randn(g, 2, 2, 5, 8)  # self-attention: the very same tensor as q, k and v
    cases.append(_Case("self-attention f(x, x, x, mask) with one tensor as q, k and v", (x, x, x, _ref_causal_mask(5))))
    sq = _randn(g, 1, 1, 4, 4)  # square keys and values: a transposed V has the right shape here
    cases.append(_Case("square V (T_k = d_v)", (_randn(g, 1, 1, 4, 4), _randn(g, 1, 1, 4, 4), sq)))
    return cases


def _sdpa_weights_probe(fn, case, got, expected):
    """Read the learner's attention weights by calling it with V = identity (…, T_k, T_k), and name
    what is wrong with them: weight on hidden keys (a transposed mask), rows that do not sum to 1
    (no softmax, a scale after it, log-probabilities), or the softmax's temperature (the scale)."""
    q, k, v = case.args[:3]
    mask = case.args[3] if len(case.args) > 3 else None
    t_k = k.shape[-2]
    eye = torch.eye(t_k).expand(*v.shape[:-2], t_k, t_k).clone()
    w = fn(q, k, eye, mask)
    ref = _sdpa_formula(q, k, eye, mask)
    if not isinstance(w, Tensor) or w.shape != ref.shape or same(w, ref):
        return None
    where = f"(seen on the case '{case.name}')"
    name = "scaled_dot_product_attention"
    again = fn(q, k, eye, mask)
    if isinstance(again, Tensor) and not same(again, w):
        return (f"{name}: two calls with the same inputs give different results — dropout on the weights (F.dropout, nn.Dropout "
                f"in training mode) or random numbers; this attention has no dropout: return softmax(scores) @ v {where}.")
    w, ref = w.detach().double(), ref.double()
    if mask is not None:
        if not bool(torch.isfinite(w).all()):
            return None
        hidden = ~torch.broadcast_to(mask, ref.shape)
        if bool((w[hidden].abs() > 1e-6).any()):
            if mask.shape[-1] == mask.shape[-2] and same(w, _sdpa_formula(q, k, eye, mask.transpose(-2, -1)), lenient=True):
                return (f"{name}: the mask is applied transposed: its rows are the queries and its columns the keys, so use it as it is "
                        f"(scores of shape (…, T_q, T_k)) {where}.")
            return (f"{name}: hidden keys (mask False) still get attention weight; fill their scores with -inf before the softmax "
                    f"(a boolean mask cannot be added or multiplied in) {where}.")
    if not bool(torch.isfinite(w).all()):
        return None
    rs, rs_ref = w.sum(-1), ref.sum(-1)
    live = rs_ref > 0.5
    if bool(((rs - rs_ref).abs()[live] > 1e-4).any()):
        if bool((w < -1e-9).any()):
            return (f"{name}: some attention weights are negative — log-probabilities (log_softmax) instead of probabilities; use "
                    f"torch.softmax(scores, dim=-1) {where}.")
        c = rs[live]
        if bool(((c - c.mean()).abs() < 1e-4).all()) and abs(c.mean().item() - 1) > 1e-3:
            return (f"{name}: every query's weights sum to {number(c.mean().item())} instead of 1 — the weights are scaled after the "
                    f"softmax; divide the *scores* by √d_k before the softmax {where}.")
        return (f"{name}: a query's attention weights do not sum to 1 (one sums to {number(c[0].item())}): normalise the scores with "
                f"torch.softmax(scores, dim=-1), not exp or sigmoid alone {where}.")
    # rows are distributions: compare the softmax's temperature with 1/√d_k
    s = (q @ k.transpose(-2, -1)).double()
    if mask is not None:
        return None
    # log w = slope · s + a per-row constant: fit the slope on pairs of keys in the same row whose
    # weights are both well above float precision
    lw = w.clamp(min=1e-300).log()
    top = w.argmax(-1, keepdim=True)
    da, db = lw - lw.gather(-1, top), s - s.gather(-1, top)
    ok = (w > 1e-5) & (db.abs() > 1e-6)
    if int(ok.sum()) < 2:
        return None
    a, b = da[ok], db[ok]
    slope = (a @ b / (b @ b)).item()
    if slope <= 0 or not bool(((a - slope * b).abs() < 2e-2 + 1e-3 * b.abs() * abs(slope)).all()):
        return None
    d_k = q.shape[-1]
    by = 1 / slope
    named = {math.sqrt(d_k): "√d_k", float(d_k): "d_k", 1.0: "nothing", 1 / math.sqrt(d_k): "1/√d_k (a multiplication by √d_k)", d_k ** 0.25: "the fourth root of d_k (a square root taken twice)",
             math.sqrt(v.shape[-1]): "√d_v", math.sqrt(k.shape[-2]): "√T_k", math.sqrt(q.shape[-2]): "√T_q"}
    what = next((w_ for x, w_ in named.items() if abs(by - x) < 1e-2 * max(1, x) and w_ != "√d_k"), None)
    if what is None and abs(by - math.sqrt(d_k)) < 1e-2 * math.sqrt(d_k):
        return None
    what = f"{number(by)}, i.e. {what}" if what else number(by)
    return f"{name}: the scores are divided by {what}, not by √d_k = {number(math.sqrt(d_k))} (d_k = q.shape[-1]) {where}."


@register("scaled_dot_product_attention")
def check_scaled_dot_product_attention(fn: Callable) -> bool:
    """Check ``fn(q, k, v, mask=None) -> softmax(QKᵀ/√d_k, masked) V`` (a query with no visible key -> zeros)."""

    def ref(q, k, v, mask=None):
        return _ref_sdpa(q, k, v, mask)

    def learner(q, k, v, mask=None):
        out = fn(q, k, v) if mask is None else fn(q, k, v, mask)
        if isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, Tensor) for t in out):
            raise Fail("scaled_dot_product_attention returned a pair (output, weights); return the output tensor (…, T_q, d_v) "
                       "alone — the next cells use the result directly as the attention output.")
        return out

    if not callable(fn):
        return run_check("scaled_dot_product_attention", fn, [], ref, [])
    cases = _sdpa_cases()
    return run_check("scaled_dot_product_attention", learner, cases, ref, _SDPA_VARIANTS,
                     arg_names=("q", "k", "v", "mask"), output="float", probes=[_sdpa_weights_probe],
                     raise_probes=[batched_raise_probe("scaled_dot_product_attention"), _sdpa_square_v_probe],
                     properties=[device_property("scaled_dot_product_attention", cases[2], ref),
                                 grad_property("scaled_dot_product_attention", cases[1], ref, (0, 1, 2), ("q", "k", "v")),
                                 grad_property("scaled_dot_product_attention", cases[2], ref, (0, 1, 2), ("q", "k", "v"))])


def _sdpa_square_v_probe(fn, case, exc):
    """The function fails when V's size d_v differs from the number of keys, but works with a square V:
    it multiplies by Vᵀ (or transposes the output)."""
    q, k, v = case.args[:3]
    mask = case.args[3] if len(case.args) > 3 else None
    t_k = k.shape[-2]
    if v.shape[-1] == t_k:
        return None
    sq = torch.randn(*v.shape[:-1], t_k, generator=torch.Generator().manual_seed(3))
    out = fn(q, k, sq) if mask is None else fn(q, k, sq, mask)
    for wrong, what in ((_sdpa_formula(q, k, sq, mask, transpose_v=True), "the weights multiply Vᵀ"),
                        (_sdpa_formula(q, k, sq, mask).transpose(-2, -1), "the output is transposed")):
        if isinstance(out, Tensor) and same(out, wrong, lenient=True):
            return (f"scaled_dot_product_attention raised {type(exc).__name__} on the case '{case.name}' (d_v != T_k) but runs when V "
                    f"is square: {what}; the output is weights @ v, shape (…, T_q, d_v).")
    return None


def batched_raise_probe(name: str):
    """A raise probe: the function fails on batched inputs (…, T, d) but works on the same data as plain
    2-D matrices — the classic `k.T`, which reverses every axis of a batched tensor."""
    def probe(fn, case, exc):
        tensors = [a for a in case.args if isinstance(a, Tensor)]
        if not tensors or max(t.dim() for t in tensors) <= 2:
            return None
        flat = []
        for a in case.args[:3]:
            while isinstance(a, Tensor) and a.dim() > 2:
                a = a[0]
            flat.append(a)
        out = fn(*flat)
        if isinstance(out, Tensor) and out.dim() == 2:
            return (f"{name} raised {type(exc).__name__} on the case '{case.name}' but works on plain 2-D matrices: k.T (or .t()) "
                    "reverses every axis of a batched (B, H, T, d) tensor; transpose only the last two, k.transpose(-2, -1) (or k.mT).")
        return None
    return probe


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


@register("causal_mask")
def check_causal_mask(fn: Callable) -> bool:
    """Check ``fn(t) -> bool (t, t)`` with True where key j <= query i."""
    cases = [_Case(f"t={t}", (t,)) for t in (4, 1, 2, 7, 70)]
    cases[1].name = "t=1 (a single position)"
    cases[4].name = "t=70 (longer than a fixed-size buffer)"
    ref = lambda t: _ref_causal_mask(t)  # noqa: E731
    return run_check("causal_mask", fn, cases, ref, _CAUSAL_VARIANTS, is_mask=True, arg_names=("t",),
                     probes=[fixed_size_probe("causal_mask", ref)])


def fixed_size_probe(name: str, reference: Callable):
    """A probe for masks built by slicing a fixed-size buffer: the result stops at n < t positions but
    matches the mask of length n."""
    def probe(fn, case, got, expected):
        t = case.args[0]
        if not isinstance(got, Tensor) or got.dim() != 2 or got.shape[0] != got.shape[1] or not 0 < got.shape[0] < t:
            return None
        n = got.shape[0]
        if same(got, reference(n, *case.args[1:], **case.kwargs)):
            return (f"{name}: your mask stops at {n} positions although t = {t} (seen on the case '{case.name}'): it is sliced from a "
                    f"fixed-size one; build it for the t you are given (e.g. from torch.arange(t)), with no size written in the code.")
        return None
    return probe


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
    _Variant(lambda tok, pad_id=0: (tok > pad_id)[:, None, None, :],
             "compare the tokens with `!= pad_id`, not `> pad_id`: ids smaller than pad_id are real tokens too."),
    _Variant(lambda tok, pad_id=0: (tok == pad_id)[:, None, :],
             "the mask is inverted and has shape {got}: True must mean 'may attend', and the shape must be (B, 1, 1, T)."),
    _Variant(lambda tok, pad_id=0: ((tok != pad_id) & (tok != BOS_ID) & (tok != EOS_ID))[:, None, None, :],
             "BOS and EOS are hidden too; they are real tokens the model reads — hide only the padding, tokens == pad_id."),
    _Variant(lambda tok, pad_id=0: ((tok != pad_id) & (tok > 5))[:, None, None, :],
             "the special tokens (BOS, EOS, …) are hidden too; they are real tokens the model reads — hide only the padding, tokens == pad_id."),
    _Variant(lambda tok, pad_id=0: (tok[:1] != pad_id)[:, None, None, :].expand(tok.shape[0], 1, 1, tok.shape[1]),
             "every row gets the first row's mask; compare the whole batch, (tokens != pad_id)[:, None, None, :]."),
]


@register("padding_mask")
def check_padding_mask(fn: Callable) -> bool:
    """Check ``fn(tokens, pad_id=0) -> bool (B, 1, 1, T)``, True on real (non-pad) tokens."""
    g = _gen(202)
    cases = [
        _Case("sentences with BOS and EOS, then padding", (_padded_tokens(g, [6, 4, 3, 6], 7, bos=True, eos=True),)),
        _Case("a right-padded batch", (_padded_tokens(g, [5, 3, 1], 5),)),
        _Case("no padding at all", (_padded_tokens(g, [4, 4], 4),)),
        _Case("a batch of one, length one", (_padded_tokens(g, [1], 1),)),
        _Case("a row that is all padding", (_padded_tokens(g, [3, 0], 3),)),
    ]
    toks = _padded_tokens(g, [4, 2], 4) + 3  # pad 0 -> 3; ids now >= 3, with 9 used as the pad
    toks[0, 1] = 0  # an id 0 that is *not* padding here
    toks[toks == 3] = 9
    cases.append(_Case("pad_id=9 passed as the second argument", (toks, 9)))
    return run_check("padding_mask", fn, cases, _ref_padding_mask, _PADDING_VARIANTS, is_mask=True, arg_names=("tokens", "pad_id"),
                     probes=[_padding_square_probe], properties=[device_property("padding_mask", cases[-1], _ref_padding_mask)])


def _padding_square_probe(fn, case, got, expected):
    b, t = case.args[0].shape
    if isinstance(got, Tensor) and got.dim() == 4 and tuple(got.shape) == (b, 1, t, t) and t > 1:
        return (f"padding_mask: your mask has shape {tuple(got.shape)} and also hides the padded *queries*; return (B, 1, 1, T), "
                f"which hides padded keys only and broadcasts over the queries (seen on the case '{case.name}').")
    return None


def _tri(t: int) -> Tensor:
    return torch.ones(t, t, dtype=torch.bool).tril()


_PREFIX_VARIANTS = [
    _Variant(lambda t, p: _tri(t),
             "this is the plain causal mask, as if the prefix_len argument were ignored: every query must also see the prefix keys j < prefix_len."),
    _Variant(lambda t, p: _tri(t) | (torch.arange(t) < p)[:, None],
             "queries inside the prefix see the tokens after it (the future); make the prefix *keys* visible, i.e. columns j < prefix_len, not rows."),
    _Variant(lambda t, p: _tri(t) | (torch.arange(t) <= p)[None, :],
             "off by one: the prefix is keys 0 … prefix_len - 1, so use j < prefix_len, not j <= prefix_len."),
    _Variant(lambda t, p: _tri(t) | (torch.arange(t) < p - 1)[None, :],
             "off by one: the prefix is keys 0 … prefix_len - 1, so use j < prefix_len, not j < prefix_len - 1."),
    _Variant(lambda t, p: ~(_tri(t) | (torch.arange(t) < p)[None, :]), _INVERTED),
    _Variant(lambda t, p: torch.ones(t, t, dtype=torch.bool),
             "everything is visible: after the prefix the mask must be causal (query i sees keys j <= i)."),
    _Variant(lambda t, p: _tri(t) & (torch.arange(t) < p)[None, :],
             "the two parts are combined with & (and); a key is visible if it is causal *or* in the prefix: (j <= i) | (j < prefix_len)."),
    _Variant(lambda t, p: _tri(t) ^ (torch.arange(t) < p)[None, :],
             "the two parts are combined with ^ (exclusive or); a key is visible if it is causal *or* in the prefix: (j <= i) | (j < prefix_len)."),
    _Variant(lambda t, p: (_tri(t) | (torch.arange(t) < p)[None, :]) & ((torch.arange(t) < p)[:, None] & (torch.arange(t) < p)[None, :]),
             "positions after the prefix see nothing: they must see the whole prefix plus themselves and earlier positions (causal)."),
]


@register("prefix_mask")
def check_prefix_mask(fn: Callable) -> bool:
    """Check ``fn(t, prefix_len) -> bool (t, t)``: the prefix keys are visible to all, the rest is causal."""
    cases = [
        _Case("t=6, prefix_len=3", (6, 3)),
        _Case("t=5, prefix_len=2", (5, 2)),
        _Case("prefix_len=0 (plain causal)", (4, 0)),
        _Case("prefix_len=t (fully bidirectional)", (4, 4)),
        _Case("t=1, prefix_len=1", (1, 1)),
        _Case("t=7, prefix_len=5", (7, 5)),
        _Case("t=70, prefix_len=33 (longer than a fixed-size buffer)", (70, 33)),
    ]
    ref = lambda t, p: _ref_prefix_mask(t, p)  # noqa: E731
    return run_check("prefix_mask", fn, cases, ref, _PREFIX_VARIANTS, is_mask=True, arg_names=("t", "prefix_len"),
                     probes=[fixed_size_probe("prefix_mask", ref)])


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


@register("split_heads")
def check_split_heads(fn: Callable) -> bool:
    """Check ``fn(x, n_heads)``: ``(B, T, H*D) -> (B, H, T, D)`` in the (h d) order."""
    g = _gen(303)
    cases = [
        _Case("B=3, T=5, H=2, D=6", (_randn(g, 3, 5, 12), 2)),
        _Case("B=2, T=5, H=3, D=4", (_randn(g, 2, 5, 12), 3)),
        _Case("a batch of one, length one", (_randn(g, 1, 1, 8), 2)),
        _Case("one head (H=1)", (_randn(g, 2, 3, 6), 1)),
        _Case("heads of size one (D=1)", (_randn(g, 2, 4, 4), 4)),
        _Case("B=5, T=7, H=6, D=5", (_randn(g, 5, 7, 30), 6)),
    ]
    heads = ignored_arg_probe("split_heads", reference_split_heads, "n_heads", lambda a, kw: [
        ([a[0], h], kw, f"{h} heads") for h in (1, 2, 4, 8, 12) if h != a[1] and a[0].shape[-1] % h == 0])
    return run_check("split_heads", fn, cases, reference_split_heads, _SPLIT_VARIANTS, arg_names=("x", "n_heads"), output="float",
                     early_probes=[heads], properties=[device_property("split_heads", cases[0], reference_split_heads),
                                                       grad_property("split_heads", cases[0], reference_split_heads, (0,), ("x",))])


@register("merge_heads")
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
    return run_check("merge_heads", fn, cases, reference_merge_heads, _MERGE_VARIANTS, arg_names=("x",), output="float",
                     properties=[device_property("merge_heads", cases[0], reference_merge_heads),
                                 grad_property("merge_heads", cases[0], reference_merge_heads, (0,), ("x",))])


# --------------------------------------------------------------------------------------------
# 4. cross-attention
# --------------------------------------------------------------------------------------------
def _cross_formula(x, ctx, w_q, w_k, w_v, w_o, n_heads, context_mask=None, *, q_from="x", kv_from="ctx", order="h d",
                   scale="head", use_mask=True, use_wo=True, transpose_w=False, causal=False, axis=-1, merge=None):
    lin = (lambda a, w: a @ w.T) if transpose_w else (lambda a, w: a @ w)
    q_in = x if q_from == "x" else ctx
    kv_in = ctx if kv_from == "ctx" else x
    split_order = "d h" if order == "split d h" else "h d" if order == "merge d h" else order
    merge_order = "d h" if order == "merge d h" else "h d" if order == "split d h" else order
    split = lambda t: rearrange(t, f"b t ({split_order}) -> b h t d", h=n_heads)
    q, k, v = split(lin(q_in, w_q)), split(lin(kv_in, w_k)), split(lin(kv_in, w_v))
    d = {"head": math.sqrt(q.shape[-1]), "model": math.sqrt(w_q.shape[0]), "none": 1.0, "n_heads": math.sqrt(n_heads),
         "d_head": float(q.shape[-1])}[scale]
    s = q @ k.transpose(-2, -1) / d
    mask = context_mask if use_mask else None
    if causal:
        c = torch.ones(s.shape[-2], s.shape[-1], dtype=torch.bool).tril()
        mask = c if mask is None else mask & c
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    heads = torch.nan_to_num(s.softmax(axis)) @ v
    if merge == "reshape":  # (B, H, T, D) reshaped to (B, T, H*D) without moving H behind T
        out = heads.reshape(heads.shape[0], heads.shape[2], -1)
    else:
        out = rearrange(heads, f"b h t d -> b t ({merge_order})")
    if use_wo == "T":
        return out @ w_o.T
    return lin(out, w_o) if use_wo else out


def _cross_flags(*a, src="ok", **flags):
    extra = {"ok": {}, "kv_x": {"kv_from": "x"}, "swap": {"q_from": "ctx", "kv_from": "x"}}[src]
    return _cross_formula(*a, **flags, **extra)


def _cross_one_head(x, ctx, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    return _cross_formula(x, ctx, w_q, w_k, w_v, w_o, 1, context_mask)


_CROSS_AXES = {
    "src": {"ok": "",
            "kv_x": "K and V are computed from the decoder stream x; in cross-attention Q comes from x, but K and V come from the encoder output `context`.",
            "swap": "queries and keys/values are swapped: Q = x @ w_q comes from the decoder (x), K and V from the encoder output (context)."},
    "axis": {-1: "", -2: "the softmax runs over the queries (dim=-2); each decoder query's weights over the source keys must sum to 1, so use dim=-1."},
    "use_mask": {True: "", False: "the context_mask argument is ignored, so the source padding is not masked; pass context_mask to the attention so decoder queries cannot attend to padded source tokens."},
    "causal": {False: "", True: "cross-attention must not be causal: every decoder position may see the whole source, so use only context_mask."},
    "scale": {"head": "", "none": "the scores are not divided by √d_head; scale each head's scores by 1/√(d_model / n_heads).",
              "model": "the scores are divided by √d_model; the scale is per head, 1/√d_head with d_head = d_model / n_heads.",
              "n_heads": "the scores are divided by √n_heads; the scale is 1/√d_head with d_head = d_model / n_heads, the size of each head.",
              "d_head": "the scores are divided by d_head instead of √d_head; use math.sqrt(d_model / n_heads)."},
    "order": {"h d": "", "d h": _HD.replace("heads are split", "heads are split and merged"),
              "split d h": _HD + " (the merge is right: split with the same pattern's inverse)",
              "merge d h": "the heads are merged in the wrong order: use 'b h t d -> b t (h d)', the inverse of the split."},
    "merge": {None: "", "reshape": "reshaping the heads (B, H, T, D) straight to (B, T, H*D) mixes positions and heads; move T in front of H first (transpose(1, 2), or 'b h t d -> b t (h d)')."},
    "use_wo": {True: "", False: "the output projection W_O is missing: multiply the merged heads by w_o.",
               "T": "w_o is used transposed: the merged heads are multiplied by w_o itself, out @ w_o (not w_o.T)."},
    "transpose_w": {False: "", True: "the weights are used transposed: the projections here are plain matrices, so compute x @ w_q (not F.linear(x, w_q), which is x @ w_qᵀ)."},
}
_CROSS_VARIANTS = variant_grid(_cross_flags, _CROSS_AXES) + [
    Variant(_cross_one_head, "the heads are missing: split Q, K and V into n_heads heads of d_model / n_heads features, attend in each, then merge them before w_o."),
]


@register("cross_attention")
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
        case("source and target of the same length, one source padded", 2, 4, 4, 16, 4, lengths=[4, 2]),
        case("a longer, padded source (B, 1, 1, S) mask", 2, 3, 6, 16, 4, lengths=[6, 2]),
        case("source and target of the same length, no padding", 2, 4, 4, 16, 4),
        case("a batch of one with one target token", 1, 1, 5, 8, 2, lengths=[5]),
        case("one head", 2, 3, 2, 8, 1),
        case("a shorter source than target, padded", 3, 5, 3, 12, 3, lengths=[3, 1, 2]),
    ]
    names = ("x", "context", "w_q", "w_k", "w_v", "w_o", "n_heads", "context_mask")
    return run_check("cross_attention", fn, cases, reference_cross_attention, _CROSS_VARIANTS,
                     arg_names=names, output="float", probes=[_cross_uniform_probe],
                     raise_probes=[_cross_raise_probe],
                     properties=[device_property("cross_attention", cases[1], _cross_formula),
                                 grad_property("cross_attention", cases[1], _cross_formula, (0, 1), names)])


def _cross_raise_probe(fn, case, exc):
    """A transposed weight is invisible with square (d, d) weights; a shape error then comes from elsewhere."""
    if "mat1 and mat2" in str(exc) or "must match the size" in str(exc):
        return (f"cross_attention raised {type(exc).__name__} on the case '{case.name}' (source and target of different lengths): "
                "the queries come from x (B, T, d) and the keys and values from context (B, S, d), so the scores are (B, H, T, S); "
                "check which of the two each projection reads, and transpose only the last two axes of K.")
    return None


def _cross_uniform_probe(fn, case, got, expected):
    """With w_k = 0 every visible key gets the same weight, so the output is the mean of the visible
    values: it must not depend on x, and it tells whether the mask was used the right way round."""
    x, ctx, w_q, w_k, w_v, w_o, h, mask = case.args
    where = f"(seen on the case '{case.name}')"
    zk = torch.zeros_like(w_k)
    out0 = fn(x, ctx, w_q, zk, w_v, w_o, h, mask)
    if not isinstance(out0, Tensor) or out0.shape != expected.shape:
        return None
    if mask is not None and not bool(mask.all()):
        inv = reference_cross_attention(x, ctx, w_q, zk, w_v, w_o, h, ~mask)
        if same(out0, inv, lenient=True) and not same(inv, reference_cross_attention(x, ctx, w_q, zk, w_v, w_o, h, mask)):
            return (f"cross_attention: context_mask is inverted: True marks real source tokens that may be attended, so hide the "
                    f"positions where it is False {where}.")
    g = torch.Generator().manual_seed(5)
    out1 = fn(x + torch.randn(x.shape, generator=g), ctx, w_q, zk, w_v, w_o, h, mask)
    if isinstance(out1, Tensor) and not same(out0, out1):
        return (f"cross_attention: the values (V) are computed from x, the decoder; in cross-attention the keys *and* the values come "
                f"from the encoder's context (context @ w_v) {where}.")
    return None




# --------------------------------------------------------------------------------------------
# open task: a sliding-window causal mask
# --------------------------------------------------------------------------------------------
def reference_sliding_window_mask(t: int, window: int) -> Tensor:
    """``(t, t)`` bool: query i may see keys j with ``i - window < j <= i`` (itself and the
    ``window - 1`` tokens before it), as in local attention (Longformer, Mistral)."""
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None, :]
    return (j <= i) & (j > i - window)


def _win(t, w, lo_off=0, causal=True):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    m = j > i - w - lo_off
    return m & (j <= i) if causal else m & (j < i + w)


_WINDOW_VARIANTS = [
    Variant(lambda t, w: _win(t, w, lo_off=1), "off by one: the window holds `window` keys including the query itself, so use j > i - window (not >=)."),
    Variant(lambda t, w: _win(t, w, lo_off=-1), "off by one: the window holds `window` keys including the query itself, i - window < j <= i."),
    Variant(lambda t, w: _win(t, w, causal=False), "the window looks into the future: a decoder's window is causal, keys j <= i only."),
    Variant(lambda t, w: ~_win(t, w), _INVERTED),
    Variant(lambda t, w: torch.ones(t, t, dtype=torch.bool).tril(), "this is the plain causal mask, as if the window argument were ignored; hide keys more than window - 1 positions back (j <= i - window)."),
    Variant(lambda t, w: _win(t, w) & ~torch.eye(t, dtype=torch.bool), "the diagonal is missing: every query also sees itself."),
    Variant(lambda t, w: _win(t, w, lo_off=1) & ~torch.eye(t, dtype=torch.bool),
            "the query itself is left out of its window: the window is the query and the window - 1 keys before it, i - window < j <= i."),
    Variant(lambda t, w: (torch.arange(t)[:, None] - torch.arange(t)[None, :]).abs() < w,
            "the window reaches as far into the future as into the past: a decoder's window is causal, i - window < j <= i."),
]


@register("sliding_window_mask")
def check_sliding_window_mask(fn: Callable) -> bool:
    """Check ``fn(t, window) -> bool (t, t)``: causal, and at most ``window`` keys back (itself included)."""
    cases = [Case("t=6, window=3", (6, 3)), Case("t=5, window=1 (only itself)", (5, 1)), Case("window >= t (plain causal)", (4, 6)),
             Case("t=1, window=2", (1, 2)), Case("t=8, window=4", (8, 4)), Case("t=70, window=20 (longer than a fixed-size buffer)", (70, 20))]
    return run_check("sliding_window_mask", fn, cases, reference_sliding_window_mask, _WINDOW_VARIANTS, is_mask=True,
                     arg_names=("t", "window"), probes=[fixed_size_probe("sliding_window_mask", reference_sliding_window_mask)])
