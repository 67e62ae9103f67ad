"""Learner-style implementations for the exercise checks: many *wrong* ones (classic mistakes, two
mistakes at once, in-place edits, wrong dtypes, hard-coded ids, unusual styles) and *correct* ones
in other styles (loops, einsum, numpy, torch.where, masked_fill, sacrebleu …).

``WRONG``: ``(check name, function, regex the hint must match to name the mistake)``;
``CORRECT``: ``(check name, function)``. Collected by tests/learners/__init__.py; test_learners.py prints
the caught / accepted / hints-on-target numbers.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

import course_lib as cl
from course_lib import checks as C
from course_lib.losses import IGNORE
from course_lib.tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_ID, pad_batch
from .common import NINF, SPECIAL_IDS, registry


WRONG, CORRECT, wrong, correct = registry()


def _token_nll(lg, tg, pad, pad_id, guard, reduce):
    """Cross-entropy of ``lg`` against ``tg`` with a (possibly wrong) padding rule and reduction:
    ``pad`` "scored" counts padding, "zero" takes 0 for the pad id; ``reduce`` "sum", "all" (mean
    over every position), "rows" (mean of per-row means) or the right mean over counted tokens."""
    keep = torch.ones_like(tg, dtype=torch.bool) if pad == "scored" else tg != (0 if pad == "zero" else pad_id)
    nll = -F.log_softmax(lg, -1).gather(-1, tg[..., None]).squeeze(-1)
    if guard and not keep.any():
        return lg.sum() * 0.0
    if reduce == "sum":
        return (nll * keep).sum()
    if reduce == "all":
        return (nll * keep).mean()
    if reduce == "rows":
        cnt = keep.sum(1)
        return ((nll * keep).sum(1)[cnt > 0] / cnt[cnt > 0]).mean()
    return nll[keep].mean()




# =============================================================================================
# scaled dot-product attention
# =============================================================================================
def _attn(q, k, v, mask=None, scale=None, fill=NINF, dim=-1, fix=True):
    s = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        s = s.masked_fill(~mask, fill)
    w = s.softmax(dim)
    return (torch.nan_to_num(w) if fix else w) @ v


SDPA = "scaled_dot_product_attention"


@correct(SDPA)
def sdpa_einsum(q, k, v, mask=None):
    s = torch.einsum("...qd,...kd->...qk", q, k) / q.shape[-1] ** 0.5
    if mask is not None:
        s = torch.where(mask, s, torch.tensor(NINF))
    w = torch.softmax(s, dim=-1)
    w = torch.where(torch.isnan(w), torch.zeros_like(w), w)
    return torch.einsum("...qk,...kd->...qd", w, v)


@correct(SDPA)
def sdpa_torch_builtin(q, k, v, mask=None):
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if mask is not None:  # a query with no visible key -> zeros
        visible = mask.expand(*out.shape[:-1], k.shape[-2]).any(-1, keepdim=True)
        out = out.masked_fill(~visible, 0.0)
    return torch.nan_to_num(out)


@wrong(SDPA, r"pair|alone")  # was correct before issue 26: the next cells use the result as the output tensor itself
def sdpa_inplace_on_local_scores(q, k, v, mask=None):
    scores = torch.matmul(q, k.transpose(-1, -2))
    scores /= math.sqrt(q.size(-1))  # in place, but on a new tensor: fine
    if mask is not None:
        scores.masked_fill_(mask.logical_not(), NINF)
    weights = scores.softmax(-1).nan_to_num_(0.0)
    return weights @ v, weights


@wrong(SDPA, r"float64|dtype")  # was correct before issue 26: a float64 result breaks the next float32 layer
def sdpa_numpy(q, k, v, mask=None):
    qn, kn, vn = q.numpy(), k.numpy(), v.numpy()
    s = qn @ np.swapaxes(kn, -1, -2) / np.sqrt(qn.shape[-1])
    if mask is not None:
        s = np.where(mask.numpy(), s, -np.inf)
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    tot = e.sum(-1, keepdims=True)
    w = np.divide(e, tot, out=np.zeros_like(e), where=tot > 0)
    return torch.from_numpy(w @ vn)


@correct(SDPA)
def sdpa_big_negative_with_zeroed_rows(q, k, v, mask=None):
    s = q @ k.mT / math.sqrt(q.shape[-1])
    if mask is None:
        return s.softmax(-1) @ v
    w = s.masked_fill(~mask, -1e9).softmax(-1) * mask  # multiply keeps rows with no key at 0
    return w @ v


wrong(SDPA, r"√d_k")(lambda q, k, v, mask=None: _attn(q, k, v, mask, scale=1.0))
wrong(SDPA, r"instead of √d_k")(lambda q, k, v, mask=None: _attn(q, k, v, mask, scale=q.shape[-1]))
wrong(SDPA, r"wrong axis")(lambda q, k, v, mask=None: _attn(q, k, v, mask, dim=-2))
wrong(SDPA, r"inverted")(lambda q, k, v, mask=None: _attn(q, k, v, None if mask is None else ~mask))
wrong(SDPA, r"instead of -inf|set to 0")(lambda q, k, v, mask=None: _attn(q, k, v, mask, fill=0.0))
wrong(SDPA, r"all masked|NaN")(lambda q, k, v, mask=None: _attn(q, k, v, mask, fix=False))
wrong(SDPA, r"zeros|all masked")(lambda q, k, v, mask=None: _attn(q, k, v, mask, fill=-1e9))
wrong(SDPA, r"two mistakes.*√d_k.*wrong axis|wrong axis.*√d_k")(lambda q, k, v, mask=None: _attn(q, k, v, mask, scale=1.0, dim=-2))
wrong(SDPA, r"size of V")(lambda q, k, v, mask=None: _attn(q, k, v, mask, scale=math.sqrt(v.shape[-1])))
wrong(SDPA, r"mask is ignored|masked")(lambda q, k, v, mask=None: _attn(q, k, v, None))


@wrong(SDPA, r"input `q` in place")
def sdpa_scales_q_in_place(q, k, v, mask=None):
    q /= math.sqrt(q.shape[-1])
    return _attn(q, k, v, mask, scale=1.0)


@wrong(SDPA, r"input `(q|k)` in place")
def sdpa_mul_in_place(q, k, v, mask=None):
    k.mul_(1.0 / math.sqrt(k.shape[-1]))
    return _attn(q, k, v, mask, scale=1.0)


@wrong(SDPA, r"after the softmax")
def sdpa_mask_after(q, k, v, mask=None):
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    if mask is not None:
        w = w * mask
    return w @ v


@wrong(SDPA, r"weights")
def sdpa_returns_weights(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return torch.nan_to_num(s.softmax(-1))


@wrong(SDPA, r"K Qᵀ|Q Kᵀ")
def sdpa_k_q(q, k, v, mask=None):
    s = (k @ q.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return torch.nan_to_num(s.softmax(-1)) @ v


@wrong(SDPA, r"transpos|Vᵀ")
def sdpa_v_transposed(q, k, v, mask=None):
    return torch.nan_to_num(_attn(q, k, v.transpose(-2, -1), mask))


@wrong(SDPA, r"input `q` in place")
def sdpa_masks_scores_in_the_callers_q(q, k, v, mask=None):
    d = q.shape[-1]
    q.div_(d ** 0.5)
    s = q @ k.transpose(-2, -1)
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return torch.nan_to_num(s.softmax(-1)) @ v


# =============================================================================================
# masks
# =============================================================================================
@correct("causal_mask")
def causal_arange(t):
    i = torch.arange(t)
    return i[:, None] >= i[None, :]


@correct("causal_mask")
def causal_numpy(t):
    return torch.from_numpy(np.tri(t, dtype=bool))


@correct("causal_mask")
def causal_loops(t):
    m = torch.zeros(t, t, dtype=torch.bool)
    for i in range(t):
        for j in range(i + 1):
            m[i, j] = True
    return m


@correct("causal_mask")
def causal_not_triu(t):
    return ~torch.ones(t, t, dtype=torch.bool).triu(1)


wrong("causal_mask", r"diagonal")(lambda t: torch.ones(t, t).tril(-1).bool())
wrong("causal_mask", r"transposed|upper")(lambda t: torch.ones(t, t, dtype=torch.bool).triu())
wrong("causal_mask", r"boolean|bool")(lambda t: torch.tril(torch.ones(t, t)))
wrong("causal_mask", r"additive|bool")(lambda t: torch.zeros(t, t).masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), NINF))
wrong("causal_mask", r"inverted")(lambda t: torch.ones(t, t, dtype=torch.bool).triu(1))
wrong("causal_mask", r"future|j <= i \+ 1")(lambda t: torch.ones(t, t, dtype=torch.bool).tril(1))
wrong("causal_mask", r"shape")(lambda t: torch.ones(t, t, dtype=torch.bool).tril()[None, None])
wrong("causal_mask", r"encoder|every key")(lambda t: torch.ones(t, t, dtype=torch.bool))
wrong("causal_mask", r"bool")(lambda t: torch.ones(t, t, dtype=torch.long).tril())


@correct("padding_mask")
def padding_unsqueeze(tokens, pad_id=0):
    return tokens.ne(pad_id).unsqueeze(1).unsqueeze(2)


@correct("padding_mask")
def padding_rearrange(tokens, pad_id=0):
    return rearrange(tokens != pad_id, "b t -> b 1 1 t")


@correct("padding_mask")
def padding_where(tokens, pad_id=0):
    B, T = tokens.shape
    return torch.where(tokens == pad_id, False, True).view(B, 1, 1, T)


wrong("padding_mask", r"inverted")(lambda tokens, pad_id=0: (tokens == pad_id)[:, None, None, :])
wrong("padding_mask", r"\(B, 1, 1, T\)")(lambda tokens, pad_id=0: tokens != pad_id)
wrong("padding_mask", r"queries")(lambda tokens, pad_id=0: (tokens != pad_id)[:, None, :, None])
wrong("padding_mask", r"pad_id")(lambda tokens, pad_id=0: (tokens != 0)[:, None, None, :])
wrong("padding_mask", r"bool")(lambda tokens, pad_id=0: (tokens != pad_id)[:, None, None, :].float())
wrong("padding_mask", r"\(B, 1, 1, T\)")(lambda tokens, pad_id=0: (tokens != pad_id)[:, None, :])


@wrong("padding_mask", r"input `tokens` in place")
def padding_in_place(tokens, pad_id=0):
    tokens.ne_(pad_id)  # overwrites the caller's ids with 0/1
    return tokens.bool()[:, None, None, :]


@correct("prefix_mask")
def prefix_blocks(t, prefix_len):
    m = torch.ones(t, t, dtype=torch.bool).tril()
    m[:prefix_len, :prefix_len] = True
    return m


@correct("prefix_mask")
def prefix_loops(t, prefix_len):
    return torch.tensor([[j <= i or j < prefix_len for j in range(t)] for i in range(t)], dtype=torch.bool).reshape(t, t)


wrong("prefix_mask", r"bidirectional|plain causal")(lambda t, p: torch.ones(t, t, dtype=torch.bool).tril())
wrong("prefix_mask", r"rows")(lambda t, p: torch.ones(t, t, dtype=torch.bool).tril() | (torch.arange(t) < p)[:, None])
wrong("prefix_mask", r"off by one")(lambda t, p: torch.ones(t, t, dtype=torch.bool).tril() | (torch.arange(t) <= p)[None, :])
wrong("prefix_mask", r"off by one")(lambda t, p: torch.ones(t, t, dtype=torch.bool).tril() | (torch.arange(t) < p - 1)[None, :])
wrong("prefix_mask", r"inverted")(lambda t, p: ~(torch.ones(t, t, dtype=torch.bool).tril() | (torch.arange(t) < p)[None, :]))
wrong("prefix_mask", r"bool")(lambda t, p: (torch.ones(t, t, dtype=torch.bool).tril() | (torch.arange(t) < p)[None, :]).int())
wrong("prefix_mask", r"everything is visible")(lambda t, p: torch.ones(t, t, dtype=torch.bool))


# =============================================================================================
# heads
# =============================================================================================
@correct("split_heads")
def split_chunks(x, n_heads):
    return torch.stack(x.chunk(n_heads, dim=-1), dim=1)


@correct("split_heads")
def split_permute(x, n_heads):
    B, T, D = x.shape
    return x.reshape(B, T, n_heads, D // n_heads).permute(0, 2, 1, 3)


wrong("split_heads", r"wrong order")(lambda x, h: rearrange(x, "b t (d h) -> b h t d", h=h))
wrong("split_heads", r"mixes positions and heads")(lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1))
wrong("split_heads", r"\(B, T, H, D\)|in front of T")(lambda x, h: x.view(x.shape[0], x.shape[1], h, -1))
wrong("split_heads", r"number of heads")(lambda x, h: rearrange(x, "b t (h d) -> b h t d", d=h))
wrong("split_heads", r"wrong order")(lambda x, h: x.view(x.shape[0], x.shape[1], -1, h).permute(0, 3, 1, 2))


@correct("merge_heads")
def merge_cat(x):
    return torch.cat(x.unbind(1), dim=-1)


@correct("merge_heads")
def merge_permute(x):
    B, H, T, D = x.shape
    return x.permute(0, 2, 1, 3).contiguous().view(B, T, H * D)


wrong("merge_heads", r"wrong order")(lambda x: rearrange(x, "b h t d -> b t (d h)"))
wrong("merge_heads", r"mixes positions and heads")(lambda x: x.reshape(x.shape[0], x.shape[2], -1))
wrong("merge_heads", r"concatenated|H\*D")(lambda x: x.transpose(1, 2))


# =============================================================================================
# cross-attention
# =============================================================================================
def _cross(x, ctx, w_q, w_k, w_v, w_o, n_heads, context_mask=None, *, kv=None, q=None, mask=True, causal=False, scale="head",
           order="h d", wo=True, lin=False):
    proj = (lambda a, w: F.linear(a, w)) if lin else (lambda a, w: a @ w)
    q_in = x if q is None else q(x, ctx)
    kv_in = ctx if kv is None else kv(x, ctx)
    sp = lambda t: rearrange(t, f"b t ({order}) -> b h t d", h=n_heads)  # noqa: E731
    Q, K, V = sp(proj(q_in, w_q)), sp(proj(kv_in, w_k)), sp(proj(kv_in, w_v))
    s = Q @ K.transpose(-2, -1) / {"head": math.sqrt(Q.shape[-1]), "model": math.sqrt(x.shape[-1]), "none": 1.0}[scale]
    m = context_mask if mask else None
    if causal:
        c = torch.ones(s.shape[-2], s.shape[-1], dtype=torch.bool).tril()
        m = c if m is None else m & c
    if m is not None:
        s = s.masked_fill(~m, NINF)
    out = rearrange(torch.nan_to_num(s.softmax(-1)) @ V, f"b h t d -> b t ({order})")
    return proj(out, w_o) if wo else out


CROSS = "cross_attention"


@correct(CROSS)
def cross_with_library_sdpa(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    def heads(t):
        return t.view(t.shape[0], t.shape[1], n_heads, -1).transpose(1, 2)
    out = cl.scaled_dot_product_attention(heads(x @ w_q), heads(context @ w_k), heads(context @ w_v), context_mask)
    return out.transpose(1, 2).reshape(x.shape) @ w_o


@correct(CROSS)
def cross_loop_over_heads(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    d = x.shape[-1]
    dh = d // n_heads
    Q, K, V = x @ w_q, context @ w_k, context @ w_v
    outs = []
    for h in range(n_heads):
        sl = slice(h * dh, (h + 1) * dh)
        s = Q[..., sl] @ K[..., sl].transpose(1, 2) / math.sqrt(dh)
        if context_mask is not None:
            s = s.masked_fill(~context_mask[:, 0], NINF)
        outs.append(torch.nan_to_num(s.softmax(-1)) @ V[..., sl])
    return torch.cat(outs, -1) @ w_o


@correct(CROSS)
def cross_flinear_transposed(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    return _cross(x, context, w_q.T, w_k.T, w_v.T, w_o.T, n_heads, context_mask, lin=True)


wrong(CROSS, r"K and V are computed from the decoder")(lambda *a: _cross(*a, kv=lambda x, c: x))
wrong(CROSS, r"swapped")(lambda *a: _cross(*a, kv=lambda x, c: x, q=lambda x, c: c))
wrong(CROSS, r"padding is not masked|context_mask")(lambda *a: _cross(*a, mask=False))
wrong(CROSS, r"not be causal")(lambda *a: _cross(*a, causal=True))
wrong(CROSS, r"√d_head")(lambda *a: _cross(*a, scale="none"))
wrong(CROSS, r"√d_model")(lambda *a: _cross(*a, scale="model"))
wrong(CROSS, r"wrong order")(lambda *a: _cross(*a, order="d h"))
wrong(CROSS, r"W_O|output projection")(lambda *a: _cross(*a, wo=False))
wrong(CROSS, r"transposed")(lambda *a: _cross(*a, lin=True))
wrong(CROSS, r"two mistakes")(lambda *a: _cross(*a, mask=False, scale="none"))


@wrong(CROSS, r"input `x` in place")
def cross_adds_into_x(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    out = _cross(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask)
    x += 0.0 * out + 1e-3  # a residual written into the caller's tensor
    return out


# =============================================================================================
# MLM
# =============================================================================================
def _corrupt(tokens, vocab_size, mask_id, p=0.15, *, skip=True, split=(0.8, 0.1), labels="chosen", lo=None, hi=None, fixed_p=None,
             inplace=False, ignore=IGNORE, same_random=False, swap=False, mask_const=None, as_float=False, shifted=False,
             special_ids=SPECIAL_IDS, generator=None):
    p = p if fixed_p is None else fixed_p
    lo = len(special_ids) if lo is None else lo
    rand = lambda *shape: torch.rand(*shape, generator=generator).to(tokens.device)  # noqa: E731
    special = torch.isin(tokens, torch.tensor(special_ids, device=tokens.device)) if skip else torch.zeros_like(tokens, dtype=torch.bool)
    chosen = (rand(tokens.shape) < p) & ~special
    r = rand(tokens.shape)
    to_mask = chosen & (r < split[0])
    to_rand = chosen & (r >= split[0]) & (r < split[0] + split[1])
    original = tokens.clone()
    inputs = tokens if inplace else tokens.clone()
    inputs[to_mask] = mask_id if mask_const is None else mask_const
    hi = vocab_size if hi is None else hi(vocab_size)
    if same_random:
        rnd = torch.full_like(tokens, int(torch.randint(lo, hi, (1,), generator=generator)))
    elif shifted:
        rnd = (original + 1 - lo) % (vocab_size - lo) + lo
    else:
        rnd = torch.randint(lo, hi, tokens.shape, generator=generator).to(tokens.device)
    inputs[to_rand] = rnd[to_rand]
    lab = {"chosen": torch.where(chosen, original, torch.full_like(tokens, ignore)), "all": original.clone(),
           "masked": torch.where(to_mask, original, torch.full_like(tokens, ignore)),
           "inputs": torch.where(chosen, inputs, torch.full_like(tokens, ignore))}[labels]
    if as_float:
        inputs = inputs.float()
    return (lab, inputs) if swap else (inputs, lab)


MLMC = "mlm_corrupt"


@correct(MLMC)
def corrupt_bernoulli(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None):
    special = torch.zeros_like(tokens, dtype=torch.bool)
    for s in special_ids:
        special |= tokens == s
    chosen = torch.bernoulli(torch.full(tokens.shape, p), generator=generator).bool().to(tokens.device) & ~special
    kind = torch.multinomial(torch.tensor([0.8, 0.1, 0.1]), tokens.numel(), replacement=True,
                             generator=generator).view(tokens.shape).to(tokens.device)
    inputs = torch.where(chosen & (kind == 0), torch.full_like(tokens, mask_id), tokens)
    rnd = torch.randint(len(special_ids), vocab_size, tokens.shape, generator=generator).to(tokens.device)
    inputs = torch.where(chosen & (kind == 1), rnd, inputs)
    labels = tokens.masked_fill(~chosen, IGNORE)
    return inputs, labels


@wrong(MLMC, r"generator|numpy|device|special_ids")  # was correct before issue 26: numpy ignores the generator and the device
def corrupt_numpy(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None):
    rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,))))
    t = tokens.numpy()
    chosen = (rng.random(t.shape) < p) & (t >= 6)
    u = rng.random(t.shape)
    inputs = t.copy()
    inputs[chosen & (u < 0.8)] = mask_id
    rand = chosen & (u >= 0.8) & (u < 0.9)
    inputs[rand] = rng.integers(6, vocab_size, size=int(rand.sum()))
    labels = np.where(chosen, t, IGNORE)
    return torch.from_numpy(inputs), torch.from_numpy(labels)


@correct(MLMC)
def corrupt_clone_then_inplace(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None):
    return _corrupt(tokens.clone(), vocab_size, mask_id, p, inplace=True, special_ids=special_ids, generator=generator)


wrong(MLMC, r"special")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, skip=False, special_ids=special_ids, generator=generator))
wrong(MLMC, r"80%")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, split=(0.9, 0.05), special_ids=special_ids, generator=generator))
wrong(MLMC, r"every (non-special )?position got a label|IGNORE")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, labels="all", special_ids=special_ids, generator=generator))
wrong(MLMC, r"only the \[MASK\]ed")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, labels="masked", special_ids=special_ids, generator=generator))
wrong(MLMC, r"corrupted inputs|original token")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, labels="inputs", special_ids=special_ids, generator=generator))
wrong(MLMC, r"input `tokens` in place")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, inplace=True, special_ids=special_ids, generator=generator))
wrong(MLMC, r"ordinary tokens|special ids")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, lo=0, special_ids=special_ids, generator=generator))
wrong(MLMC, r"never reach the last id")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, hi=lambda v: v - 1, special_ids=special_ids, generator=generator))
wrong(MLMC, r"same token")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, same_random=True, special_ids=special_ids, generator=generator))
wrong(MLMC, r"p=|probability p|p argument is ignored")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, fixed_p=0.15, special_ids=special_ids, generator=generator))
wrong(MLMC, r"mask_id argument is ignored")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, mask_const=4, special_ids=special_ids, generator=generator))
wrong(MLMC, r"outside the vocabulary|ordinary tokens")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, hi=lambda v: 50, special_ids=special_ids, generator=generator))
wrong(MLMC, r"-100|IGNORE")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, ignore=0, special_ids=special_ids, generator=generator))
wrong(MLMC, r"integers|dtype")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, as_float=True, special_ids=special_ids, generator=generator))
wrong(MLMC, r"\(inputs, labels\)|order")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, swap=True, special_ids=special_ids, generator=generator))
wrong(MLMC, r"fixed function|random")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corrupt(tokens, vocab_size, mask_id, p, shifted=True, special_ids=special_ids, generator=generator))


def _mlm_ok(logits, labels):
    keep = labels != IGNORE
    if not keep.any():
        return logits.sum() * 0.0
    return -F.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)[keep].mean()


@correct("mlm_loss")
def mlm_loss_sum_div(logits, labels):
    n = (labels != IGNORE).sum()
    tot = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
    return tot / n.clamp(min=1)


@correct("mlm_loss")
def mlm_loss_where(logits, labels):
    logp = logits.log_softmax(-1)
    nll = -torch.gather(logp, 2, torch.where(labels == IGNORE, 0, labels).unsqueeze(-1)).squeeze(-1)
    w = (labels != IGNORE).float()
    return (nll * w).sum() / torch.clamp(w.sum(), min=1.0)


@correct("mlm_loss")
def mlm_loss_loop(logits, labels):
    terms = []
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            if labels[b, t] != IGNORE:
                terms.append(-logits[b, t].log_softmax(-1)[labels[b, t]])
    return torch.stack(terms).mean() if terms else logits.sum() * 0


correct("mlm_loss")(_mlm_ok)


def _nll_all(logits, labels):
    return -F.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)


wrong("mlm_loss", r"not NaN|NaN")(lambda lg, lb: F.cross_entropy(lg.flatten(0, 1), lb.flatten(), ignore_index=IGNORE))
wrong("mlm_loss", r"not masked|IGNORE")(lambda lg, lb: _nll_all(lg, lb).mean())
wrong("mlm_loss", r"all positions|B·T")(lambda lg, lb: (_nll_all(lg, lb) * (lb != IGNORE)).mean())
wrong("mlm_loss", r"sum")(lambda lg, lb: (_nll_all(lg, lb) * (lb != IGNORE)).sum())
wrong("mlm_loss", r"log-probabilities|log_softmax")(lambda lg, lb: F.nll_loss(lg.flatten(0, 1), lb.flatten()) if (lb != IGNORE).any() else lg.sum() * 0)
wrong("mlm_loss", r"underflow|numerically")(lambda lg, lb: F.nll_loss(lg.softmax(-1).log().flatten(0, 1), lb.flatten()) if (lb != IGNORE).any() else lg.sum() * 0)
wrong("mlm_loss", r"per sequence")(lambda lg, lb: torch.stack([_mlm_ok(lg[i:i + 1], lb[i:i + 1]) for i in range(lb.shape[0]) if (lb[i] != IGNORE).any()] or [lg.sum() * 0]).mean())
wrong("mlm_loss", r"Python number")(lambda lg, lb: _mlm_ok(lg, lb).item())
wrong("mlm_loss", r"not connected|backward")(lambda lg, lb: _mlm_ok(lg, lb) if (lb != IGNORE).any() else torch.tensor(0.0))
wrong("mlm_loss", r"single number")(lambda lg, lb: _nll_all(lg, lb) * (lb != IGNORE))
wrong("mlm_loss", r"two mistakes")(lambda lg, lb: (-lg.gather(-1, lb.clamp(min=0)[..., None]).squeeze(-1) * (lb != IGNORE)).sum())


@wrong("mlm_loss", r"input `labels` in place")
def mlm_loss_writes_labels(logits, labels):
    keep = labels != IGNORE
    labels[~keep] = 0
    if not keep.any():
        return logits.sum() * 0.0
    return _nll_all(logits, labels)[keep].mean()


@wrong("mlm_loss", r"detach|not connected|gradient")
def mlm_loss_detached(logits, labels):
    return _mlm_ok(logits.detach(), labels)


# =============================================================================================
# CLM loss
# =============================================================================================
def _clm(lg, tok, pad_id=0, *, shift=True, wrong_way=False, pad="ignore", reduce="mean", guard=True):
    if wrong_way:
        lg, tg = lg[:, 1:], tok[:, :-1]
    elif shift:
        lg, tg = lg[:, :-1], tok[:, 1:]
    else:
        tg = tok
    return _token_nll(lg, tg, pad, pad_id, guard, reduce)


@correct("clm_loss")
def clm_ce_ignore_index(logits, tokens, pad_id=0):
    targets = tokens[:, 1:]
    if (targets == pad_id).all():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=pad_id)


@correct("clm_loss")
def clm_masked_fill(logits, tokens, pad_id=0):
    targets = tokens[:, 1:].masked_fill(tokens[:, 1:] == pad_id, IGNORE)
    n = (targets != IGNORE).sum()
    loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=IGNORE, reduction="sum")
    return loss / max(int(n), 1)


@correct("clm_loss")
def clm_loop(logits, tokens, pad_id=0):
    total, n = logits.sum() * 0.0, 0
    for b in range(tokens.shape[0]):
        for t in range(tokens.shape[1] - 1):
            y = int(tokens[b, t + 1])
            if y != pad_id:
                total = total - torch.log_softmax(logits[b, t], -1)[y]
                n += 1
    return total / max(n, 1)


correct("clm_loss")(lambda logits, tokens, pad_id=0: _clm(logits, tokens, pad_id))

wrong("clm_loss", r"not shifted")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, shift=False))
wrong("clm_loss", r"wrong way")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, wrong_way=True))
wrong("clm_loss", r"padding is scored")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, pad="scored"))
wrong("clm_loss", r"pad_id argument is ignored")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, pad="zero"))
wrong("clm_loss", r"sum")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, reduce="sum"))
wrong("clm_loss", r"per sequence")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, reduce="rows"))
wrong("clm_loss", r"all positions")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, reduce="all"))
wrong("clm_loss", r"not NaN|NaN")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, guard=False))
wrong("clm_loss", r"two mistakes.*(not shifted|shift).*padding|padding.*shift")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, shift=False, pad="scored"))
wrong("clm_loss", r"Python number")(lambda lg, tok, pad_id=0: float(_clm(lg, tok, pad_id)))
wrong("clm_loss", r"underflow|numerically")(lambda lg, tok, pad_id=0: F.nll_loss(lg[:, :-1].softmax(-1).log().flatten(0, 1), tok[:, 1:].flatten(), ignore_index=pad_id) if (tok[:, 1:] != pad_id).any() else lg.sum() * 0)


@wrong("clm_loss", r"input `tokens` in place")
def clm_writes_ignore_into_tokens(logits, tokens, pad_id=0):
    tokens[tokens == pad_id] = IGNORE
    if (tokens[:, 1:] == IGNORE).all():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=IGNORE)


@wrong("clm_loss", r"not connected|backward")
def clm_new_zero_tensor(logits, tokens, pad_id=0):
    t = tokens[:, 1:]
    if not (t != pad_id).any():
        return torch.zeros(())
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), t.flatten(), ignore_index=pad_id)


# =============================================================================================
# sampling
# =============================================================================================
NTP = "next_token_probs"


@correct(NTP)
def probs_learner(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature == 0:
        out = torch.zeros_like(logits)
        return out.scatter(-1, logits.argmax(-1, keepdim=True), 1.0)
    lg = logits / temperature
    if top_k is not None:
        vals, _ = torch.topk(lg, top_k)
        lg = torch.where(lg < vals[..., -1:], torch.tensor(NINF), lg)
    if top_p is not None:
        srt, idx = torch.sort(lg, descending=True)
        pr = srt.softmax(-1)
        before = pr.cumsum(-1) - pr
        srt[before >= top_p] = NINF
        lg = torch.empty_like(lg).scatter_(-1, idx, srt)
    return lg.softmax(-1)


@correct(NTP)
def probs_loop(logits, temperature=1.0, top_k=None, top_p=None):
    out = []
    for row in logits:
        if temperature == 0:
            p = torch.zeros_like(row)
            p[row.argmax()] = 1
            out.append(p)
            continue
        p = (row / temperature).softmax(-1)
        order = p.argsort(descending=True).tolist()
        keep = order[:top_k] if top_k is not None else order
        if top_p is not None:
            pk = (row / temperature)[keep].softmax(-1)
            acc, kept = 0.0, []
            for i, j in enumerate(keep):
                if acc >= top_p:
                    break
                kept.append(j)
                acc += float(pk[i])
            keep = kept
        q = torch.zeros_like(row)
        q[keep] = p[keep]
        out.append(q / q.sum())
    return torch.stack(out)


wrong(NTP, r"multiplied")(lambda lg, temperature=1.0, top_k=None, top_p=None: C.clm._probs_formula(lg, temperature, top_k, top_p, temp="multiply"))
wrong(NTP, r"temperature is ignored")(lambda lg, temperature=1.0, top_k=None, top_p=None: C.clm._probs_formula(lg, temperature, top_k, top_p, temp="none"))
wrong(NTP, r"one token too many")(lambda lg, temperature=1.0, top_k=None, top_p=None: C.clm._probs_formula(lg, temperature, top_k, top_p, k_off=1))
wrong(NTP, r"crosses p|at least")(lambda lg, temperature=1.0, top_k=None, top_p=None: C.clm._probs_formula(lg, temperature, top_k, top_p, nucleus="exclude"))
wrong(NTP, r"renormalised")(lambda lg, temperature=1.0, top_k=None, top_p=None: C.clm._probs_formula(lg, temperature, top_k, top_p, renorm=False))
wrong(NTP, r"after the top-p")(lambda lg, temperature=1.0, top_k=None, top_p=None: C.clm._probs_formula(lg, temperature, top_k, top_p, order="temp_last"))


@wrong(NTP, r"greedy|argmax")
def probs_t0_ignored(logits, temperature=1.0, top_k=None, top_p=None):
    return C.clm._probs_formula(logits, temperature or 1.0, top_k, top_p)


@wrong(NTP, r"input `logits` in place")
def probs_divides_in_place(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature:
        logits /= temperature
        return C.clm._probs_formula(logits, 1.0, top_k, top_p)
    return C.clm._probs_formula(logits, 0.0)


@wrong(NTP, r"one token too few")
def probs_topk_strict(logits, temperature=1.0, top_k=None, top_p=None):
    return C.clm._probs_formula(logits, temperature, top_k, top_p, k_off=-1)


# =============================================================================================
# seq2seq
# =============================================================================================
@correct("shift_right")
def shift_pad(targets, bos_id):
    return F.pad(targets[:, :-1], (1, 0), value=bos_id)


@correct("shift_right")
def shift_assign(targets, bos_id):
    out = torch.empty_like(targets)
    out[:, 0] = bos_id
    out[:, 1:] = targets[:, :-1]
    return out


@correct("shift_right")
def shift_roll(targets, bos_id):
    out = targets.roll(1, dims=1)
    out[:, 0] = bos_id
    return out


wrong("shift_right", r"target itself")(lambda y, bos_id: y.clone())
wrong("shift_right", r"not padding")(lambda y, bos_id: F.pad(y[:, :-1], (1, 0), value=0))
wrong("shift_right", r"BOS is missing")(lambda y, bos_id: y[:, :-1])
wrong("shift_right", r"drop the last")(lambda y, bos_id: F.pad(y, (1, 0), value=bos_id))
wrong("shift_right", r"shifted left")(lambda y, bos_id: F.pad(y[:, 1:], (0, 1), value=0))
wrong("shift_right", r"bos_id argument is ignored")(lambda y, bos_id: F.pad(y[:, :-1], (1, 0), value=1))
wrong("shift_right", r"integers|dtype")(lambda y, bos_id: torch.cat([torch.full((y.shape[0], 1), float(bos_id)), y[:, :-1]], 1))
wrong("shift_right", r"EOS was replaced")(lambda y, bos_id: F.pad(y[:, :-1].masked_fill(y[:, :-1] == 2, 0), (1, 0), value=bos_id))
wrong("shift_right", r"overwritten|every token moves")(lambda y, bos_id: torch.cat([torch.full_like(y[:, :1], bos_id), y[:, 1:]], 1))


@wrong("shift_right", r"input `targets` in place")
def shift_in_place(targets, bos_id):
    targets[:, 1:] = targets[:, :-1].clone()
    targets[:, 0] = bos_id
    return targets


def _s2s(lg, y, pad_id=0, *, shift=False, vs_input=False, pad="ignore", reduce="mean", guard=True):
    if shift:
        lg, y = lg[:, :-1], y[:, 1:]
    if vs_input:
        y = cl.shift_right(y, BOS_ID)
    return _token_nll(lg, y, pad, pad_id, guard, reduce)


S2S = "seq2seq_loss"


@correct(S2S)
def s2s_guarded_ce(logits, targets, pad_id=0):
    if torch.all(targets == pad_id):
        return (logits * 0).sum()
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id)


@correct(S2S)
def s2s_mask_mean(logits, targets, pad_id=0):
    m = (targets != pad_id).to(logits.dtype)
    nll = F.cross_entropy(logits.permute(0, 2, 1), targets, reduction="none")
    return (nll * m).sum() / m.sum().clamp_min(1.0)


correct(S2S)(lambda logits, targets, pad_id=0: _s2s(logits, targets, pad_id))

wrong(S2S, r"do not shift again")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, shift=True))
wrong(S2S, r"decoder input")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, vs_input=True))
wrong(S2S, r"padding is scored")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, pad="scored"))
wrong(S2S, r"pad_id argument is ignored")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, pad="zero"))
wrong(S2S, r"sum")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, reduce="sum"))
wrong(S2S, r"per sequence")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, reduce="rows"))
wrong(S2S, r"all positions")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, reduce="all"))
wrong(S2S, r"not NaN|NaN")(lambda lg, y, pad_id=0: F.cross_entropy(lg.flatten(0, 1), y.flatten(), ignore_index=pad_id))
wrong(S2S, r"two mistakes")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, shift=True, pad="scored"))
wrong(S2S, r"Python number")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id).item())
wrong(S2S, r"log-probabilities|log_softmax")(lambda lg, y, pad_id=0: F.nll_loss(lg.flatten(0, 1), y.flatten(), ignore_index=pad_id) if (y != pad_id).any() else lg.sum() * 0)


@wrong(S2S, r"input `targets` in place")
def s2s_writes_targets(logits, targets, pad_id=0):
    targets[targets == pad_id] = IGNORE
    if (targets == IGNORE).all():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


# =============================================================================================
# greedy decoding with a KV cache
# =============================================================================================
def _greedy(model, prompt, n, eos_id=2, pad_id=0, *, refeed=False, stop=True, pad=True, first_eos=False, use_cache=True,
            with_prompt=False, prompt_no_cache=False, new_cache_each_step=False, eos_to_pad=False, as_float=False,
            hard_ids=False, fwd=False, one_less=False):
    if hard_ids:
        eos_id, pad_id = 2, 0
    call = model.forward if fwd else model
    cache = model.new_cache() if use_cache else None
    seq = prompt
    logits = call(prompt, cache=None if prompt_no_cache else cache)[:, -1]
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    out = []
    steps = n - 1 if one_less else n
    for i in range(steps):
        tok = logits.argmax(-1)
        if pad:
            tok = tok.masked_fill(done, pad_id)
        newly = (tok == eos_id) & ~done
        done |= tok == eos_id
        out.append(tok.masked_fill(newly, pad_id) if eos_to_pad else tok)
        seq = torch.cat([seq, tok[:, None]], 1)
        if first_eos and bool((tok == eos_id).any()):
            break
        if stop and bool(done.all()):
            break
        if i + 1 == steps:
            break
        if new_cache_each_step:
            cache = model.new_cache()
        new = seq if (refeed or not use_cache) else tok[:, None]
        logits = call(new, cache=cache)[:, -1]
    res = torch.stack(out, 1)
    res = torch.cat([prompt, res], 1) if with_prompt else res
    return res.float() if as_float else res


GREEDY = "greedy_decode_with_cache"


@correct(GREEDY)
def greedy_forward_with_cache(model, prompt, max_new_tokens, eos_id=2, pad_id=0):
    return _greedy(model, prompt, max_new_tokens, eos_id, pad_id, fwd=True)


@wrong(GREEDY, r"device")  # was correct before issue 26: a tensor it makes stays on the CPU whatever the inputs' device
def greedy_while(model, prompt, max_new_tokens, eos_id=2, pad_id=0):
    cache = model.new_cache()
    logits = model(prompt, cache=cache)
    finished = torch.zeros(len(prompt), dtype=torch.bool)
    tokens = []
    while len(tokens) < max_new_tokens and not finished.all():
        nxt = torch.where(finished, torch.full_like(finished, pad_id, dtype=torch.long), logits[:, -1].argmax(-1))
        tokens.append(nxt)
        finished = finished | (nxt == eos_id)
        if len(tokens) < max_new_tokens and not finished.all():
            logits = model(nxt.unsqueeze(1), cache=cache)
    return torch.stack(tokens, dim=1)


correct(GREEDY)(lambda model, prompt, n, eos_id=2, pad_id=0: _greedy(model, prompt, n, eos_id, pad_id))

wrong(GREEDY, r"re-feeding|newest token")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, refeed=True))
wrong(GREEDY, r"never passes a KV cache")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, use_cache=False))
wrong(GREEDY, r"never passes a KV cache|positions")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, use_cache=False, fwd=True))
wrong(GREEDY, r"prompt was run without the cache")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, prompt_no_cache=True))
wrong(GREEDY, r"new, empty cache")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, new_cache_each_step=True))
wrong(GREEDY, r"stop decoding")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, stop=False))
wrong(GREEDY, r"padded with pad_id")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, pad=False, stop=False))
wrong(GREEDY, r"first row emitted EOS")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, first_eos=True))
wrong(GREEDY, r"EOS token itself was replaced")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, eos_to_pad=True))
wrong(GREEDY, r"without the prompt")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, with_prompt=True))
wrong(GREEDY, r"integers")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, as_float=True))
wrong(GREEDY, r"eos_id / pad_id arguments are ignored")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, hard_ids=True))
wrong(GREEDY, r"one token too few")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, one_less=True))
wrong(GREEDY, r"re-feeding|newest token")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, refeed=True, fwd=True))


# =============================================================================================
# lesson 05: batches, beam step, BLEU
# =============================================================================================
@correct("collate_encdec")
def encdec_lists(batch):
    src = pad_batch([list(s) for s, _ in batch])
    tgt_out = pad_batch([list(t) + [EOS_ID] for _, t in batch])
    tgt_in = pad_batch([[BOS_ID] + list(t) for _, t in batch])
    return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}


@correct("collate_encdec")
def encdec_shift(batch):
    tgt_out = pad_batch([t + [EOS_ID] for _, t in batch])
    return {"src": pad_batch([s for s, _ in batch]), "tgt_in": cl.shift_right(tgt_out, BOS_ID), "tgt_out": tgt_out}


def _encdec(batch, *, shift=True, eos=True, bos=True, src_eos=False):
    tgt_out = pad_batch([t + ([EOS_ID] if eos else []) for _, t in batch])
    tgt_in = pad_batch([([BOS_ID] if bos else []) + t for _, t in batch]) if shift else tgt_out.clone()
    src = pad_batch([s + ([EOS_ID] if src_eos else []) for s, _ in batch])
    return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}


wrong("collate_encdec", r"not shifted")(lambda b: _encdec(b, shift=False))
wrong("collate_encdec", r"EOS is missing")(lambda b: _encdec(b, eos=False))
wrong("collate_encdec", r"BOS is missing")(lambda b: _encdec(b, bos=False))
wrong("collate_encdec", r"src has an EOS")(lambda b: _encdec(b, src_eos=True))
wrong("collate_encdec", r"integers|dtype")(lambda b: {k: v.float() for k, v in _encdec(b).items()})


@wrong("collate_encdec", r"input `batch` in place")
def encdec_appends_eos(batch):
    for _, t in batch:
        t.append(EOS_ID)  # changes the caller's lists
    tgt_out = pad_batch([t for _, t in batch])
    return {"src": pad_batch([s for s, _ in batch]), "tgt_in": cl.shift_right(tgt_out, BOS_ID), "tgt_out": tgt_out}


@correct("collate_decoder")
def decoder_loops(batch):
    seqs, masks, pref = [], [], []
    for s, t in batch:
        seqs.append(list(s) + [SEP_ID] + list(t) + [EOS_ID])
        masks.append([False] * (len(s) + 1) + [True] * (len(t) + 1))
        pref.append(len(s) + 1)
    L = max(map(len, seqs))
    return {"tokens": pad_batch(seqs), "loss_mask": torch.tensor([m + [False] * (L - len(m)) for m in masks]),
            "prefix_len": torch.tensor(pref)}


def _dec(batch, *, mask="ok", sep=True, plen=1):
    seqs = [s + ([SEP_ID] if sep else []) + t + [EOS_ID] for s, t in batch]
    tokens = pad_batch(seqs)
    lm = torch.zeros_like(tokens, dtype=torch.bool)
    for i, (s, t) in enumerate(batch):
        a = len(s) + (1 if sep else 0)
        lo, hi = {"ok": (a, a + len(t) + 1), "all": (0, a + len(t) + 1), "sep": (a - 1, a + len(t) + 1), "noeos": (a, a + len(t))}[mask]
        lm[i, lo:hi] = True
    return {"tokens": tokens, "loss_mask": lm, "prefix_len": torch.tensor([len(s) + plen for s, _ in batch])}


wrong("collate_decoder", r"covers the source")(lambda b: _dec(b, mask="all"))
wrong("collate_decoder", r"includes <sep>")(lambda b: _dec(b, mask="sep"))
wrong("collate_decoder", r"EOS is not in the loss mask")(lambda b: _dec(b, mask="noeos"))
wrong("collate_decoder", r"<sep>.*missing")(lambda b: _dec(b, sep=False))
wrong("collate_decoder", r"prefix_len is one short")(lambda b: _dec(b, plen=0))
wrong("collate_decoder", r"bool")(lambda b: {**_dec(b), "loss_mask": _dec(b)["loss_mask"].long()})


@wrong("collate_decoder", r"input `batch` in place")
def decoder_extends_source(batch):
    for s, t in batch:
        s.append(SEP_ID)
    return _dec([(s[:-1], t) for s, t in batch])


@correct("beam_step")
def beam_divmod(scores, logp):
    B, K = scores.shape
    V = logp.shape[1]
    cand = scores.view(B * K, 1) + logp
    best, idx = cand.view(B, -1).topk(K)
    return best, torch.div(idx, V, rounding_mode="floor"), torch.remainder(idx, V)


@correct("beam_step")
def beam_sort(scores, logp):
    B, K = scores.shape
    V = logp.shape[-1]
    cand = (scores.reshape(-1)[:, None] + logp).reshape(B, K * V)
    val, idx = cand.sort(dim=-1, descending=True, stable=True)
    return val[:, :K], idx[:, :K] // V, idx[:, :K] % V


def _beam(scores, logp, *, add=True, op="div", order=(0, 1, 2), as_float=False):
    B, K = scores.shape
    V = logp.shape[-1]
    total = scores.reshape(-1, 1) + logp if add else logp
    new, flat = total.reshape(B, K * V).topk(K, dim=-1)
    b = flat // V if op == "div" else flat % K
    if as_float:
        b = flat / V
        b = b.floor()
    out = (new, b, flat % V)
    return tuple(out[i] for i in order)


wrong("beam_step", r"not added")(lambda s, lp: _beam(s, lp, add=False))
wrong("beam_step", r"% instead of //")(lambda s, lp: _beam(s, lp, op="mod"))
wrong("beam_step", r"wrong order")(lambda s, lp: _beam(s, lp, order=(1, 2, 0)))
wrong("beam_step", r"wrong order")(lambda s, lp: _beam(s, lp, order=(0, 2, 1)))
wrong("beam_step", r"integers")(lambda s, lp: _beam(s, lp, as_float=True))
wrong("beam_step", r"whole batch")(lambda s, lp: C.translation._beam_variant(s, lp, per_example=False))
wrong("beam_step", r"multiplied")(lambda s, lp: C.translation._beam_variant(s, lp, add="mul"))


def _bleu(hyps, refs, max_n=4, *, bp=True, mean="geo", clip="sentence", zero="zero", scale=100.0):
    m, tot = [0] * max_n, [0] * max_n
    c = r = 0
    pooled_h, pooled_r = [Counter() for _ in range(max_n)], [Counter() for _ in range(max_n)]
    for h, ref in zip(hyps, refs):
        h, ref = h.split(), ref.split()
        c, r = c + len(h), r + len(ref)
        for n in range(1, max_n + 1):
            hc = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            rc = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
            pooled_h[n - 1].update(hc)
            pooled_r[n - 1].update(rc)
            m[n - 1] += sum(min(k, rc[g]) if clip == "sentence" else (k if g in rc else 0) for g, k in hc.items())
            tot[n - 1] += sum(hc.values())
    if clip == "corpus":
        m = [sum(min(k, pooled_r[i][g]) for g, k in pooled_h[i].items()) for i in range(max_n)]
    p = [a / b if b else 0.0 for a, b in zip(m, tot)]
    if mean == "geo":
        if min(p) == 0:
            if zero == "zero":
                return 0.0
            if zero == "skip":
                p = [x for x in p if x > 0] or [1e-9]
            if zero == "log":
                return scale * math.exp(sum(math.log(x) for x in p) / len(p))
        s = math.exp(sum(math.log(x) for x in p) / len(p))
    else:
        s = sum(p) / len(p)
    if bp and c <= r:
        s *= math.exp(1 - r / c)
    return scale * s


@correct("corpus_bleu")
def bleu_sacrebleu(hyps, refs, max_n=4):
    from sacrebleu.metrics import BLEU
    return BLEU(tokenize="none", smooth_method="none", max_ngram_order=max_n).corpus_score(hyps, [refs]).score


@correct("corpus_bleu")
def bleu_numpy(hyps, refs, max_n=4):
    m, t = np.zeros(max_n), np.zeros(max_n)
    c = sum(len(h.split()) for h in hyps)
    r = sum(len(x.split()) for x in refs)
    for h, ref in zip(hyps, refs):
        h, ref = h.split(), ref.split()
        for n in range(1, max_n + 1):
            hc = Counter(zip(*[h[i:] for i in range(n)]))
            rc = Counter(zip(*[ref[i:] for i in range(n)]))
            m[n - 1] += sum((hc & rc).values())
            t[n - 1] += sum(hc.values())
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(t > 0, m / np.maximum(t, 1), 0.0)
    if (p == 0).any():
        return 0.0
    bp = 1.0 if c > r else float(np.exp(1 - r / c))
    return float(100 * bp * np.exp(np.log(p).mean()))


correct("corpus_bleu")(lambda hyps, refs, max_n=4: _bleu(hyps, refs, max_n))

wrong("corpus_bleu", r"brevity penalty is missing")(lambda h, r, max_n=4: _bleu(h, r, max_n, bp=False))
wrong("corpus_bleu", r"geometric|arithmetic")(lambda h, r, max_n=4: _bleu(h, r, max_n, mean="arith"))
wrong("corpus_bleu", r"not clipped")(lambda h, r, max_n=4: _bleu(h, r, max_n, clip="none"))
wrong("corpus_bleu", r"clip per sentence|whole corpus")(lambda h, r, max_n=4: _bleu(h, r, max_n, clip="corpus"))
wrong("corpus_bleu", r"precision of 0|return 0.0")(lambda h, r, max_n=4: _bleu(h, r, max_n, zero="skip"))
wrong("corpus_bleu", r"precision of 0|return 0.0")(lambda h, r, max_n=4: _bleu(h, r, max_n, zero="log"))
wrong("corpus_bleu", r"0-100|multiply by 100")(lambda h, r, max_n=4: _bleu(h, r, max_n, scale=1.0))
wrong("corpus_bleu", r"max_n argument is ignored")(lambda h, r, max_n=4: _bleu(h, r, 4))
wrong("corpus_bleu", r"sentence scores are averaged")(lambda h, r, max_n=4: sum(_bleu([a], [b], max_n) for a, b in zip(h, r)) / len(h))
wrong("corpus_bleu", r"smooth")(lambda h, r, max_n=4: C.translation._bleu_skip_zero(h, r, max_n, smooth="add1"))


@wrong("corpus_bleu", r"input `hyps` in place")
def bleu_tokenises_in_place(hyps, refs, max_n=4):
    for i, h in enumerate(hyps):
        hyps[i] = " ".join(h.split())  # harmless here, but...
        hyps[i] = hyps[i].lower() + ""
    hyps.append("")  # ...this changes the caller's list
    return _bleu(hyps[:-1], refs, max_n)


# =============================================================================================
# more styles (correct) and less obvious mistakes
# =============================================================================================
correct("causal_mask")(lambda t: torch.tril(torch.ones(t, t)).bool())
correct("causal_mask")(lambda t: torch.ones(t, t).tril() == 1)
correct("padding_mask")(lambda tokens, pad_id=0: (tokens - pad_id).bool()[:, None, None, :])
correct("padding_mask")(lambda tokens, pad_id=0: ~tokens.eq(pad_id)[:, None, None])
correct("prefix_mask")(lambda t, prefix_len: torch.ones(t, t, dtype=torch.bool).tril() | torch.arange(t).lt(prefix_len).expand(t, t))
correct("split_heads")(lambda x, n_heads: x.unflatten(-1, (n_heads, -1)).transpose(1, 2))
correct("merge_heads")(lambda x: x.transpose(1, 2).flatten(2))
correct("mlm_loss")(lambda logits, labels: F.cross_entropy(logits.transpose(1, 2), labels) if (labels != IGNORE).any() else 0.0 * logits.sum())
correct("shift_right")(lambda targets, bos_id: torch.cat((targets.new_full((targets.shape[0], 1), bos_id), targets[:, :-1]), dim=1))
correct("collate_encdec")(lambda batch: cl.data.collate_pairs(batch))
correct("corpus_bleu")(lambda hyps, refs, max_n=4: C.reference_corpus_bleu(list(hyps), list(refs), max_n))


@wrong(SDPA, r"device")  # was correct before issue 26: the additive mask is made on the CPU whatever the inputs' device
def sdpa_additive_mask(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    if mask is not None:
        s = s + torch.zeros(mask.shape).masked_fill(~mask, NINF)
    return torch.nan_to_num(F.softmax(s, dim=-1), nan=0.0) @ v


@correct(CROSS)
def cross_einsum(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    q = torch.einsum("btd,de->bte", x, w_q).unflatten(-1, (n_heads, -1))
    k = torch.einsum("bsd,de->bse", context, w_k).unflatten(-1, (n_heads, -1))
    v = torch.einsum("bsd,de->bse", context, w_v).unflatten(-1, (n_heads, -1))
    s = torch.einsum("bthe,bshe->bhts", q, k) / math.sqrt(q.shape[-1])
    if context_mask is not None:
        s = s.masked_fill(~context_mask, NINF)
    w = s.softmax(-1).nan_to_num()
    return torch.einsum("bhts,bshe->bthe", w, v).flatten(2) @ w_o


@correct("seq2seq_loss")
def s2s_loop(logits, targets, pad_id=0):
    terms = [-logits[b, t].log_softmax(-1)[targets[b, t]] for b in range(targets.shape[0]) for t in range(targets.shape[1])
             if targets[b, t] != pad_id]
    return torch.stack(terms).mean() if terms else logits.sum() * 0.0


@correct("clm_loss")
def clm_gather_where(logits, tokens, pad_id=0):
    y = tokens[:, 1:]
    lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, y.unsqueeze(2)).squeeze(2)
    keep = y.ne(pad_id)
    return torch.where(keep, -lp, torch.zeros_like(lp)).sum() / keep.sum().clamp(min=1)


@wrong(NTP, r"numpy|device")  # was correct before issue 26: numpy works on CPU tensors only
def probs_numpy_topk_then_torch(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    lg = (logits / temperature).numpy().copy()
    if top_k is not None:
        kth = np.sort(lg, axis=-1)[:, -top_k][:, None]
        lg[lg < kth] = -np.inf
    out = torch.from_numpy(lg)
    if top_p is not None:
        srt, idx = out.sort(-1, descending=True)
        pr = srt.softmax(-1)
        keep = (pr.cumsum(-1) - pr) < top_p
        out = torch.full_like(out, NINF).scatter(-1, idx, srt.masked_fill(~keep, NINF))
    return out.softmax(-1)


@wrong(GREEDY, r"device")  # was correct before issue 26: a tensor it makes stays on the CPU whatever the inputs' device
def greedy_cat_loop(model, prompt, max_new_tokens, eos_id=2, pad_id=0):
    cache = model.new_cache()
    nxt = model(prompt, cache=cache)[:, -1].argmax(-1)
    alive = torch.ones(prompt.shape[0], dtype=torch.bool)
    out = prompt.new_zeros((prompt.shape[0], 0))
    for step in range(max_new_tokens):
        nxt = torch.where(alive, nxt, torch.full_like(nxt, pad_id))
        out = torch.cat([out, nxt[:, None]], 1)
        alive &= nxt != eos_id
        if not alive.any() or step == max_new_tokens - 1:
            break
        nxt = model(nxt[:, None], cache=cache)[:, -1].argmax(-1)
    return out


@correct("beam_step")
def beam_flatten(scores, logp):
    K, V = scores.shape[1], logp.shape[1]
    total = (scores.flatten()[:, None] + logp).view(scores.shape[0], -1)
    val, idx = torch.topk(total, K, dim=1)
    return val, idx // V, idx - (idx // V) * V


@correct("collate_decoder")
def decoder_pad_sequence(batch):
    from torch.nn.utils.rnn import pad_sequence
    seqs = [torch.tensor(s + [SEP_ID] + t + [EOS_ID]) for s, t in batch]
    tokens = pad_sequence(seqs, batch_first=True, padding_value=PAD_ID)
    pos = torch.arange(tokens.shape[1])[None, :]
    start = torch.tensor([len(s) + 1 for s, _ in batch])[:, None]
    end = torch.tensor([len(s) + len(t) + 2 for s, t in batch])[:, None]
    return {"tokens": tokens, "loss_mask": (pos >= start) & (pos < end), "prefix_len": start.squeeze(1)}


wrong("causal_mask", r"transposed|upper")(lambda t: torch.tril(torch.ones(t, t, dtype=torch.bool), diagonal=0).T)
wrong(SDPA, r"axis")(lambda q, k, v, mask=None: _attn(q, k, v, mask, dim=1))
wrong("beam_step", r"K instead of V")(lambda s, lp: C.translation._beam_variant(s, lp, index="div_k"))
wrong("beam_step", r"swapped|wrong order")(lambda s, lp: C.translation._beam_variant(s, lp, index="mod_v"))
wrong("corpus_bleu", r"upside down")(lambda h, r, max_n=4: C.translation._bleu_variant(h, r, max_n, bp="inverted"))
wrong("split_heads", r"in front of T|\(B, T, H, D\)")(lambda x, n_heads: x.unflatten(-1, (n_heads, -1)))
wrong("merge_heads", r"mixes positions and heads")(lambda x: x.flatten(1, 2).reshape(x.shape[0], x.shape[2], -1))


# =============================================================================================
# the new exercises: sliding window, encoder block, free running, matching parameters
# =============================================================================================
@correct("sliding_window_mask")
def window_band(t, window):
    return torch.ones(t, t, dtype=torch.bool).tril() & ~torch.ones(t, t, dtype=torch.bool).tril(-window)


@correct("sliding_window_mask")
def window_loops(t, window):
    m = torch.zeros(t, t, dtype=torch.bool)
    for i in range(t):
        m[i, max(0, i - window + 1): i + 1] = True
    return m


wrong("sliding_window_mask", r"off by one")(lambda t, window: torch.ones(t, t, dtype=torch.bool).tril() & ~torch.ones(t, t, dtype=torch.bool).tril(-window - 1))
wrong("sliding_window_mask", r"future")(lambda t, window: (torch.arange(t)[:, None] - torch.arange(t)[None, :]).abs() < window)
wrong("sliding_window_mask", r"window is missing|plain causal")(lambda t, window: torch.ones(t, t, dtype=torch.bool).tril())
wrong("sliding_window_mask", r"bool")(lambda t, window: window_band(t, window).float())
wrong("sliding_window_mask", r"inverted")(lambda t, window: ~window_band(t, window))


@correct("encoder_block")
def block_explicit(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        h = x + attn(norm1(x), mask)
        return h + ffn(norm2(h))
    h = norm1(x + attn(x, mask))
    return norm2(h + ffn(h))


@correct("encoder_block")
def block_loop(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    for f, n in ((lambda h: attn(h, mask), norm1), (ffn, norm2)):
        x = x + f(n(x)) if pre_norm else n(x + f(x))
    return x


def _blk(**kw):
    return lambda x, mask, attn, ffn, norm1, norm2, pre_norm=True: C.mlm._block_formula(x, mask, attn, ffn, norm1, norm2, pre_norm, **kw)


wrong("encoder_block", r"wrong way round")(_blk(where="flipped"))
wrong("encoder_block", r"residual connection around attention")(_blk(residual="no_attn"))
wrong("encoder_block", r"no residual connections")(_blk(residual="none"))
wrong("encoder_block", r"swapped")(_blk(swap_norms=True))
wrong("encoder_block", r"mask is not passed")(_blk(pass_mask=False))
wrong("encoder_block", r"normalised x|residual stream")(_blk(res_from="normed"))
wrong("encoder_block", r"two mistakes")(_blk(swap_norms=True, pass_mask=False))


@wrong("encoder_block", r"stays on the CPU|device=x.device")
def block_cpu_mask(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if mask is None:  # "attend everywhere", built on the CPU whatever device x is on
        mask = torch.ones(x.shape[0], 1, 1, x.shape[1], dtype=torch.bool)
    return block_explicit(x, mask, attn, ffn, norm1, norm2, pre_norm)


@wrong("encoder_block", r"input `x` in place")
def block_inplace(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    x += attn(norm1(x), mask) if pre_norm else 0
    if not pre_norm:
        return block_explicit(x, mask, attn, ffn, norm1, norm2, False)
    x += ffn(norm2(x))
    return x


@wrong("free_running_logits", r"device")  # was correct before issue 26: a tensor it makes stays on the CPU whatever the inputs' device
def free_last_call(model, src, n_steps, bos_id=1):
    tgt = torch.full((src.shape[0], 1), bos_id)
    for _ in range(n_steps):
        logits = model(src, tgt)
        tgt = torch.cat([tgt, logits[:, -1].argmax(-1, keepdim=True)], 1)
    return logits


@wrong("free_running_logits", r"device")  # was correct before issue 26: a tensor it makes stays on the CPU whatever the inputs' device
def free_list(model, src, n_steps, bos_id=1):
    ids, out = [bos_id] * src.shape[0], []
    tgt = torch.tensor(ids)[:, None]
    for _ in range(n_steps):
        step = model(src, tgt)[:, -1, :]
        out.append(step)
        tgt = torch.cat((tgt, step.argmax(dim=-1).unsqueeze(-1)), dim=-1)
    return torch.stack(out, 1)


def _fr(**kw):
    return lambda model, src, n_steps, bos_id=1: C.seq2seq._free_formula(model, src, n_steps, bos_id, **kw)


wrong("free_running_logits", r"never fed back")(_fr(feed="bos"))
wrong("free_running_logits", r"start with BOS")(_fr(start="pad"))
wrong("free_running_logits", r"one step too many")(_fr(extra=1))
wrong("free_running_logits", r"token ids")(_fr(out="ids"))
wrong("free_running_logits", r"bos_id argument is ignored")(lambda model, src, n_steps, bos_id=1: C.seq2seq._free_formula(model, src, n_steps, 1))


@correct("matched_decoder_layers")
def match_explicit(n_enc, n_dec, d_model, d_ff):
    per_layer = 4 * d_model * d_model + 2 * d_model * d_ff
    cross_layer = per_layer + 4 * d_model * d_model
    return (n_enc * per_layer + n_dec * cross_layer) / per_layer


correct("matched_decoder_layers")(lambda n_enc, n_dec, d_model, d_ff: n_enc + n_dec * (1 + 4 * d_model / (4 * d_model + 2 * d_ff)))

wrong("matched_decoder_layers", r"cross-attention is not counted")(lambda a, b, d, f: float(a + b))
wrong("matched_decoder_layers", r"four d×d matrices")(lambda a, b, d, f: (a * (3 * d * d + 2 * d * f) + b * (6 * d * d + 2 * d * f)) / (3 * d * d + 2 * d * f))
wrong("matched_decoder_layers", r"two matrices")(lambda a, b, d, f: (a * (4 * d * d + d * f) + b * (8 * d * d + d * f)) / (4 * d * d + d * f))
wrong("matched_decoder_layers", r"rounded")(lambda a, b, d, f: round(match_explicit(a, b, d, f)))
wrong("matched_decoder_layers", r"upside down")(lambda a, b, d, f: 1 / match_explicit(a, b, d, f))


# =============================================================================================
# found by trying more "unanticipated" mistakes
# =============================================================================================
wrong(SDPA, r"number of keys")(lambda q, k, v, mask=None: _attn(q, k, v, mask, scale=math.sqrt(k.shape[-2])))
wrong(SDPA, r"transposed")(lambda q, k, v, mask=None: _attn(q, k, v, mask).transpose(-2, -1))
wrong("padding_mask", r"not `> pad_id`")(lambda tokens, pad_id=0: (tokens > pad_id)[:, None, None, :])
wrong("clm_loss", r"judged on the inputs")(lambda lg, tok, pad_id=0: C.clm._clm_formula(lg, tok, pad_id, pad="inputs"))
wrong("clm_loss", r"batch size")(lambda lg, tok, pad_id=0: (_clm(lg, tok, pad_id, reduce="sum") / tok.shape[0]))
wrong("seq2seq_loss", r"batch size")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, reduce="sum") / y.shape[0])
wrong("shift_right", r"torch.roll")(lambda y, bos_id: torch.roll(y, 1, 1))
wrong("beam_step", r"lowest")(lambda s, lp: C.translation._beam_lowest(s, lp))
wrong("beam_step", r"own best token")(lambda s, lp: C.translation._beam_per_beam(s, lp))
wrong("encoder_block", r"extra norm")(_blk(final=True))
wrong(NTP, r"vocabulary order|sort")(lambda lg, temperature=1.0, top_k=None, top_p=None: C.clm._probs_formula(lg, temperature, top_k, top_p, nucleus="unsorted"))


@wrong(GREEDY, r"last step is missing")
def greedy_drops_final_eos(model, prompt, n, eos_id=2, pad_id=0):
    cache = model.new_cache()
    lg = model(prompt, cache=cache)[:, -1]
    done = torch.zeros(len(prompt), dtype=torch.bool)
    out = []
    for _ in range(n):
        t = lg.argmax(-1).masked_fill(done, pad_id)
        done |= t == eos_id
        if done.all():
            break
        out.append(t)
        lg = model(t[:, None], cache=cache)[:, -1]
    return torch.stack(out, 1)


@wrong("mlm_loss", r"not NaN")
def mlm_keep_nonzero(logits, labels):
    keep = labels != 0
    return F.cross_entropy(logits[keep], labels[keep])


correct("corpus_bleu")(lambda h, r, max_n=4: 0.0 if min(C.bleu_statistics(h, r, max_n)["matches"]) == 0 else
                       100 * min(1.0, math.exp(1 - sum(len(x.split()) for x in r) / sum(len(x.split()) for x in h)))
                       * 10 ** (sum(math.log10(m / t) for m, t in zip(C.bleu_statistics(h, r, max_n)["matches"], C.bleu_statistics(h, r, max_n)["totals"])) / max_n))
wrong("collate_decoder", r"shifted one place left")(lambda b: C.translation._decoder_variant(b, mask="early"))
wrong("collate_encdec", r"padded with 1")(lambda b: {**cl.translate.collate_encdec(b), "src": pad_batch([s for s, _ in b], pad_id=1)})
wrong("corpus_bleu", r"swapped")(lambda h, r, max_n=4: C.reference_corpus_bleu(r, h, max_n))
wrong("corpus_bleu", r"per sentence")(lambda h, r, max_n=4: C.translation._bleu_bp_per_sentence(h, r, max_n))
wrong("corpus_bleu", r"divides by 4")(lambda h, r, max_n=4: C.translation._bleu_divide_by_4(h, r, max_n))
wrong("beam_step", r"across the whole batch")(lambda s, lp: (lambda n, b, t: (n, b + torch.arange(s.shape[0])[:, None] * s.shape[1], t))(*cl.generation.beam_step(s, lp)))
wrong("seq2seq_loss", r"label smoothing")(lambda lg, y, pad_id=0: F.cross_entropy(lg.flatten(0, 1), y.flatten(), ignore_index=pad_id, label_smoothing=0.1) if (y != pad_id).any() else lg.sum() * 0)
wrong("clm_loss", r"label smoothing")(lambda lg, tok, pad_id=0: F.cross_entropy(lg[:, :-1].flatten(0, 1), tok[:, 1:].flatten(), ignore_index=pad_id, label_smoothing=0.1) if (tok[:, 1:] != pad_id).any() else lg.sum() * 0)
wrong("encoder_block", r"norm is missing")(_blk(skip_norm=1))
wrong(NTP, r"before top-k")(lambda lg, temperature=1.0, top_k=None, top_p=None: C.clm._probs_formula(lg, temperature, top_k, top_p, p_first=True))
wrong("free_running_logits", r"sampled")(_fr(feed="sample"))
wrong("shift_right", r"at the \*start\*")(lambda y, bos_id: torch.cat([y[:, :-1], torch.full_like(y[:, :1], bos_id)], 1))
wrong("matched_decoder_layers", r"d_ff argument is ignored")(lambda a, b, d, f: match_explicit(a, b, d, 4 * d))
wrong(CROSS, r"heads are missing")(lambda x, c, wq, wk, wv, wo, h, m=None: _cross(x, c, wq, wk, wv, wo, 1, m))
