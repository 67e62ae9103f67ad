"""Checks for lesson 07: RoPE, RMSNorm, SwiGLU, the prefix-LM mask and loss, locality mass."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ...layers import RotaryEmbedding
from ...masks import prefix_mask as _ref_prefix_mask
from ...lessons.redllm import locality_mass as _ref_locality_mass
from ._core import (Case, Fail, Variant, _gen, _logits_case, _randn, call, device_property, grad_property, ignored_arg_probe,
                    loss_backward_property, register, run_check, same)

__all__ = ["check_rope", "check_rms_norm", "check_swiglu", "check_prefix_lm_mask", "check_prefix_lm_loss",
           "check_locality_mass"]


# --------------------------------------------------------------------------------------------
# RoPE
# --------------------------------------------------------------------------------------------
def _rope_formula(x, positions, base=10000.0, *, layout="half", sign=1.0, exponent="2i", offset=0, halves="ok"):
    d = x.shape[-1]
    i = torch.arange(0, d, 2, dtype=torch.float32, device=x.device) if exponent in ("2i", "positive", "4i", "T") \
        else torch.arange(0, d // 2, dtype=torch.float32, device=x.device) * 1.0
    length = {"4i": d / 2, "T": x.shape[-2]}.get(exponent, d)
    inv_freq = base ** ((i if exponent == "positive" else -i) / length)
    angles = (positions.to(torch.float32) + offset)[:, None] * inv_freq * sign  # (T, d/2)
    cos, sin = angles.cos(), angles.sin()
    if layout == "half":
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        first, second = x1 * cos - x2 * sin, x1 * sin + x2 * cos
        if halves == "swapped":
            return torch.cat([second, first], dim=-1)
        if halves == "mixed":  # each half rotated with the other half's partner in the wrong slot
            return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)
        return torch.cat([first, second], dim=-1)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


def _ref_rope(x, positions, base=10000.0):
    return RotaryEmbedding(x.shape[-1], max_len=int(positions.max()) + 1, base=base)(x, positions)


_ROPE_VARIANTS = [
    Variant(lambda x, p, base=10000.0: _rope_formula(x, p, base, layout="interleaved"),
            "you rotate the interleaved pairs (x0, x1), (x2, x3), …; the library (GPT-NeoX / LLaMA layout) pairs "
            "coordinate i with i + d/2: x1, x2 = x[..., :d/2], x[..., d/2:]. Both have the relative-position property, "
            "but weights trained with one layout do not work with the other."),
    Variant(lambda x, p, base=10000.0: _rope_formula(x, p, base, sign=-1.0),
            "the rotation goes the wrong way: the first half is x1·cos − x2·sin and the second x1·sin + x2·cos."),
    Variant(lambda x, p, base=10000.0: _rope_formula(x, p, base, exponent="i"),
            "the frequencies are θ_i = base^(−2i/d) for i = 0 … d/2 − 1 (torch.arange(0, d, 2) / d), not base^(−i/d)."),
    Variant(lambda x, p, base=10000.0: _rope_formula(x, p, base, offset=1),
            "the angle is position · θ_i with the positions as given (the first is 0), not position + 1."),
    Variant(lambda x, p, base=10000.0: _rope_formula(x, p, 10000.0),
            "the base argument is ignored; use it instead of a hard-coded 10000."),
    Variant(lambda x, p, base=10000.0: x.clone(), "x comes back unrotated: multiply by cos and add the rotated half times sin."),
    Variant(lambda x, p, base=10000.0: _rope_formula(x, p, base, exponent="positive"),
            "the frequencies are not inverted: θ_i = base^(−2i/d) (1 / base^(2i/d)), which falls from 1 to about 1/base; base^(+2i/d) grows instead."),
    Variant(lambda x, p, base=10000.0: _rope_formula(x, p, base, exponent="4i"),
            "the exponent is divided by d/2 instead of d: θ_i = base^(−2i/d) with i = 0 … d/2 − 1 (torch.arange(0, d, 2) / d)."),
    Variant(lambda x, p, base=10000.0: _rope_formula(x, p, base, exponent="T"),
            "the exponent is divided by the sequence length; θ_i = base^(−2i/d) uses d, the size of each vector (x.shape[-1])."),
    Variant(lambda x, p, base=10000.0: _rope_formula(x, p, base, halves="swapped"),
            "the two halves come back swapped: the result is [x1·cos − x2·sin, x1·sin + x2·cos], the first half's formula first."),
    Variant(lambda x, p, base=10000.0: _rope_formula(x, p, base, halves="mixed"),
            "the halves' partners are mixed up: the rotation of the pair (x1, x2) is [x1·cos − x2·sin, x1·sin + x2·cos]."),
]


def _rope_positions(args, kwargs):
    x, positions = args[0], args[1]
    t = x.shape[-2]
    alts = [([x, torch.arange(t)], kwargs, "positions 0 … T − 1 (torch.arange(T))")]
    return [a for a in alts if not torch.equal(a[0][1], positions)]


def _relative_property(fn: Callable) -> None:
    g = _gen(77)
    q, k = _randn(g, 1, 1, 1, 8), _randn(g, 1, 1, 1, 8)

    def score(m, n):
        case = Case("relative positions", (q, torch.tensor([m])))
        a = call("rope", fn, case, arg_names=("x", "positions"))
        b = call("rope", fn, Case("relative positions", (k, torch.tensor([n]))), arg_names=("x", "positions"))
        return float((a * b).sum())

    for m, n, s in [(3, 1, 10), (0, 7, 30)]:
        if not math.isclose(score(m, n), score(m + s, n + s), rel_tol=1e-4, abs_tol=1e-4):
            raise Fail(f"the score of a rotated query at {m} and key at {n} changes when both move by {s}; RoPE scores "
                       "must depend on the distance m − n only (rotate both by position · θ_i with the same θ_i).")


@register("rope")
def check_rope(fn: Callable) -> bool:
    """Check ``fn(x (..., T, d_head), positions (T,), base=10000.0)`` against :class:`~course_lib.layers.RotaryEmbedding`,
    then the relative-position property."""
    g = _gen(701)
    cases = [
        Case("(B, H, T, d_head) = (2, 2, 5, 8), positions 0..4", (_randn(g, 2, 2, 5, 8), torch.arange(5))),
        Case("positions 10..13 (a decoding step far in)", (_randn(g, 1, 2, 4, 8), torch.arange(10, 14))),
        Case("d_head 16, base 500", (_randn(g, 1, 1, 6, 16), torch.arange(6)), {"base": 500.0}),
        Case("one position", (_randn(g, 1, 1, 1, 4), torch.tensor([3]))),
    ]
    cases.append(Case("positions in any order, (3, 7, 16) (a batch of 3, not 1 or 2)", (_randn(g, 3, 7, 16), torch.tensor([5, 0, 9, 2, 2, 40, 7]))))
    return run_check("rope", fn, cases, _ref_rope, _ROPE_VARIANTS, arg_names=("x", "positions"), output="float",
                     early_probes=[ignored_arg_probe("rope", _ref_rope, "positions", _rope_positions)],
                     properties=[_relative_property, device_property("rope", cases[0], _rope_formula),
                                 grad_property("rope", cases[-1], _rope_formula, (0,), ("x",))])


# --------------------------------------------------------------------------------------------
# RMSNorm
# --------------------------------------------------------------------------------------------
def _rms_formula(x, weight, eps=1e-6, *, center=False, eps_where="inside", stat="rms", scale=True, dim=-1, gain="weight"):
    if center:
        x = x - x.mean(dim, keepdim=True)
    if stat == "rms":
        ms = x.pow(2).mean(dim, keepdim=True)
    elif stat == "sum":  # x.norm(dim=-1): the root of the *sum* of squares
        ms = x.pow(2).sum(dim, keepdim=True)
    else:
        ms = x.var(dim, keepdim=True, unbiased=(stat == "unbiased"))
    if gain == "one_plus":
        weight = 1 + weight
    if eps_where == "inside":
        y = x / torch.sqrt(ms + eps)
    elif eps_where == "outside":
        y = x / (torch.sqrt(ms) + eps)
    else:
        y = x / torch.sqrt(ms)
    return y * weight if scale else y


def _ref_rms(x, weight, eps=1e-6):
    return _rms_formula(x, weight, eps)


_STD = ("you divide by the standard deviation (x.std(), which removes the mean); RMSNorm divides by the root mean square "
        "√(mean(x²) + ε), with no mean removed.")
_RMS_VARIANTS = [
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, center=True), "the mean is subtracted: that is LayerNorm; "
            "RMSNorm divides x itself by √(mean(x²) + ε)."),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, center=True, stat="var"), "the mean is subtracted: that is LayerNorm; "
            "RMSNorm divides x itself by √(mean(x²) + ε)."),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, stat="var"), _STD),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, stat="unbiased"), _STD),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, stat="unbiased", eps_where="outside"), _STD),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, eps_where="outside"), "ε goes inside the square root: √(mean(x²) + ε)."),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, 1e-6), "the eps argument is ignored; use it instead of a hard-coded value."),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, eps_where="none"), "ε is missing: √(mean(x²) + ε) keeps a zero vector from dividing by zero."),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, gain="one_plus"),
            "the scale is 1 + weight (Gemma's convention); here γ is the weight itself: multiply by weight."),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, dim=0),
            "the mean of x² is taken over the wrong axis (dim=0); normalise each vector over its features, the last axis (dim=-1)."),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, dim=-2),
            "the mean of x² is taken over the wrong axis (dim=-2, the positions); normalise each vector over its features, dim=-1."),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, stat="sum"),
            "x.norm() (or a sum of squares) is the root of the *sum*; RMSNorm uses the root of the *mean*, √(mean(x²) + ε) — divide the sum by d."),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, stat="sum", eps_where="outside"),
            "x.norm() (or a sum of squares) is the root of the *sum*; RMSNorm uses the root of the *mean*, √(mean(x²) + ε) — divide the sum by d."),
    Variant(lambda x, w, eps=1e-6: _rms_formula(x, w, eps, scale=False), "the learned scale γ (weight) is not applied: multiply the result by weight."),
    Variant(lambda x, w, eps=1e-6: x * w / torch.sqrt(x.pow(2).mean() + eps), "the mean of x² is taken over the whole tensor; "
            "take it over the last dimension only (dim=-1, keepdim=True)."),
]


@register("rms_norm")
def check_rms_norm(fn: Callable) -> bool:
    """Check ``fn(x (..., d), weight (d,), eps=1e-6) -> weight · x / √(mean(x²) + eps)``."""
    g = _gen(702)
    cases = [
        Case("(2, 3, 8) with mean far from 0", (_randn(g, 2, 3, 8) + 3.0, _randn(g, 8))),
        Case("(5, 4, 16) of small values, eps=0.01", (_randn(g, 5, 4, 16) * 0.002, _randn(g, 16)), {"eps": 0.01}),
        Case("(4, 16), eps=0.1", (_randn(g, 4, 16) * 0.1, _randn(g, 16)), {"eps": 0.1}),
        Case("a zero vector", (torch.zeros(1, 8), torch.ones(8)), {"eps": 1e-5}),
    ]
    eps = ignored_arg_probe("rms_norm", _ref_rms, "eps", lambda a, kw: [
        (a, {**kw, "eps": e}, f"eps = {e:g}") for e in (1e-6, 1e-5, 1e-8) if e != kw.get("eps", 1e-6)])
    return run_check("rms_norm", fn, cases, _ref_rms, _RMS_VARIANTS, arg_names=("x", "weight"), output="float",
                     early_probes=[eps], properties=[device_property("rms_norm", cases[1], _ref_rms),
                                                     grad_property("rms_norm", cases[1], _ref_rms, (0, 1), ("x", "weight"))])


# --------------------------------------------------------------------------------------------
# SwiGLU
# --------------------------------------------------------------------------------------------
def _ref_swiglu(x, w_gate, w_up, w_down):
    return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)


_SWIGLU_VARIANTS = [
    Variant(lambda x, g, u, d: F.linear(F.silu(F.linear(x, u)) * F.linear(x, g), d),
            "SiLU goes on the gate projection (w_gate), not on the up projection: W_down(SiLU(W_gate x) ⊙ W_up x)."),
    Variant(lambda x, g, u, d: F.linear(torch.sigmoid(F.linear(x, g)) * F.linear(x, u), d),
            "the gate uses SiLU(z) = z·σ(z), not the bare sigmoid σ(z) (that would be GLU)."),
    Variant(lambda x, g, u, d: F.linear(F.gelu(F.linear(x, g)) * F.linear(x, u), d),
            "the gate uses SiLU (F.silu), not GELU (that would be GeGLU)."),
    Variant(lambda x, g, u, d: F.linear(F.relu(F.linear(x, g)) * F.linear(x, u), d),
            "the gate uses SiLU (F.silu), not ReLU."),
    Variant(lambda x, g, u, d: F.linear(F.silu(F.linear(x, g)), d),
            "the up projection is missing: multiply SiLU(W_gate x) element-wise by W_up x before W_down."),
    Variant(lambda x, g, u, d: F.linear(F.silu(F.linear(x, g)) + F.linear(x, u), d),
            "the gate multiplies (⊙), it does not add."),
    Variant(lambda x, g, u, d: F.linear(F.silu(F.linear(x, g) * F.linear(x, u)), d),
            "SiLU is applied to the product; apply it to W_gate x only, then multiply by W_up x."),
    Variant(lambda x, g, u, d: F.linear(F.silu(F.linear(x, g)) * F.silu(F.linear(x, u)), d),
            "SiLU is applied to both branches; only the gate gets it: SiLU(W_gate x) ⊙ (W_up x)."),
    Variant(lambda x, g, u, d: F.silu(F.linear(F.linear(x, g) * F.linear(x, u), d)),
            "SiLU comes after W_down; it goes on the gate projection only: W_down(SiLU(W_gate x) ⊙ W_up x)."),
]


@register("swiglu")
def check_swiglu(fn: Callable) -> bool:
    """Check ``fn(x (..., d), w_gate (d_ff, d), w_up (d_ff, d), w_down (d, d_ff))`` (weights as in ``nn.Linear``)."""
    g = _gen(703)
    cases = [
        Case("d=8, d_ff=12, (2, 3, 8)", (_randn(g, 2, 3, 8), _randn(g, 12, 8), _randn(g, 12, 8), _randn(g, 8, 12))),
        Case("d=4, d_ff=16, one token", (_randn(g, 1, 4), _randn(g, 16, 4), _randn(g, 16, 4), _randn(g, 4, 16))),
        Case("d=6, d_ff=10, (3, 5, 6)", (_randn(g, 3, 5, 6), _randn(g, 10, 6), _randn(g, 10, 6), _randn(g, 6, 10))),
    ]
    names = ("x", "w_gate", "w_up", "w_down")
    return run_check("swiglu", fn, cases, _ref_swiglu, _SWIGLU_VARIANTS, arg_names=names, output="float",
                     raise_probes=[_swiglu_raise_probe],
                     properties=[device_property("swiglu", cases[0], _ref_swiglu), grad_property("swiglu", cases[2], _ref_swiglu, (0, 1, 2, 3), names)])


def _swiglu_raise_probe(fn, case, exc):
    if "mat1 and mat2" in str(exc) or "size mismatch" in str(exc):
        return (f"swiglu raised {type(exc).__name__} on the case '{case.name}' (d_ff != d): the weights are stored as in nn.Linear, "
                "(out_features, in_features), so multiply by their transpose, x @ w_gate.T, or use F.linear(x, w_gate).")
    return None


# --------------------------------------------------------------------------------------------
# prefix-LM mask and loss
# --------------------------------------------------------------------------------------------
def _mask_formula(t, prefix_len, *, prefix="keys", causal="lower", inclusive=True):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    base = (j <= i) if causal == "lower" else (j >= i)
    if not inclusive:
        base = j < i
    if prefix == "keys":
        extra = j < prefix_len
    elif prefix == "block":
        extra = (i < prefix_len) & (j < prefix_len)
    elif prefix == "queries":
        extra = i < prefix_len
    else:
        extra = torch.zeros(t, t, dtype=torch.bool)
    return base | extra


_MASK_VARIANTS = [
    Variant(lambda t, p: _mask_formula(t, p, prefix="none"), "this is the plain causal mask, as if the prefix_len argument were "
            "ignored: every query must also see the whole prefix (keys j < prefix_len), in both directions."),
    Variant(lambda t, p: _mask_formula(t, p, prefix="queries"), "the prefix's *queries* see everything, so prefix tokens read the "
            "continuation (a leak); the rule is on the keys: any query may see key j when j < prefix_len."),
    Variant(lambda t, p: _mask_formula(t, p, causal="upper"), "the causal part is transposed: query i sees keys j <= i (lower triangle)."),
    Variant(lambda t, p: _mask_formula(t, p, inclusive=False), "the diagonal is missing: a query may attend to its own position (j <= i)."),
    Variant(lambda t, p: _mask_formula(t, p + 1), "the prefix is one token too long: keys j < prefix_len, not j <= prefix_len."),
    Variant(lambda t, p: _mask_formula(t, p - 1), "the prefix is one token too short: keys j < prefix_len are in the prefix."),
    Variant(lambda t, p: ~_mask_formula(t, p), "True and False are swapped: True means 'may attend'."),
]


@register("prefix_lm_mask")
def check_prefix_lm_mask(fn: Callable) -> bool:
    """Check ``fn(t, prefix_len) -> (t, t)`` bool, True = may attend: causal, plus every key of the prefix."""
    from .attention import _PREFIX_VARIANTS, fixed_size_probe

    cases = [Case("t=6, prefix 3", (6, 3)), Case("t=5, prefix 1", (5, 1)), Case("t=4, prefix 4", (4, 4)),
             Case("t=7, prefix 0", (7, 0)), Case("t=70, prefix 33 (longer than a fixed-size buffer)", (70, 33))]
    ref = lambda t, p: _ref_prefix_mask(t, p)  # noqa: E731
    return run_check("prefix_lm_mask", fn, cases, ref, _MASK_VARIANTS + _PREFIX_VARIANTS,
                     arg_names=("t", "prefix_len"), output="mask", is_mask=True, probes=[fixed_size_probe("prefix_lm_mask", ref)])


def _loss_formula(logits, tokens, prefix_len, *, start="prefix", shift=True, reduce="mean", stop=None):
    if shift:
        lg, tg = logits[:, :-1], tokens[:, 1:]
        first = prefix_len - 1 if start == "prefix" else (prefix_len if start == "late" else 0)
    else:
        lg, tg = logits, tokens
        first = prefix_len if start == "prefix" else 0
    if start == "prefix_only":  # the prefix is scored instead of the continuation
        lg, tg = (lg[:, : prefix_len - 1], tg[:, : prefix_len - 1]) if shift else (lg[:, :prefix_len], tg[:, :prefix_len])
    else:
        end = None if stop is None else -stop
        lg, tg = lg[:, first:end], tg[:, first:end]
    nll = F.cross_entropy(lg.flatten(0, 1).float(), tg.flatten(), reduction="none")
    if reduce == "mean":
        return nll.mean()
    if reduce == "all":  # the continuation's sum over all T - 1 predictions of every row
        return nll.sum() / (tokens.shape[0] * (tokens.shape[1] - 1))
    if reduce == "allT":
        return nll.sum() / tokens.numel()
    if reduce == "rows":
        return nll.sum() / tokens.shape[0]
    return nll.sum()


def _ref_loss(logits, tokens, prefix_len):
    return _loss_formula(logits, tokens, prefix_len)


_LOSS_VARIANTS = [
    Variant(lambda lg, tk, p: _loss_formula(lg, tk, p, start="all"),
            "the prefix is scored too. With bidirectional attention over the prefix, the output at position j−1 can read x_j "
            "itself, so those targets leak (the model learns to copy); score only the continuation tokens x_P … x_{T−1}."),
    Variant(lambda lg, tk, p: _loss_formula(lg, tk, p, start="late"),
            "the first continuation token x_P is not scored: it is predicted by the output at position P−1 (logits[:, P−1])."),
    Variant(lambda lg, tk, p: _loss_formula(lg, tk, p, shift=False),
            "logits[:, t] predicts the *next* token, tokens[:, t+1]: compare logits[:, P−1:−1] with tokens[:, P:]."),
    Variant(lambda lg, tk, p: _loss_formula(lg, tk, p, reduce="sum"),
            "the loss is summed; take the mean over the continuation tokens."),
    Variant(lambda lg, tk, p: _loss_formula(lg, tk, p, start="all", shift=False),
            "two mistakes: the prefix is scored too (a leak under bidirectional attention); and logits[:, t] predicts tokens[:, t+1]."),
    Variant(lambda lg, tk, p: _loss_formula(lg, tk, p, reduce="all"),
            "the continuation's loss is divided by all T − 1 predictions of the row; divide by the T − P continuation tokens that are scored (a mean over them)."),
    Variant(lambda lg, tk, p: _loss_formula(lg, tk, p, reduce="allT"),
            "the continuation's loss is divided by all B·T positions; divide by the B·(T − P) continuation tokens that are scored (a mean over them)."),
    Variant(lambda lg, tk, p: _loss_formula(lg, tk, p, reduce="rows"),
            "the continuation's loss is divided by the batch size only; take the mean over the continuation tokens."),
    Variant(lambda lg, tk, p: _loss_formula(lg, tk, p, start="prefix_only"),
            "the prefix is scored instead of the continuation: score x_P … x_{T−1} (the part after prefix_len), each from the logits one position before it."),
    Variant(lambda lg, tk, p: _loss_formula(lg, tk, p, stop=1),
            "the last token x_{T−1} is not scored: the continuation runs to the end, logits[:, P−1:−1] against tokens[:, P:]."),
    Variant(lambda lg, tk, p: _loss_formula(lg, tk, p, shift=False, stop=1),
            "logits[:, t] predicts the *next* token, tokens[:, t+1], so pair logits[:, P−1:−1] with tokens[:, P:] (here each position is scored against its own token)."),
]


def _other_prefix_probe(fn, case, got, expected):
    """The learner's loss is the reference's for another prefix length: a hard-coded or shifted prefix."""
    logits, tokens, p = case.args
    for q in range(1, tokens.shape[1]):
        if q != p and same(got, _ref_loss(logits, tokens, q)):
            ignored = " — as if the prefix_len argument were ignored" if q not in (p - 1, p + 1) else ""
            return (f"prefix_lm_loss: your loss is the one for prefix_len = {q}, but prefix_len = {p}{ignored}; score the continuation "
                    f"x_P … x_(T−1) with P = prefix_len as given, each from the logits one position before it (seen on the case '{case.name}').")
    return None


@register("prefix_lm_loss")
def check_prefix_lm_loss(fn: Callable) -> bool:
    """Check ``fn(logits (B, T, V), tokens (B, T), prefix_len) -> scalar``: mean cross-entropy of the
    continuation tokens ``x_P … x_{T-1}`` only, each predicted from the position before it."""
    g = _gen(705)
    V = 11
    tok = lambda b, t: torch.randint(6, V, (b, t), generator=g)  # noqa: E731
    cases = [
        Case("T=11, prefix 3, a batch of 3", (_logits_case(g, 3, 11, V), tok(3, 11), 3)),
        Case("T=8, prefix 4", (_logits_case(g, 2, 8, V), tok(2, 8), 4)),
        Case("T=6, prefix 1", (_logits_case(g, 3, 6, V), tok(3, 6), 1)),
        Case("T=5, prefix 4 (one target)", (_logits_case(g, 1, 5, V), tok(1, 5), 4)),
        Case("large logits", (_logits_case(g, 2, 6, V, scale=100.0), tok(2, 6), 3)),
    ]
    names = ("logits", "tokens", "prefix_len")
    return run_check("prefix_lm_loss", fn, cases, _ref_loss, _LOSS_VARIANTS, arg_names=names,
                     output="loss", probes=[_other_prefix_probe],
                     properties=[loss_backward_property("prefix_lm_loss", cases[:2], _ref_loss, arg_names=names),
                                 device_property("prefix_lm_loss", cases[0], _ref_loss)])


# --------------------------------------------------------------------------------------------
# locality mass
# --------------------------------------------------------------------------------------------
def _loc_formula(w, window=4, *, lo="inclusive", hi="inclusive", offset=True, query_offset=0, denom=None):
    t_q, t_k = w.shape[-2:]
    i = torch.arange(t_q, device=w.device)[:, None] + (query_offset if offset is True else -query_offset if offset == "minus" else 0)
    j = torch.arange(t_k, device=w.device)[None, :]
    low = j >= i - window if lo == "inclusive" else j > i - window
    high = {"inclusive": j <= i, "exclusive": j < i, "none": torch.ones_like(j, dtype=torch.bool), "both": j <= i + window}[hi]
    local = (w * (low & high).to(w.dtype))
    if denom == "window":
        return local.sum(-1) / (window + 1)
    if denom == "keys":
        return local.mean(-1)
    if denom == "visible":  # divided by the row's mass inside the causal part
        return local.sum(-1) / (w * (j <= i).to(w.dtype)).sum(-1).clamp(min=1e-12)
    return local.sum(-1)


_LOC_VARIANTS = [
    Variant(lambda w, window=4, query_offset=0: _loc_formula(w, window, lo="exclusive", query_offset=query_offset),
            "the window [i − window, i] has window + 1 keys: include key i − window (j >= i − window)."),
    Variant(lambda w, window=4, query_offset=0: _loc_formula(w, window, hi="exclusive", query_offset=query_offset),
            "the window includes the query's own position i (j <= i)."),
    Variant(lambda w, window=4, query_offset=0: _loc_formula(w, window, offset=False, query_offset=query_offset),
            "query_offset is ignored: query j sits at key position i = j + query_offset."),
    Variant(lambda w, window=4, query_offset=0: _loc_formula(w, 4, query_offset=query_offset),
            "the window argument is ignored; use it instead of a hard-coded 4."),
    Variant(lambda w, window=4, query_offset=0: _loc_formula(w, window, query_offset=query_offset).mean(),
            "return one value per query (shape (..., T_q)); the caller averages over heads, layers and examples."),
    Variant(lambda w, window=4, query_offset=0: _loc_formula(w, window, hi="both", query_offset=query_offset),
            "the window reaches into the future too (|i − j| <= window); it is the keys [i − window, i], none after the query's own position."),
    Variant(lambda w, window=4, query_offset=0: _loc_formula(w, window, hi="none", query_offset=query_offset),
            "keys after the query's own position i are counted too; the window is [i − window, i] (j <= i as well as j >= i − window)."),
    Variant(lambda w, window=4, query_offset=0: _loc_formula(w, window, offset="minus", query_offset=query_offset),
            "query_offset goes the wrong way: query j sits at key position i = j + query_offset, not j − query_offset."),
    Variant(lambda w, window=4, query_offset=0: _loc_formula(w, window, query_offset=query_offset, denom="window"),
            "the mass is divided by the window's size: it is the plain sum of the weights on keys [i − window, i] (a share of 1)."),
    Variant(lambda w, window=4, query_offset=0: _loc_formula(w, window, query_offset=query_offset, denom="keys"),
            "the mass is a mean over all keys; it is the plain sum of the weights on keys [i − window, i] (use .sum(-1), not .mean(-1))."),
    Variant(lambda w, window=4, query_offset=0: _loc_formula(w, window, query_offset=query_offset, denom="visible"),
            "the mass is divided by the weight on the visible keys; the rows of an attention map already sum to 1, so return the plain sum over keys [i − window, i]."),
]


@register("locality_mass")
def check_locality_mass(fn: Callable) -> bool:
    """Check ``fn(weights (..., T_q, T_k), window=4, query_offset=0) -> (..., T_q)``: the mass on keys [i − window, i]."""
    g = _gen(706)

    def causal_weights(*shape):
        t = shape[-1]
        s = _randn(g, *shape).masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
        return s.softmax(-1)

    cases = [
        Case("causal map (2, 3, 10, 10)", (causal_weights(2, 3, 10, 10),)),
        Case("window 2", (causal_weights(1, 8, 8),), {"window": 2}),
        Case("queries at 4..7 over keys 0..7 (query_offset=4)", (_randn(g, 2, 4, 8).softmax(-1),), {"query_offset": 4}),
        Case("a full (non-causal) map (3, 12, 12), window 3", (_randn(g, 3, 12, 12).softmax(-1),), {"window": 3}),
        Case("cross-attention map (5 queries, 9 keys), window 5, query_offset 3", (_randn(g, 2, 2, 5, 9).softmax(-1),),
             {"window": 5, "query_offset": 3}),
    ]
    ref = lambda w, window=4, query_offset=0: _ref_locality_mass(w, window, query_offset)  # noqa: E731
    return run_check("locality_mass", fn, cases, ref, _LOC_VARIANTS, arg_names=("weights",), output="float",
                     properties=[device_property("locality_mass", cases[-1], ref)])
