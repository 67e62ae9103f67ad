"""A sixth blind round of learner-style implementations, for EVERY check (lessons 01-07), written from
the exercise notebooks' text and stubs alone, before reading the checks' code, and measured before any
change to the checks. It aims at what issue 26 lists: results that break the next cell (dtype, device,
gradients), arguments that are ignored, cases too small to tell, classic mistakes.

``WRONG``: ``(check name, function, regex the hint must match to name the mistake)``;
``CORRECT``: ``(check name, function)``.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from course_lib.losses import IGNORE
from course_lib.tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_ID, pad_batch

from .common import DEVICE, DTYPE, GRAD, INPLACE, NINF, SPECIAL_IDS, ignored as _ignored, ngrams, registry

WRONG, CORRECT, wrong, correct = registry()

# =============================================================================================
# 01 scaled_dot_product_attention
# =============================================================================================
SDPA = "scaled_dot_product_attention"


def _sdpa(q, k, v, mask=None, *, scale=None, axis=-1, fill=NINF, invert=False, nan_to_num=True, ret="out"):
    d = q.shape[-1]
    s = q @ k.transpose(-2, -1)
    s = s / (math.sqrt(d) if scale is None else scale(q, k))
    if mask is not None:
        m = mask if not invert else ~mask
        s = s.masked_fill(~m, fill)
    w = torch.softmax(s, dim=axis)
    if nan_to_num:
        w = torch.nan_to_num(w)
    if ret == "weights":
        return w
    if ret == "both":
        return w @ v, w
    return w @ v


wrong(SDPA, r"√d_k|sqrt|scale")(lambda q, k, v, mask=None: _sdpa(q, k, v, mask, scale=lambda q, k: 1.0))
wrong(SDPA, r"√d_k|sqrt|scale|d_k")(lambda q, k, v, mask=None: _sdpa(q, k, v, mask, scale=lambda q, k: q.shape[-1]))
wrong(SDPA, r"√d_k|d_k|scale|T_k|number of keys")(lambda q, k, v, mask=None: _sdpa(q, k, v, mask, scale=lambda q, k: math.sqrt(k.shape[-2])))
wrong(SDPA, r"axis|keys|last|sum to 1|dim")(lambda q, k, v, mask=None: _sdpa(q, k, v, mask, axis=-2))
wrong(SDPA, r"-inf|−∞|-∞|infinity|zero")(lambda q, k, v, mask=None: _sdpa(q, k, v, mask, fill=0.0))
wrong(SDPA, r"True|invert|polarity|flip|~")(lambda q, k, v, mask=None: _sdpa(q, k, v, mask, invert=True))
wrong(SDPA, r"NaN|nan_to_num|all masked|every key|fully")(lambda q, k, v, mask=None: _sdpa(q, k, v, mask, nan_to_num=False))
wrong(SDPA, r"all masked|every key|fully|zeros|-inf|−∞|1e9|uniform")(lambda q, k, v, mask=None: _sdpa(q, k, v, mask, fill=-1e9))
wrong(SDPA, r"weights|shape|v\b|multiply")(lambda q, k, v, mask=None: _sdpa(q, k, v, mask, ret="weights"))
wrong(SDPA, r"tuple|one tensor|output only|weights")(lambda q, k, v, mask=None: _sdpa(q, k, v, mask, ret="both"))


@wrong(SDPA, r"renormal|sum to 1|before the softmax|-inf")
def sdpa_mask_after_softmax(q, k, v, mask=None):
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1)
    if mask is not None:
        w = w * mask
    return w @ v


@wrong(SDPA, r"transpose|\.T|last two")
def sdpa_dot_T(q, k, v, mask=None):
    s = q @ k.T / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return torch.nan_to_num(torch.softmax(s, -1)) @ v


@wrong(SDPA, r"mask.*ignored|ignor.*mask|mask argument")
def sdpa_mask_ignored(q, k, v, mask=None):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1) @ v


@wrong(SDPA, r"bool|-inf|−∞|add")
def sdpa_add_bool_mask(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s + mask.float()
    return torch.softmax(s, -1) @ v


@wrong(SDPA, DTYPE + "|numpy|" + GRAD)
def sdpa_numpy_softmax(q, k, v, mask=None):
    s = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).detach().cpu().numpy().astype(np.float64)
    if mask is not None:
        s = np.where(np.broadcast_to(mask.cpu().numpy(), s.shape), s, -np.inf)
    e = np.exp(s - s.max(-1, keepdims=True))
    w = np.nan_to_num(e / e.sum(-1, keepdims=True))
    return torch.from_numpy(w).to(q.device) @ v.double()


@wrong(SDPA, DEVICE)
def sdpa_cpu_fill(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = torch.where(mask, s, torch.full(s.shape, NINF))
    return torch.nan_to_num(torch.softmax(s, -1)) @ v


@wrong(SDPA, GRAD)
def sdpa_tolist(q, k, v, mask=None):
    s = torch.tensor((q @ k.transpose(-2, -1)).tolist(), dtype=q.dtype, device=q.device) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return torch.nan_to_num(torch.softmax(s, -1)) @ v


@wrong(SDPA, DTYPE)
def sdpa_double(q, k, v, mask=None):
    s = q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return torch.nan_to_num(torch.softmax(s, -1)) @ v.double()


@correct(SDPA)
def sdpa_einsum(q, k, v, mask=None):
    s = torch.einsum("...qd,...kd->...qk", q / math.sqrt(q.shape[-1]), k)
    if mask is not None:
        s = torch.where(mask, s, torch.tensor(NINF, dtype=s.dtype, device=s.device))
    return torch.einsum("...qk,...kd->...qd", torch.nan_to_num(s.softmax(-1)), v)


@correct(SDPA)
def sdpa_torch(q, k, v, mask=None):
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if mask is not None:
        out = out.masked_fill(~mask.any(-1, keepdim=True), 0.0)
    return out


# =============================================================================================
# 01 causal_mask
# =============================================================================================
_BUF8 = torch.ones(8, 8, dtype=torch.bool).tril()

wrong("causal_mask", r"upper|transpos|future|triu|lower")(lambda t: torch.ones(t, t, dtype=torch.bool).triu())
wrong("causal_mask", r"diagonal|itself")(lambda t: torch.ones(t, t, dtype=torch.bool).tril(-1))
wrong("causal_mask", r"bool|dtype")(lambda t: torch.ones(t, t).tril())
wrong("causal_mask", r"longer|size|hard-coded|fixed|any t|larger|bigger|beyond")(lambda t: _BUF8[:t, :t])
wrong("causal_mask", r"tensor|numpy")(lambda t: np.tril(np.ones((t, t), dtype=bool)))
wrong("causal_mask", r"shape|\(t, t\)")(lambda t: torch.ones(t, t, dtype=torch.bool).tril()[None, None])
wrong("causal_mask", r"invert|True means|polarity|hidden|flip|~")(lambda t: ~torch.ones(t, t, dtype=torch.bool).tril())
wrong("causal_mask", r"diagonal|itself")(lambda t: torch.arange(t)[:, None] > torch.arange(t)[None, :])
correct("causal_mask")(lambda t: torch.arange(t)[None, :] <= torch.arange(t)[:, None])
correct("causal_mask")(lambda t: ~torch.ones(t, t, dtype=torch.bool).triu(1))
correct("causal_mask")(lambda t: torch.ones(t, t, dtype=torch.bool).triu().T.contiguous())

# =============================================================================================
# 01 padding_mask
# =============================================================================================
PM = "padding_mask"
wrong(PM, _ignored("pad_id"))(lambda tokens, pad_id=0: (tokens != 0)[:, None, None, :])
wrong(PM, r"shape|\(B, 1, 1, T\)|broadcast")(lambda tokens, pad_id=0: tokens != pad_id)
wrong(PM, r"quer|shape|keys|\(B, 1, 1, T\)|axis")(lambda tokens, pad_id=0: (tokens != pad_id)[:, None, :, None])
wrong(PM, r"shape|\(B, 1, 1, T\)")(lambda tokens, pad_id=0: (tokens != pad_id)[:, None, :])
wrong(PM, r"invert|True|real tokens|polarity|~|flip")(lambda tokens, pad_id=0: (tokens == pad_id)[:, None, None, :])
wrong(PM, r"bool|dtype")(lambda tokens, pad_id=0: (tokens != pad_id).float()[:, None, None, :])
wrong(PM, r"!=|smaller|below|less|pad_id|greater|>")(lambda tokens, pad_id=0: (tokens > pad_id)[:, None, None, :])
wrong(PM, r"BOS|EOS|special|only the padding")(lambda tokens, pad_id=0: ((tokens != pad_id) & (tokens > 2))[:, None, None, :])
wrong(PM, r"batch|row|shape|every sequence|B\b")(lambda tokens, pad_id=0: (tokens[0] != pad_id)[None, None, None, :])


@wrong(PM, DEVICE)
def padding_cpu_buffer(tokens, pad_id=0):
    m = torch.ones(tokens.shape, dtype=torch.bool)
    m[tokens == pad_id] = False
    return m[:, None, None, :]


@wrong(PM, DEVICE + "|numpy")
def padding_numpy(tokens, pad_id=0):
    return torch.from_numpy(tokens.cpu().numpy() != pad_id)[:, None, None, :]


correct(PM)(lambda tokens, pad_id=0: tokens.ne(pad_id).unsqueeze(1).unsqueeze(2))
correct(PM)(lambda tokens, pad_id=0: rearrange(tokens != pad_id, "b t -> b 1 1 t"))
correct(PM)(lambda tokens, pad_id=0: ~(tokens == pad_id).view(tokens.shape[0], 1, 1, tokens.shape[1]))


# =============================================================================================
# 01 prefix_mask and 07 prefix_lm_mask (the same mask, two exercises)
# =============================================================================================
def _ij(t):
    return torch.arange(t)[:, None], torch.arange(t)[None, :]


def _prefix_wrongs(check):
    wrong(check, r"\bor\b|OR|\||and|every query|prefix keys")(lambda t, prefix_len: (lambda i, j: (j <= i) & (j < prefix_len))(*_ij(t)))
    wrong(check, r"column|keys|rows|quer")(lambda t, prefix_len: (lambda i, j: (j <= i) | (i < prefix_len))(*_ij(t)))
    wrong(check, r"off by one|<=|< prefix_len|one key too many|j < prefix_len|prefix_len - 1")(lambda t, prefix_len: (lambda i, j: (j <= i) | (j <= prefix_len))(*_ij(t)))
    wrong(check, _ignored("prefix_len") + r"|plain causal")(lambda t, prefix_len: (lambda i, j: j <= i)(*_ij(t)))
    wrong(check, r"after the prefix|future|prefix.*see|nothing after|rows")(
        lambda t, prefix_len: (lambda i, j: (j <= i) | (j < prefix_len) | (i < prefix_len))(*_ij(t)))
    wrong(check, r"bool|dtype")(lambda t, prefix_len: (lambda i, j: ((j <= i) | (j < prefix_len)).long())(*_ij(t)))
    wrong(check, r"transpos|rows|columns|upper|future")(lambda t, prefix_len: (lambda i, j: ((j <= i) | (j < prefix_len)).T)(*_ij(t)))


_prefix_wrongs("prefix_mask")
_prefix_wrongs("prefix_lm_mask")


@correct("prefix_mask")
def prefix_by_assignment(t, prefix_len):
    m = torch.ones(t, t, dtype=torch.bool).tril()
    m[:, :prefix_len] = True
    return m


@correct("prefix_lm_mask")
def prefix_lm_by_blocks(t, prefix_len):
    m = torch.tril(torch.ones(t, t)).bool()
    m[:prefix_len, :prefix_len] = True
    return m


correct("prefix_lm_mask")(lambda t, p: (lambda i, j: (j <= torch.clamp(i, min=p - 1)))(*_ij(t)))

# =============================================================================================
# 01 split_heads / merge_heads
# =============================================================================================
wrong("split_heads", r"\(h d\)|order|slowest|contiguous features|interleav")(lambda x, n_heads: rearrange(x, "b t (d h) -> b h t d", h=n_heads))
wrong("split_heads", r"shape|head axis|in front|transpose|\(B, H, T, D\)")(lambda x, n_heads: rearrange(x, "b t (h d) -> b t h d", h=n_heads))
wrong("split_heads", r"transpose|view|reshape|permute|head axis")(lambda x, n_heads: x.reshape(x.shape[0], n_heads, x.shape[1], -1))
wrong("split_heads", r"n_heads|D\b|number of heads|head size|shape")(lambda x, n_heads: rearrange(x, "b t (h d) -> b h t d", d=n_heads))
wrong("split_heads", _ignored("n_heads"))(lambda x, n_heads: rearrange(x, "b t (h d) -> b h t d", h=4))
correct("split_heads")(lambda x, n_heads: x.view(x.shape[0], x.shape[1], n_heads, -1).transpose(1, 2))
correct("split_heads")(lambda x, n_heads: x.unflatten(-1, (n_heads, -1)).permute(0, 2, 1, 3))

wrong("merge_heads", r"\(h d\)|order|interleav|slowest")(lambda x: rearrange(x, "b h t d -> b t (d h)"))
wrong("merge_heads", r"transpose|permute|head axis|reshape")(lambda x: x.reshape(x.shape[0], x.shape[2], -1))
wrong("merge_heads", r"contiguous|reshape|view")(lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1))
wrong("merge_heads", r"shape|\(B, T, H\*D\)|merge|concat")(lambda x: x.transpose(1, 2))
correct("merge_heads")(lambda x: x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1))
correct("merge_heads")(lambda x: x.permute(0, 2, 1, 3).flatten(2))

# =============================================================================================
# 01 sliding_window_mask
# =============================================================================================
SW = "sliding_window_mask"
wrong(SW, r"one key too many|window \+ 1|off by one|window - 1|itself and")(lambda t, window: (lambda i, j: (j <= i) & (j >= i - window))(*_ij(t)))
wrong(SW, r"future|causal|j <= i|upper")(lambda t, window: (lambda i, j: j > i - window)(*_ij(t)))
wrong(SW, r"future|causal|both sides|symmetric|j <= i")(lambda t, window: (lambda i, j: (i - j).abs() < window)(*_ij(t)))
wrong(SW, _ignored("window") + r"|plain causal")(lambda t, window: (lambda i, j: j <= i)(*_ij(t)))
wrong(SW, r"itself|diagonal|own")(lambda t, window: (lambda i, j: (j < i) & (j >= i - window))(*_ij(t)))
wrong(SW, r"one key too many|window \+ 1|off by one|window - 1|diagonal")(lambda t, window: torch.ones(t, t, dtype=torch.bool).tril() & torch.ones(t, t, dtype=torch.bool).triu(-window))
wrong(SW, r"bool|dtype")(lambda t, window: (lambda i, j: ((j <= i) & (j > i - window)).int())(*_ij(t)))
wrong(SW, r"longer|size|hard-coded|fixed|any t|larger|beyond")(lambda t, window: (_BUF8 & ~torch.ones(8, 8, dtype=torch.bool).tril(-window))[:t, :t])
correct(SW)(lambda t, window: torch.ones(t, t, dtype=torch.bool).tril() & ~torch.ones(t, t, dtype=torch.bool).tril(-window))
correct(SW)(lambda t, window: torch.ones(t, t, dtype=torch.bool).tril().triu(-(window - 1)))


@correct(SW)
def window_loop(t, window):
    m = torch.zeros(t, t, dtype=torch.bool)
    for i in range(t):
        m[i, max(0, i - window + 1): i + 1] = True
    return m


# =============================================================================================
# 02 mlm_corrupt
# =============================================================================================
MC = "mlm_corrupt"


def _corrupt(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None, *,
             use_gen=True, lo=None, hi=None, split=(0.8, 0.9), keep_specials=True, labels_from="orig",
             ignore=IGNORE, inplace=False, p_fixed=None, mask_fixed=None, one_random=False):
    gen = generator if use_gen else None
    special = torch.zeros_like(tokens, dtype=torch.bool)
    if keep_specials:
        for s in special_ids:
            special |= tokens == s
    pp = p if p_fixed is None else p_fixed
    r0 = torch.rand(tokens.shape, generator=gen)
    chosen = (r0 < pp) & ~special
    r = torch.rand(tokens.shape, generator=gen)
    lo = len(special_ids) if lo is None else lo
    hi = vocab_size if hi is None else hi
    if one_random:
        rnd = torch.full(tokens.shape, int(torch.randint(lo, hi, (1,), generator=gen)))
    else:
        rnd = torch.randint(lo, hi, tokens.shape, generator=gen)
    orig = tokens.clone()
    inputs = tokens if inplace else tokens.clone()
    to_mask = chosen & (r < split[0])
    to_rand = chosen & (r >= split[0]) & (r < split[1])
    inputs[to_mask] = mask_id if mask_fixed is None else mask_fixed
    inputs[to_rand] = rnd[to_rand]
    if labels_from == "all":
        return inputs, orig
    base = inputs if labels_from == "inputs" else orig
    labels = torch.full_like(tokens, ignore)
    labels[chosen] = base[chosen]
    return inputs, labels


wrong(MC, _ignored("generator") + r"|reproduc")(lambda *a, **k: _corrupt(*a, **k, use_gen=False))
wrong(MC, INPLACE)(lambda *a, **k: _corrupt(*a, **k, inplace=True))
wrong(MC, r"original|labels|corrupted")(lambda *a, **k: _corrupt(*a, **k, labels_from="inputs"))
wrong(MC, r"IGNORE|-100|unchosen|only the chosen|every position|labels")(lambda *a, **k: _corrupt(*a, **k, labels_from="all"))
wrong(MC, r"IGNORE|-100")(lambda *a, **k: _corrupt(*a, **k, ignore=0))
wrong(MC, r"ordinary|special|random token|len\(special_ids\)")(lambda *a, **k: _corrupt(*a, **k, lo=0))
wrong(MC, r"vocab|range|random token|out of")(lambda *a, **k: _corrupt(*a, **k, hi=a[1] + 1))
wrong(MC, r"80|10|split|share|\[MASK\]")(lambda *a, **k: _corrupt(*a, **k, split=(0.1, 0.9)))
wrong(MC, r"80|10|random|unchanged|every chosen|split")(lambda *a, **k: _corrupt(*a, **k, split=(1.0, 1.0)))
wrong(MC, r"special|BOS|EOS|padding")(lambda *a, **k: _corrupt(*a, **k, keep_specials=False))
wrong(MC, _ignored("special_ids"))(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None:
                                                     _corrupt(tokens, vocab_size, mask_id, p, SPECIAL_IDS, generator))
wrong(MC, _ignored("p"))(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None:
                                                   _corrupt(tokens, vocab_size, mask_id, p, special_ids, generator, p_fixed=0.15))
wrong(MC, _ignored("mask_id"))(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None:
                                             _corrupt(tokens, vocab_size, mask_id, p, special_ids, generator, mask_fixed=4))
wrong(MC, r"each position|every position|same random|same token|one random|its own")(lambda *a, **k: _corrupt(*a, **k, one_random=True))
@wrong(MC, r"85|1 ?- ?p|> ?p\b|too many|chose \d")
def _corrupt_rand_gt_p(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None):
    """chooses where rand > p: 85% of the tokens instead of 15%."""
    return _corrupt(tokens, vocab_size, mask_id, 1 - p, special_ids, generator)


@wrong(MC, _ignored("vocab_size"))
def corrupt_vocab_from_batch(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None):
    return _corrupt(tokens, int(tokens.max()) + 1, mask_id, p, special_ids, generator)


@wrong(MC, DEVICE)  # written as correct from the exercise's hint (draws on the CPU); wrong once tokens are on a GPU
def corrupt_randint_first(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None):
    rnd = torch.randint(len(special_ids), vocab_size, tokens.shape, generator=generator)
    r = torch.rand(tokens.shape, generator=generator)
    chosen = torch.rand(tokens.shape, generator=generator) < p
    chosen &= ~torch.isin(tokens, torch.tensor(special_ids))
    inputs = torch.where(chosen & (r < 0.8), torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(chosen & (r >= 0.8) & (r < 0.9), rnd, inputs)
    return inputs, torch.where(chosen, tokens, torch.full_like(tokens, IGNORE))


@wrong(MC, DEVICE)  # written as correct from the exercise's hint (draws on the CPU); wrong once tokens are on a GPU
def corrupt_nested_r(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None):
    r = torch.rand(tokens.shape, generator=generator)
    ordinary = torch.ones_like(tokens, dtype=torch.bool)
    for s in special_ids:
        ordinary &= tokens != s
    chosen = (r < p) & ordinary
    inputs = tokens.clone()
    inputs[chosen & (r < 0.8 * p)] = mask_id
    rand_pos = chosen & (r >= 0.8 * p) & (r < 0.9 * p)
    inputs[rand_pos] = torch.randint(len(special_ids), vocab_size, (int(rand_pos.sum()),), generator=generator)
    labels = torch.full_like(tokens, IGNORE)
    labels[chosen] = tokens[chosen]
    return inputs, labels


@wrong(MC, DEVICE)  # written as correct from the exercise's hint (draws on the CPU); wrong once tokens are on a GPU
def corrupt_bernoulli(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None):
    special = torch.isin(tokens, torch.tensor(list(special_ids), dtype=tokens.dtype))
    chosen = torch.bernoulli(torch.full(tokens.shape, p), generator=generator).bool() & ~special
    masked = torch.bernoulli(torch.full(tokens.shape, 0.8), generator=generator).bool() & chosen
    randomised = torch.bernoulli(torch.full(tokens.shape, 0.5), generator=generator).bool() & chosen & ~masked
    inputs = tokens.clone()
    inputs[masked] = mask_id
    inputs[randomised] = torch.randint(len(special_ids), vocab_size, tokens.shape, generator=generator)[randomised]
    labels = tokens.clone()
    labels[~chosen] = IGNORE
    return inputs, labels


# =============================================================================================
# 02 mlm_loss
# =============================================================================================
ML = "mlm_loss"


@wrong(ML, r"\|M\||number of|all positions|B ?[·*×] ?T|average|mean over")
def mlm_mean_all_positions(logits, labels):
    per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="none")
    return per.mean()


@wrong(ML, r"log_softmax|softmax\(.*\)\.log|numerical|stable|large logits|inf|overflow")
def mlm_softmax_log(logits, labels):
    keep = labels != IGNORE
    if not keep.any():
        return logits.sum() * 0.0
    return -torch.softmax(logits[keep], -1).log().gather(-1, labels[keep][:, None]).mean()


@wrong(ML, r"NaN|nothing|no position|empty|0 / 0|zero")
def mlm_nan_when_empty(logits, labels):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)


@wrong(ML, GRAD + r"|torch\.tensor|logits\.sum\(\) \* 0")
def mlm_fresh_zero(logits, labels):
    if not (labels != IGNORE).any():
        return torch.tensor(0.0)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)


@wrong(ML, r"sum|mean|average")
def mlm_sum(logits, labels):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="sum")


@wrong(ML, r"reshape|class|axis|\(N, V\)|flatten|transpose")
def mlm_no_reshape(logits, labels):
    if not (labels != IGNORE).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=IGNORE)


@wrong(ML, r"row|sequence|per-sentence|equally|position")
def mlm_row_means(logits, labels):
    per = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    n = (labels != IGNORE).sum(1)
    keep = n > 0
    if not keep.any():
        return logits.sum() * 0.0
    return (per.sum(1)[keep] / n[keep]).mean()


@wrong(ML, r"label smoothing|smooth")
def mlm_smooth(logits, labels):
    if not (labels != IGNORE).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, label_smoothing=0.1)


@wrong(ML, r"scalar|shape|mean|reduc")
def mlm_per_position(logits, labels):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="none")


@wrong(ML, DTYPE)
def mlm_double(logits, labels):
    keep = labels != IGNORE
    if not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep].double(), labels[keep])


@wrong(ML, GRAD + r"|float|\.item")
def mlm_item(logits, labels):
    if not (labels != IGNORE).any():
        return 0.0
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE).item()


@correct(ML)
def mlm_gather(logits, labels):
    keep = labels != IGNORE
    lp = logits.log_softmax(-1)[keep]
    nll = -lp.gather(-1, labels[keep][:, None]).squeeze(-1)
    return nll.sum() / keep.sum().clamp(min=1) + logits.sum() * 0.0


@correct(ML)
def mlm_nll(logits, labels):
    if (labels == IGNORE).all():
        return (logits * 0).sum()
    return F.nll_loss(F.log_softmax(logits, -1).flatten(0, 1), labels.flatten(), ignore_index=IGNORE)


# =============================================================================================
# 02 encoder_block
# =============================================================================================
EB = "encoder_block"


@wrong(EB, _ignored("pre_norm"))
def block_always_pre(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    x = x + attn(norm1(x), mask)
    return x + ffn(norm2(x))


@wrong(EB, r"pre_norm|post-norm|pre-norm|swapped|invert|the other")
def block_flag_inverted(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if not pre_norm:
        x = x + attn(norm1(x), mask)
        return x + ffn(norm2(x))
    x = norm1(x + attn(x, mask))
    return norm2(x + ffn(x))


@wrong(EB, r"residual|skip|x itself|branch|normalised x")
def block_norm_on_residual(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        h = norm1(x)
        x = h + attn(h, mask)
        h = norm2(x)
        return h + ffn(h)
    x = norm1(x + attn(x, mask))
    return norm2(x + ffn(x))


@wrong(EB, r"parallel|sequen|after attention|attention's output|reads")
def block_parallel(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        return x + attn(norm1(x), mask) + ffn(norm2(x))
    x1 = norm1(x + attn(x, mask))
    return norm2(x1 + ffn(x))


@wrong(EB, r"norm1|norm2|swapped|which norm|order")
def block_norms_swapped(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        x = x + attn(norm2(x), mask)
        return x + ffn(norm1(x))
    x = norm2(x + attn(x, mask))
    return norm1(x + ffn(x))


@wrong(EB, _ignored("mask") + r"|mask.*(not passed|never reaches)|pass.*mask")
def block_mask_ignored(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        x = x + attn(norm1(x), None)
        return x + ffn(norm2(x))
    x = norm1(x + attn(x, None))
    return norm2(x + ffn(x))


@wrong(EB, r"residual|skip|FFN|ffn")
def block_no_ffn_residual(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        x = x + attn(norm1(x), mask)
        return ffn(norm2(x))
    x = norm1(x + attn(x, mask))
    return norm2(ffn(x))


@wrong(EB, r"sum|inside|residual|post-norm|normalise")
def block_post_norm_inside(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        x = x + attn(norm1(x), mask)
        return x + ffn(norm2(x))
    x = x + norm1(attn(x, mask))
    return x + norm2(ffn(x))


@wrong(EB, r"norm2|twice|same norm|both")
def block_norm1_twice(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        x = x + attn(norm1(x), mask)
        return x + ffn(norm1(x))
    x = norm1(x + attn(x, mask))
    return norm1(x + ffn(x))


@correct(EB)
def block_mask_keyword(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        x = x + attn(norm1(x), mask)
        x = x + ffn(norm2(x))
    else:
        x = norm1(x + attn(x, mask))
        x = norm2(x + ffn(x))
    return x


@correct(EB)
def block_loop(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    for sub, norm in ((lambda h: attn(h, mask), norm1), (ffn, norm2)):
        x = x + sub(norm(x)) if pre_norm else norm(x + sub(x))
    return x


# =============================================================================================
# 03 clm_loss
# =============================================================================================
CL = "clm_loss"


def _clm(logits, tokens, pad_id=0, *, shift="left", ignore=None, copy=True, empty="zero", reduce="mean", mask_on="target", dtype=None):
    V = logits.shape[-1]
    tok = tokens.clone() if copy else tokens
    if shift == "left":
        lg, tgt = logits[:, :-1], tok[:, 1:]
        inp = tok[:, :-1]
    elif shift == "none":
        lg, tgt, inp = logits, tok, tok
    else:  # the wrong way
        lg, tgt, inp = logits[:, 1:], tok[:, :-1], tok[:, 1:]
    pid = pad_id if ignore is None else ignore
    if mask_on == "target":
        tgt = tgt.masked_fill(tgt == pid, IGNORE) if copy else tgt.masked_fill_(tgt == pid, IGNORE)
    elif mask_on == "input":
        tgt = tgt.masked_fill(inp == pid, IGNORE)
    n = (tgt != IGNORE).sum()
    if n == 0 and empty == "zero":
        return logits.sum() * 0.0
    if n == 0 and empty == "fresh":
        return torch.tensor(0.0)
    if dtype is not None:
        lg = lg.to(dtype)
    per = F.cross_entropy(lg.reshape(-1, V), tgt.reshape(-1), ignore_index=IGNORE, reduction="none")
    if reduce == "mean":
        return per.sum() / n
    if reduce == "all":
        return per.sum() / per.numel()
    if reduce == "sum":
        return per.sum()
    if reduce == "rows":
        per = per.view(tgt.shape)
        cnt = (tgt != IGNORE).sum(1)
        ok = cnt > 0
        return (per.sum(1)[ok] / cnt[ok]).mean()


wrong(CL, r"shift|next token|tokens\[:, 1:\]|logits\[:, :-1\]")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, shift="none"))
wrong(CL, r"shift|wrong way|direction|previous|logits\[:, :-1\]")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, shift="right"))
wrong(CL, _ignored("pad_id"))(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, ignore=0))
wrong(CL, r"padding|pad|IGNORE")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, ignore=-12345))
wrong(CL, INPLACE)(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, copy=False))
wrong(CL, r"NaN|nothing|empty|0 / 0|length one|zero")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, empty="nan"))
wrong(CL, GRAD + r"|torch\.tensor|logits\.sum\(\) \* 0|" + DEVICE)(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, empty="fresh"))
wrong(CL, r"all positions|padding|average|divid|mean over|number")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, reduce="all"))
wrong(CL, r"row|sequence|equally|per-sentence")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, reduce="rows"))
wrong(CL, r"sum|mean|average")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, reduce="sum"))
wrong(CL, r"target|input|padding|next token is|shifted")(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, mask_on="input"))
wrong(CL, DTYPE)(lambda lg, tok, pad_id=0: _clm(lg, tok, pad_id, dtype=torch.float64))


@wrong(CL, r"reshape|contiguous|view")
def clm_view(logits, tokens, pad_id=0):
    tgt = tokens[:, 1:].masked_fill(tokens[:, 1:] == pad_id, IGNORE)
    if not (tgt != IGNORE).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:, :-1].view(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=IGNORE)


@correct(CL)
def clm_weights(logits, tokens, pad_id=0):
    lp = logits[:, :-1].log_softmax(-1)
    tgt = tokens[:, 1:]
    nll = -lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    w = (tgt != pad_id).to(nll.dtype)
    return (nll * w).sum() / w.sum().clamp(min=1.0)


@correct(CL)
def clm_ignore_index(logits, tokens, pad_id=0):
    tgt = tokens[:, 1:]
    if (tgt == pad_id).all():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tgt.flatten(), ignore_index=pad_id)


# =============================================================================================
# 03 greedy_decode_with_cache (practice 03 and 06)
# =============================================================================================
GD = "greedy_decode_with_cache"


def _greedy(model, prompt, max_new_tokens, eos_id=2, pad_id=0, *, cache=True, refeed="new", steps_delta=0, stop="all",
            after_eos="pad", pick="argmax", first_pos=-1, with_prompt=False, as_list=False, out_float=False,
            eos_fixed=None, pad_fixed=None):
    eos = eos_id if eos_fixed is None else eos_fixed
    pad = pad_id if pad_fixed is None else pad_fixed
    c = model.new_cache() if cache else None
    logits = model(prompt, cache=c) if cache else model(prompt)
    seq = prompt
    out = []
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    n = max_new_tokens + steps_delta
    last = logits[:, first_pos]
    for step in range(n):
        if pick == "argmax":
            tok = last.argmax(-1)
        elif pick == "argmax0":
            tok = last.argmax(0).expand(prompt.shape[0]) if last.shape[0] != prompt.shape[0] else last.argmax(0)[: prompt.shape[0]]
        else:
            tok = torch.multinomial(last.softmax(-1), 1)[:, 0]
        if after_eos == "pad":
            tok = torch.where(done, torch.full_like(tok, pad), tok)
        elif after_eos == "eos" and eos is not None:
            tok = torch.where(done, torch.full_like(tok, eos), tok)
        out.append(tok)
        if eos is not None:
            done = done | (tok == eos)
        if stop == "all" and eos is not None and bool(done.all()):
            break
        if stop == "any" and eos is not None and bool(done.any()):
            break
        if step == n - 1:
            break
        seq = torch.cat([seq, tok[:, None]], 1)
        if not cache:
            last = model(seq)[:, -1]
        elif refeed == "new":
            last = model(tok[:, None], cache=c)[:, -1]
        elif refeed == "all":
            last = model(seq, cache=c)[:, -1]
        elif refeed == "twice":
            last = model(torch.cat([seq[:, -2:-1], tok[:, None]], 1) if step == 0 else tok[:, None], cache=c)[:, -1]
    res = torch.stack(out, 1) if out else prompt.new_zeros(prompt.shape[0], 0)
    if with_prompt:
        res = torch.cat([prompt, res], 1)
    if out_float:
        res = res.float()
    if as_list:
        return res.tolist()
    return res


wrong(GD, r"cache|whole sequence|forward pass|recompute|once")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, cache=False))
wrong(GD, r"whole sequence|twice|again|only the new|newest|one token")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, refeed="all"))
wrong(GD, r"twice|again|last prompt token|only the new|newest|prefill")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, refeed="twice"))
wrong(GD, r"max_new_tokens|one token too few|number of|steps|short")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, steps_delta=-1))
wrong(GD, r"max_new_tokens|one token too many|number of|steps|long")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, steps_delta=1))
wrong(GD, r"stop|every row|finished|all rows")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, stop="never"))
wrong(GD, r"stop|every row|any row|all rows|first row")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, stop="any"))
wrong(GD, r"pad_id|padding|after EOS|finished")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, after_eos="none"))
wrong(GD, r"pad_id|padding|after EOS|EOS again|finished")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, after_eos="eos"))
wrong(GD, _ignored("pad_id"))(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, pad_fixed=0))
wrong(GD, _ignored("eos_id"))(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, eos_fixed=2))
wrong(GD, r"prompt|only the new")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, with_prompt=True))
wrong(GD, r"tensor|list")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, as_list=True))
wrong(GD, r"greedy|argmax|sampl")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, pick="sample"))
wrong(GD, r"last position|logits\[:, -1\]|first position|position")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, first_pos=0))
wrong(GD, DTYPE)(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, out_float=True))


@correct(GD)
def greedy_prealloc(model, prompt, max_new_tokens, eos_id=2, pad_id=0):
    cache = model.new_cache()
    out = torch.full((prompt.shape[0], max_new_tokens), pad_id, dtype=torch.long, device=prompt.device)
    finished = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    logits = model(prompt, cache=cache)[:, -1]
    n = 0
    for t in range(max_new_tokens):
        nxt = logits.argmax(-1).masked_fill(finished, pad_id)
        out[:, t] = nxt
        n = t + 1
        if eos_id is not None:
            finished |= nxt == eos_id
            if finished.all():
                break
        if t + 1 < max_new_tokens:
            logits = model(nxt.unsqueeze(1), cache=cache)[:, -1]
    return out[:, :n]


@correct(GD)
def greedy_while(model, prompt, max_new_tokens, eos_id=2, pad_id=0):
    cache = model.new_cache()
    logits = model(prompt, cache=cache)
    done = torch.zeros(len(prompt), dtype=torch.bool, device=prompt.device)
    toks = []
    while len(toks) < max_new_tokens:
        nxt = logits[:, -1].argmax(-1)
        nxt[done] = pad_id
        toks.append(nxt)
        if eos_id is not None:
            done = done | (nxt == eos_id)
        if done.all():
            break
        logits = model(nxt.view(-1, 1), cache=cache)
    return torch.stack(toks, dim=1)


# =============================================================================================
# 03 next_token_probs
# =============================================================================================
NTP = "next_token_probs"


def _ntp(logits, temperature=1.0, top_k=None, top_p=None, *, temp="div", zero="greedy", k_off=0, p_mode="keep_cross",
         p_before_temp=False, use_k=True, use_p=True, renorm=True, out="probs", k_row0=False, unsort=True, inplace=False, dtype=None):
    lg = logits if inplace else logits.clone()
    if dtype is not None:
        lg = lg.to(dtype)
    if temperature == 0 and zero == "greedy":
        res = torch.zeros_like(lg)
        res.scatter_(-1, lg.argmax(-1, keepdim=True), 1.0)
        return res
    pre = lg.clone()
    if temp == "div":
        lg = lg / temperature if temperature != 0 else lg / torch.zeros(())
    elif temp == "mul":
        lg = lg * temperature
    tempered = lg.clone()
    if top_k is not None and use_k:
        kk = min(top_k + k_off, lg.shape[-1])
        kth = lg.topk(max(kk, 1), -1).values[..., -1:]
        if k_row0:
            kth = kth[:1].expand_as(kth)
        if kk == 0:
            kth = lg.max(-1, keepdim=True).values + 1
        lg = lg.masked_fill(lg < kth, NINF)
        if inplace:
            logits.copy_(lg)
    if top_p is not None and use_p:
        base = pre if p_before_temp else lg
        if p_before_temp and top_k is not None and use_k:
            base = base.masked_fill(lg == NINF, NINF)
        probs = base.softmax(-1)
        sp, idx = probs.sort(-1, descending=True)
        cum = sp.cumsum(-1)
        if p_mode == "keep_cross":
            drop_sorted = (cum - sp) >= top_p
        else:  # excludes the token that crosses p
            drop_sorted = cum > top_p
        if unsort:
            drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
        else:
            drop = drop_sorted
        lg = lg.masked_fill(drop, NINF)
    if out == "logits":
        return lg
    if not renorm:
        return tempered.softmax(-1) * (lg != NINF)
    p = lg.softmax(-1)
    if out == "log":
        return p.log()
    return p


wrong(NTP, r"divide|temperature|multipl")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, temp="mul"))
wrong(NTP, r"temperature 0|T = 0|greedy|argmax")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, zero="divide"))
wrong(NTP, r"top-k|top_k|k largest|one token too|k - 1|k \+ 1")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, k_off=-1))
wrong(NTP, r"top-k|top_k|k largest|one token too|k \+ 1")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, k_off=1))
wrong(NTP, r"temperature.*top-p|top-p.*temperature|before|order")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, p_before_temp=True))
wrong(NTP, r"crosses|at least|top-p|top_p|smallest set|one token too few")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, p_mode="excl"))
wrong(NTP, _ignored("top_k"))(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, use_k=False))
wrong(NTP, _ignored("top_p"))(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, use_p=False))
wrong(NTP, r"probabilit|softmax|logits|sum to 1")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, out="logits"))
wrong(NTP, r"probabilit|log|sum to 1|exp")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, out="log"))
wrong(NTP, r"renormal|sum to 1|softmax what is left|after filtering")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, renorm=False))
wrong(NTP, r"row|each row|batch|per row|first row")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, k_row0=True))
wrong(NTP, r"scatter|original (positions|order)|unsort|back to|vocabulary order|sorted order")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, unsort=False))
wrong(NTP, INPLACE)(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, inplace=True))
wrong(NTP, DTYPE)(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p, dtype=torch.float64))
wrong(NTP, _ignored("temperature"))(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, 1.0, top_k, top_p))
correct(NTP)(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp(lg, temperature, top_k, top_p))


@correct(NTP)
def ntp_hf_style(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    x = logits / temperature
    if top_k is not None:
        v, _ = torch.topk(x, min(top_k, x.shape[-1]))
        x = torch.where(x < v[:, [-1]], torch.full_like(x, NINF), x)
    if top_p is not None:
        sl, si = torch.sort(x, descending=True)
        cp = torch.cumsum(F.softmax(sl, dim=-1), dim=-1)
        remove = cp > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        x = x.masked_fill(remove.scatter(1, si, remove), NINF)
    return F.softmax(x, dim=-1)


# =============================================================================================
# 04 cross_attention
# =============================================================================================
CA = "cross_attention"


def _cross(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None, *, kv_from="context", q_from="x", causal=False, w_o_on=True,
           transpose_w=False, split="hd", scale="head", use_mask=True, invert=False, merge="ok", mask_axis="keys"):
    W = (lambda w: w.T) if transpose_w else (lambda w: w)
    src_q = x if q_from == "x" else context
    src_kv = context if kv_from == "context" else x
    q, k, v = src_q @ W(w_q), src_kv @ W(w_k), src_kv @ W(w_v)
    pat = "b t (h d) -> b h t d" if split == "hd" else "b t (d h) -> b h t d"
    q, k, v = (rearrange(z, pat, h=n_heads) for z in (q, k, v))
    dh = q.shape[-1]
    s = q @ k.transpose(-2, -1)
    if scale == "head":
        s = s / math.sqrt(dh)
    elif scale == "model":
        s = s / math.sqrt(x.shape[-1])
    if context_mask is not None and use_mask:
        m = ~context_mask if invert else context_mask
        if mask_axis == "queries":
            m = m.transpose(-1, -2)[..., : s.shape[-2], :1] if m.shape[-1] >= s.shape[-2] else m
        s = s.masked_fill(~m, NINF)
    if causal:
        T, S = s.shape[-2:]
        s = s.masked_fill(~torch.ones(T, S, dtype=torch.bool, device=s.device).tril(), NINF)
    w = torch.nan_to_num(s.softmax(-1))
    o = w @ v
    o = rearrange(o, "b h t d -> b t (h d)") if merge == "ok" else o.reshape(o.shape[0], o.shape[2], -1)
    return o @ W(w_o) if w_o_on else o


def _ca(**kw):
    return lambda x, c, wq, wk, wv, wo, h, context_mask=None: _cross(x, c, wq, wk, wv, wo, h, context_mask, **kw)


wrong(CA, r"keys and values|context|encoder|self-attention")(_ca(kv_from="x"))
wrong(CA, r"quer|decoder|x\b|shape")(_ca(q_from="context", kv_from="x"))
wrong(CA, r"causal|not causal|whole source|every target")(_ca(causal=True))
wrong(CA, r"w_o|W_O|output projection")(_ca(w_o_on=False))
wrong(CA, r"transpos|x @ w|\.T|weights")(_ca(transpose_w=True))
wrong(CA, r"\(h d\)|heads|order|split")(_ca(split="dh"))
wrong(CA, r"√d_head|sqrt|scale|d_head")(_ca(scale="none"))
wrong(CA, r"d_head|√d_head|scale|d_model|per head")(_ca(scale="model"))
wrong(CA, _ignored("context_mask"))(_ca(use_mask=False))
wrong(CA, r"invert|True|polarity|real source|~")(_ca(invert=True))
wrong(CA, r"merge|transpose|heads|reshape")(_ca(merge="bad"))


@wrong(CA, DTYPE + "|numpy|" + GRAD)
def cross_numpy(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    out = _cross(x.detach().double(), context.detach().double(), w_q.detach().double(), w_k.detach().double(),
                 w_v.detach().double(), w_o.detach().double(), n_heads, context_mask)
    return torch.from_numpy(out.numpy()) if out.device.type == "cpu" else out


correct(CA)(_ca())


@correct(CA)
def cross_einsum(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    B, T, d = x.shape
    dh = d // n_heads
    q = torch.einsum("btd,de->bte", x, w_q).view(B, T, n_heads, dh)
    k = torch.einsum("bsd,de->bse", context, w_k).view(B, -1, n_heads, dh)
    v = torch.einsum("bsd,de->bse", context, w_v).view(B, -1, n_heads, dh)
    s = torch.einsum("bthe,bshe->bhts", q, k) / dh ** 0.5
    if context_mask is not None:
        s = s.masked_fill(~context_mask, NINF)
    a = torch.einsum("bhts,bshe->bthe", torch.nan_to_num(s.softmax(-1)), v).reshape(B, T, d)
    return a @ w_o


@correct(CA)
def cross_torch_sdpa(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    q, k, v = (rearrange(t, "b t (h d) -> b h t d", h=n_heads) for t in (x @ w_q, context @ w_k, context @ w_v))
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=context_mask)
    return rearrange(o, "b h t d -> b t (h d)") @ w_o


# =============================================================================================
# 04 shift_right
# =============================================================================================
SR = "shift_right"
wrong(SR, r"roll|wrap|bos|BOS|first")(lambda y, bos_id: y.roll(1, dims=1))
wrong(SR, r"start|front|end|right|left|prepend")(lambda y, bos_id: torch.cat([y[:, 1:], torch.full_like(y[:, :1], bos_id)], 1))
wrong(SR, r"length|shape|drop|last|T\b")(lambda y, bos_id: torch.cat([torch.full_like(y[:, :1], bos_id), y], 1))
wrong(SR, _ignored("bos_id"))(lambda y, bos_id: torch.cat([torch.full_like(y[:, :1], 1), y[:, :-1]], 1))
wrong(SR, r"drop|last|first|shift")(lambda y, bos_id: torch.cat([torch.full_like(y[:, :1], bos_id), y[:, 1:]], 1))
wrong(SR, r"shift|replace|overwrit|first token")(lambda y, bos_id: y.clone().index_fill_(1, torch.tensor([0], device=y.device), bos_id))
wrong(SR, DTYPE)(lambda y, bos_id: torch.cat([torch.ones(y.shape[0], 1, device=y.device) * bos_id, y[:, :-1]], 1))
wrong(SR, DEVICE)(lambda y, bos_id: torch.cat([torch.full((y.shape[0], 1), bos_id, dtype=y.dtype), y[:, :-1]], 1))


@wrong(SR, INPLACE)
def shift_in_place(targets, bos_id):
    targets[:, 1:] = targets[:, :-1].clone()
    targets[:, 0] = bos_id
    return targets


correct(SR)(lambda y, bos_id: F.pad(y[:, :-1], (1, 0), value=bos_id))


@correct(SR)
def shift_new_full(targets, bos_id):
    out = targets.new_full(targets.shape, bos_id)
    out[:, 1:] = targets[:, :-1]
    return out


# =============================================================================================
# 04 seq2seq_loss
# =============================================================================================
SS = "seq2seq_loss"


def _s2s(logits, targets, pad_id=0, *, shift=False, ignore=None, exclude_eos=False, empty="zero", reduce="mean", dtype=None):
    lg, y = (logits[:, :-1], targets[:, 1:]) if shift else (logits, targets)
    pid = pad_id if ignore is None else ignore
    keep = y != pid
    if exclude_eos:
        keep &= y != EOS_ID
    if not keep.any():
        if empty == "zero":
            return logits.sum() * 0.0
        if empty == "float":
            return 0.0
    if dtype is not None:
        lg = lg.to(dtype)
    per = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1), reduction="none").view(y.shape)
    if reduce == "mean":
        return (per * keep).sum() / keep.sum()
    if reduce == "sum":
        return (per * keep).sum()
    if reduce == "all":
        return (per * keep).sum() / keep.numel()
    if reduce == "rows":
        ok = keep.sum(1) > 0
        return ((per * keep).sum(1)[ok] / keep.sum(1)[ok]).mean()


wrong(SS, r"shift|no further|already aligned")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, shift=True))
wrong(SS, _ignored("pad_id"))(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, ignore=0))
wrong(SS, r"padding|pad|ignore")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, ignore=-12345))
wrong(SS, r"EOS|stop")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, exclude_eos=True))
wrong(SS, r"NaN|nothing|empty|0 / 0|every target is padding|zero")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, empty="nan"))
wrong(SS, GRAD + r"|float|tensor|logits\.sum\(\) \* 0")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, empty="float"))
wrong(SS, r"sum|mean|average")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, reduce="sum"))
wrong(SS, r"all positions|padding|divid|average|real target tokens|number")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, reduce="all"))
wrong(SS, r"row|sequence|equally|per-sentence")(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, reduce="rows"))
wrong(SS, DTYPE)(lambda lg, y, pad_id=0: _s2s(lg, y, pad_id, dtype=torch.float64))


@correct(SS)
def s2s_nll(logits, targets, pad_id=0):
    if (targets == pad_id).all():
        return logits.sum() * 0.0
    return F.nll_loss(logits.log_softmax(-1).transpose(1, 2), targets, ignore_index=pad_id)


@correct(SS)
def s2s_gather(logits, targets, pad_id=0):
    keep = targets != pad_id
    nll = -logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]
    return torch.where(keep, nll, torch.zeros_like(nll)).sum() / keep.sum().clamp(min=1)


# =============================================================================================
# 04 free_running_logits
# =============================================================================================
FR = "free_running_logits"


def _free(model, src, n_steps, bos_id=1, *, out="logits", start="bos", pos=-1, bos_fixed=None, delta=0, pick="argmax", stack_dim=1,
          tgt_float=False, cpu=False):
    b = bos_id if bos_fixed is None else bos_fixed
    dev = torch.device("cpu") if cpu else src.device
    if start == "bos":
        tgt = torch.full((src.shape[0], 1), b, dtype=torch.float if tgt_float else torch.long, device=dev)
    else:
        tgt = src[:, :1].clone()
    res = []
    for _ in range(n_steps + delta):
        lg = model(src, tgt)[:, pos]
        res.append(lg.softmax(-1) if out == "probs" else lg)
        nxt = lg.argmax(-1) if pick == "argmax" else torch.multinomial(lg.softmax(-1), 1)[:, 0]
        tgt = torch.cat([tgt, nxt[:, None].to(tgt.dtype)], 1)
    return torch.stack(res, stack_dim)


def _fr(**kw):
    return lambda model, src, n_steps, bos_id=1: _free(model, src, n_steps, bos_id, **kw)


wrong(FR, r"probabilit|softmax|logits")(_fr(out="probs"))
wrong(FR, r"BOS|bos|start")(_fr(start="src"))
wrong(FR, r"last position|\[:, -1\]|first position|position")(_fr(pos=0))
wrong(FR, _ignored("bos_id"))(_fr(bos_fixed=1))
wrong(FR, r"n_steps|steps|one step too|number")(_fr(delta=-1))
wrong(FR, r"n_steps|steps|one step too|number")(_fr(delta=1))
wrong(FR, r"argmax|greedy|sampl")(_fr(pick="sample"))
wrong(FR, r"shape|stack|\(B, n_steps, V\)|axis|dim")(_fr(stack_dim=0))
wrong(FR, DTYPE + r"|integer|ids")(_fr(tgt_float=True))
wrong(FR, DEVICE)(_fr(cpu=True))


@wrong(FR, r"teacher|own|argmax|feed|append")
def free_feeds_bos_only(model, src, n_steps, bos_id=1):
    tgt = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
    out = []
    for _ in range(n_steps):
        out.append(model(src, tgt)[:, -1])
        tgt = torch.cat([tgt, torch.full_like(tgt[:, :1], bos_id)], 1)
    return torch.stack(out, 1)


correct(FR)(_fr())


@correct(FR)
def free_then_one_pass(model, src, n_steps, bos_id=1):
    tgt = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
    for _ in range(n_steps):
        tgt = torch.cat([tgt, model(src, tgt)[:, -1:].argmax(-1)], dim=1)
    return model(src, tgt[:, :-1])


# =============================================================================================
# 05 collate_encdec
# =============================================================================================
CE = "collate_encdec"


def _ce(batch, *, tin="bos+tgt", tout="tgt+eos", swap_src=False, only_first=False, pad=PAD_ID, left=False, src_eos=False,
        swap_io=False, dtype=None, keys=("src", "tgt_in", "tgt_out")):
    if only_first:
        batch = batch[:1]
    if swap_src:
        batch = [(t, s) for s, t in batch]
    srcs = [list(s) + ([EOS_ID] if src_eos else []) for s, _ in batch]
    ins, outs = [], []
    for _, t in batch:
        t = list(t)
        ins.append({"bos+tgt": [BOS_ID] + t, "tgt": t, "bos+tgt+eos": [BOS_ID] + t + [EOS_ID], "bos+tgt[:-1]": [BOS_ID] + t[:-1]}[tin])
        outs.append({"tgt+eos": t + [EOS_ID], "tgt": t}[tout])

    def padf(seqs):
        n = max(len(s) for s in seqs)
        rows = [([pad] * (n - len(s)) + s) if left else (s + [pad] * (n - len(s))) for s in seqs]
        return torch.tensor(rows, dtype=dtype or torch.long)

    a, b = padf(ins), padf(outs)
    if swap_io:
        a, b = b, a
    return {keys[0]: padf(srcs), keys[1]: a, keys[2]: b}


wrong(CE, r"shape|length|same length|EOS|tgt_in")(lambda batch: _ce(batch, tin="bos+tgt+eos"))
wrong(CE, r"shift|BOS|tgt_in")(lambda batch: _ce(batch, tin="tgt"))
wrong(CE, r"EOS|stop|tgt_out")(lambda batch: _ce(batch, tout="tgt"))
wrong(CE, r"last target|tgt_in|drop|BOS|EOS")(lambda batch: _ce(batch, tin="bos+tgt[:-1]", tout="tgt"))
wrong(CE, r"swap|tgt_in.*tgt_out|tgt_out.*tgt_in|reads|predict")(lambda batch: _ce(batch, swap_io=True))
wrong(CE, r"source|swap|src.*tgt|target")(lambda batch: _ce(batch, swap_src=True))
wrong(CE, r"every pair|first|batch|all pairs|B\b|rows")(lambda batch: _ce(batch, only_first=True))
wrong(CE, r"PAD|pad|padding|-100")(lambda batch: _ce(batch, pad=IGNORE))
wrong(CE, r"right|left|padding|pad")(lambda batch: _ce(batch, left=True))
wrong(CE, r"source|src|EOS|as they are")(lambda batch: _ce(batch, src_eos=True))
wrong(CE, DTYPE + r"|LongTensor")(lambda batch: _ce(batch, dtype=torch.int32))
wrong(CE, r"key|src|tgt_in|tgt_out|dict")(lambda batch: _ce(batch, keys=("source", "decoder_input", "labels")))


@wrong(CE, r"tensor|LongTensor|list|pad")
def collate_lists(batch):
    return {"src": [list(s) for s, _ in batch], "tgt_in": [[BOS_ID] + list(t) for _, t in batch],
            "tgt_out": [list(t) + [EOS_ID] for _, t in batch]}


correct(CE)(lambda batch: _ce(batch))


@correct(CE)
def collate_encdec_pad_batch(batch):
    src = pad_batch([s for s, _ in batch], PAD_ID)
    tgt_in = pad_batch([[BOS_ID, *t] for _, t in batch], PAD_ID)
    tgt_out = pad_batch([[*t, EOS_ID] for _, t in batch], PAD_ID)
    return dict(src=src, tgt_in=tgt_in, tgt_out=tgt_out)


# =============================================================================================
# 05 collate_decoder
# =============================================================================================
CD = "collate_decoder"


def _cd(batch, *, mask="target+eos", prefix="src+1", sep=True, eos=True, bos=False, mask_dtype=torch.bool, prefix_kind="tensor",
        prefix_dtype=torch.long, pad_true=False):
    toks, masks, prefs = [], [], []
    for s, t in batch:
        s, t = list(s), list(t)
        head = ([BOS_ID] if bos else []) + s + ([SEP_ID] if sep else [])
        tail = t + ([EOS_ID] if eos else [])
        toks.append(head + tail)
        if mask == "target+eos":
            m = [False] * len(head) + [True] * len(tail)
        elif mask == "all":
            m = [True] * (len(head) + len(tail))
        elif mask == "with_sep":
            m = [False] * (len(head) - 1) + [True] * (len(tail) + 1)
        elif mask == "no_eos":
            m = [False] * len(head) + [True] * len(t) + [False] * (len(tail) - len(t))
        elif mask == "shifted":
            m = [False] * (len(head) - 1) + [True] * len(tail) + [False]
        masks.append(m)
        prefs.append(len(head) if prefix == "src+1" else len(s))
    n = max(len(x) for x in toks)
    tokens = torch.tensor([x + [PAD_ID] * (n - len(x)) for x in toks])
    lm = torch.tensor([m + [pad_true] * (n - len(m)) for m in masks]).to(mask_dtype)
    if prefix_kind == "tensor":
        pl = torch.tensor(prefs, dtype=prefix_dtype)
    elif prefix_kind == "list":
        pl = prefs
    else:
        pl = torch.tensor(prefs)[:, None]
    return {"tokens": tokens, "loss_mask": lm, "prefix_len": pl}


def _cdw(pattern, **kw):
    wrong(CD, pattern)(lambda batch: _cd(batch, **kw))


_cdw(r"source|leak|target only|prefix", mask="all")
_cdw(r"sep|<sep>|SEP", mask="with_sep")
_cdw(r"EOS|stop", mask="no_eos")
_cdw(r"shift|one position|t\+1|next|off by one|earlier", mask="shifted")
_cdw(r"bool|dtype", mask_dtype=torch.long)
_cdw(r"prefix_len|\+ 1|<sep>|SEP|len\(source\)", prefix="src")
_cdw(r"prefix_len|tensor|list|\(B,\)", prefix_kind="list")
_cdw(r"prefix_len|shape|\(B,\)", prefix_kind="column")
_cdw(r"prefix_len|dtype|integer|long|float", prefix_dtype=torch.float32)
_cdw(r"SEP|sep|separator|<sep>", sep=False)
_cdw(r"EOS|eos", eos=False)
_cdw(r"BOS|bos|start", bos=True)
_cdw(r"padding|pad|False on", pad_true=True)
correct(CD)(lambda batch: _cd(batch))


@correct(CD)
def collate_decoder_prealloc(batch):
    L = max(len(s) + len(t) + 2 for s, t in batch)
    tokens = torch.full((len(batch), L), PAD_ID, dtype=torch.long)
    loss_mask = torch.zeros(len(batch), L, dtype=torch.bool)
    for i, (s, t) in enumerate(batch):
        row = [*s, SEP_ID, *t, EOS_ID]
        tokens[i, : len(row)] = torch.tensor(row)
        loss_mask[i, len(s) + 1: len(row)] = True
    return {"tokens": tokens, "loss_mask": loss_mask, "prefix_len": torch.tensor([len(s) + 1 for s, _ in batch])}


# =============================================================================================
# 05 beam_step
# =============================================================================================
BS = "beam_step"


def _beam(scores, logp, *, add=True, per_beam=False, swap=False, descending=True, mult=False, div=False, order="std", b1=False):
    B, K = scores.shape
    V = logp.shape[-1]
    if mult:
        cand = scores[..., None] * logp.view(B, K, V)
    elif add:
        cand = scores[..., None] + logp.view(B, K, V)
    else:
        cand = logp.view(B, K, V)
    if per_beam:
        best, tok = cand.max(-1)
        new, beam = best.sort(-1, descending=True)
        return new, beam, tok.gather(1, beam)
    flat = cand.reshape(1 if b1 else B, -1)
    if descending:
        new, idx = flat.topk(K, -1)
    else:
        new, idx = flat.sort(-1)
        new, idx = new[:, :K], idx[:, :K]
    if div:
        beam, tok = idx / V, idx % V
    elif swap:
        beam, tok = idx % V, idx // V
    else:
        beam, tok = idx // V, idx % V
    if not add and not mult:
        new = new + scores.gather(1, beam.long())
    if order == "beam_first":
        return beam, tok, new
    return new, beam, tok


def _bw(pattern, **kw):
    wrong(BS, pattern)(lambda scores, logp: _beam(scores, logp, **kw))


@wrong(BS, r"scores|add|previous|total|sum")
def _beam_no_scores(scores, logp):
    B, K = scores.shape
    new, idx = logp.view(B, -1).topk(K, -1)
    return new, idx // logp.shape[-1], idx % logp.shape[-1]


_bw(r"K \* V|all candidates|per beam|whole|each beam", per_beam=True)
_bw(r"//|%|beam.*token|swap|index", swap=True)
_bw(r"best first|descending|order|sort|worst|lowest|largest", descending=False)
_bw(r"add|log-prob|sum|multipl", mult=True)
_bw(r"//|integer|dtype|float|divis", div=True)
_bw(r"order|tuple|new_scores|return", order="beam_first")
_bw(r"whole batch|each input|per input|every input|\(B, K\*V\)|one row", b1=True)
correct(BS)(lambda s, lp: _beam(s, lp))


@correct(BS)
def beam_loop(scores, logp):
    B, K = scores.shape
    V = logp.shape[1]
    outs = []
    for b in range(B):
        cand = (scores[b][:, None] + logp[b * K:(b + 1) * K]).flatten()
        v, i = cand.topk(K)
        outs.append((v, torch.div(i, V, rounding_mode="floor"), i % V))
    return tuple(torch.stack(z) for z in zip(*outs))


# =============================================================================================
# 05 corpus_bleu
# =============================================================================================
BL = "corpus_bleu"



def _bleu(hyps, refs, max_n=4, *, mean="geo", clip=True, bp="std", scale=100.0, n_fixed=None, tok="split", totals="hyp",
          zero_guard=True, pool_refs=False, per_sentence=False, bp_exp="r/c"):
    N = max_n if n_fixed is None else n_fixed
    if per_sentence:
        return sum(_bleu([h], [r], max_n) for h, r in zip(hyps, refs)) / len(hyps)
    split = (lambda s: s.split()) if tok == "split" else (lambda s: list(s))
    H, R = [split(h) for h in hyps], [split(r) for r in refs]
    m, t = [0] * N, [0] * N
    pooled = [Counter() for _ in range(N)]
    if pool_refs:
        for r in R:
            for n in range(N):
                pooled[n] += ngrams(r, n + 1)
    for h, r in zip(H, R):
        for n in range(N):
            hc = ngrams(h, n + 1)
            rc = pooled[n] if pool_refs else ngrams(r, n + 1)
            m[n] += sum(min(c, rc[g]) for g, c in hc.items()) if clip else sum(c for g, c in hc.items() if g in rc)
            t[n] += sum(hc.values()) if totals == "hyp" else sum(rc.values())
    c, r = sum(map(len, H)), sum(map(len, R))
    if zero_guard and (min(m) == 0 or min(t) == 0):
        return 0.0
    ps = [mi / ti for mi, ti in zip(m, t)]
    if mean == "geo":
        core = math.exp(sum(math.log(p) for p in ps) / N)
    else:
        core = sum(ps) / N
    if bp == "std":
        bpv = 1.0 if c > r else math.exp(1 - (r / c if bp_exp == "r/c" else c / r))
    else:
        bpv = 1.0
    return scale * bpv * core


def _blw(pattern, **kw):
    wrong(BL, pattern)(lambda h, r, max_n=4: _bleu(h, r, max_n, **kw))


_blw(r"corpus|pool|per sentence|average of|sentence", per_sentence=True)
_blw(r"geometric|arithmetic|log", mean="arith")
_blw(r"clip|at most|min", clip=False)
_blw(r"brevity|BP|short", bp="none")
_blw(r"brevity|BP|r/c|c/r|1 - r", bp_exp="c/r")
_blw(r"100|0-100|percent|scale", scale=1.0)
_blw(_ignored("max_n"), n_fixed=4)
_blw(r"whitespace|split|character|token", tok="chars")
_blw(r"hypothesis n-grams|total|denominator|reference n-grams|precision", totals="ref")
_blw(r"p_n = 0|zero|log\(0\)|return 0", zero_guard=False)
_blw(r"clip|per sentence|each hypothesis|its own reference|pool", pool_refs=True)
correct(BL)(lambda h, r, max_n=4: _bleu(h, r, max_n))


@correct(BL)
def bleu_sacre(hyps, refs, max_n=4):
    from sacrebleu.metrics import BLEU
    return BLEU(tokenize="none", smooth_method="none", max_ngram_order=max_n, effective_order=False).corpus_score(hyps, [refs]).score


# =============================================================================================
# 05 matched_decoder_layers
# =============================================================================================
MD = "matched_decoder_layers"


def _match(n_enc, n_dec, d, f, *, cross=4, ffn=2, bias=False, norms=False, swap=False, attn=4):
    enc = attn * d * d + ffn * d * f
    dec = enc + cross * d * d
    if bias:
        enc += attn * d + f + d
        dec += attn * d + f + d + cross * d
    if norms:
        enc += 4 * d
        dec += 6 * d
    if swap:
        n_enc, n_dec = n_dec, n_enc
    return (n_enc * enc + n_dec * dec) / enc


def _mdw(pattern, **kw):
    wrong(MD, pattern)(lambda a, b, d, f: _match(a, b, d, f, **kw))


wrong(MD, r"cross-attention|cross|decoder layer")(lambda a, b, d, f: float(a + b))
_mdw(r"cross-attention|cross|four|W_Q|2d²|K and V", cross=2)
wrong(MD, r"cross-attention|whole layer|cross|decoder layer")(lambda a, b, d, f: float(a + 2 * b))
_mdw(r"FFN|d_ff|two matrices|up and down|d × d_ff", ffn=1)
wrong(MD, r"float|exact|round|integer")(lambda a, b, d, f: round(_match(a, b, d, f)))
wrong(MD, r"float|exact|round|integer|//")(lambda a, b, d, f: (a * (4 * d * d + 2 * d * f) + b * (8 * d * d + 2 * d * f)) // (4 * d * d + 2 * d * f))
wrong(MD, _ignored("d_ff"))(lambda a, b, d, f: _match(a, b, d, 4 * d))
_mdw(r"bias", bias=True)
_mdw(r"SwiGLU|three|3|FFN|swiglu", ffn=3)
_mdw(r"n_enc|n_dec|swap|encoder|decoder", swap=True)
wrong(MD, r"invert|ratio|upside|reciprocal|the other way")(lambda a, b, d, f: 1 / _match(a, b, d, f))
_mdw(r"W_O|four|4 d²|attention|output projection", attn=3)
_mdw(r"norm", norms=True)
correct(MD)(lambda a, b, d, f: _match(a, b, d, f))
correct(MD)(lambda n_enc, n_dec, d_model, d_ff: n_enc + n_dec * (1 + 4 * d_model / (4 * d_model + 2 * d_ff)))


@correct(MD)
def match_by_modules(n_enc, n_dec, d_model, d_ff):
    import torch.nn as nn

    def count(*mods):
        return sum(p.numel() for m in mods for p in m.parameters())

    layer = count(*[nn.Linear(d_model, d_model, bias=False) for _ in range(4)], nn.Linear(d_model, d_ff, bias=False), nn.Linear(d_ff, d_model, bias=False))
    return (n_enc * layer + n_dec * (layer + 4 * d_model * d_model)) / layer


# =============================================================================================
# 07 rope
# =============================================================================================
RP = "rope"


def _rope(x, positions, base=10000.0, *, layout="half", invert=True, exp_len="d", use_pos=True, use_base=True, sign=1, order="std",
          dtype=None, np_tables=False, cpu_tables=False):
    d = x.shape[-1]
    T = x.shape[-2]
    b = base if use_base else 10000.0
    dev = torch.device("cpu") if cpu_tables else x.device
    i = torch.arange(d // 2, device=dev, dtype=torch.float32)
    L = {"d": d, "half": d // 2, "T": T}[exp_len]
    theta = b ** (-2 * i / L) if invert else b ** (2 * i / L)
    pos = positions if use_pos else torch.arange(T, device=x.device)
    pos = pos.to(dev)
    ang = pos[:, None].float() * theta[None]
    if dtype is not None:
        ang = ang.to(dtype)
    if np_tables:
        a = ang.cpu().numpy().astype(np.float64)
        cos, sin = torch.from_numpy(np.cos(a)).to(x.device), torch.from_numpy(np.sin(a)).to(x.device)
    else:
        cos, sin = ang.cos(), ang.sin()
    if layout == "half":
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
    else:
        x1, x2 = x[..., 0::2], x[..., 1::2]
    y1 = x1 * cos - sign * x2 * sin
    y2 = sign * x1 * sin + x2 * cos
    if order == "swap":
        y1, y2 = y2, y1
    if layout == "half":
        return torch.cat([y1, y2], -1)
    return torch.stack([y1, y2], -1).flatten(-2)


def _rw(pattern, **kw):
    wrong(RP, pattern)(lambda x, positions, base=10000.0: _rope(x, positions, base, **kw))


_rw(r"pair|layout|rotate half|i \+ d/2|interleav|adjacent", layout="interleaved")
_rw(r"frequenc|θ|theta|base\^|negative|invert|exponent", invert=False)
_rw(r"exponent|frequenc|θ|theta|2i/d|length|d/2", exp_len="half")
_rw(r"exponent|frequenc|θ|theta|2i/d|length|\bd\b", exp_len="T")
_rw(_ignored("positions"), use_pos=False)
_rw(_ignored("base"), use_base=False)
_rw(r"sign|direction|clockwise|−|minus|rotat|angle", sign=-1)
_rw(r"order|halves|swap|concat", order="swap")
_rw(DTYPE, dtype=torch.float64)
_rw(DTYPE + r"|numpy", np_tables=True)
_rw(DEVICE, cpu_tables=True)
correct(RP)(lambda x, positions, base=10000.0: _rope(x, positions, base))


@correct(RP)
def rope_rotate_half(x, positions, base=10000.0):
    d = x.shape[-1]
    inv = 1.0 / (base ** (torch.arange(0, d, 2, device=x.device).float() / d))
    freqs = torch.outer(positions.float(), inv)
    emb = torch.cat([freqs, freqs], -1)
    rot = torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * emb.cos().to(x.dtype) + rot * emb.sin().to(x.dtype)


@correct(RP)
def rope_complex(x, positions, base=10000.0):
    d = x.shape[-1]
    theta = base ** (-torch.arange(d // 2, device=x.device, dtype=torch.float32) * 2 / d)
    z = torch.complex(x[..., : d // 2].float(), x[..., d // 2:].float()) * torch.polar(torch.ones(1, device=x.device), positions[:, None].float() * theta)
    return torch.cat([z.real, z.imag], -1).to(x.dtype)


# =============================================================================================
# 07 rms_norm
# =============================================================================================
RN = "rms_norm"


def _rms(x, weight, eps=1e-6, *, kind="rms", eps_out=False, eps_fixed=None, dim=-1, plus_one=False, use_w=True, keepdim=True, inplace=False, dtype=None):
    e = eps if eps_fixed is None else eps_fixed
    if dtype is not None:
        x = x.to(dtype)
    if kind == "std":
        den = x.std(dim, keepdim=True) + 0 * e
        den = (den ** 2 + e).sqrt()
    elif kind == "layer":
        x = x - x.mean(dim, keepdim=True)
        den = (x.pow(2).mean(dim, keepdim=True) + e).sqrt()
    elif kind == "l2":
        den = x.norm(dim=dim, keepdim=True) + e
    else:
        ms = x.pow(2).mean(dim, keepdim=keepdim)
        den = ms.sqrt() + e if eps_out else (ms + e).sqrt()
    w = (1 + weight) if plus_one else weight
    if inplace:
        x.div_(den)
        y = x
    else:
        y = x / den
    return y * w if use_w else y


def _rnw(pattern, **kw):
    wrong(RN, pattern)(lambda x, weight, eps=1e-6: _rms(x, weight, eps, **kw))


_rnw(r"standard deviation|std|mean", kind="std")
_rnw(r"mean|LayerNorm|subtract|centr", kind="layer")
_rnw(r"eps|ε|inside|square root", eps_out=True)
_rnw(_ignored("eps"), eps_fixed=1e-6)
_rnw(r"axis|last dim|dim|over the", dim=0)
_rnw(r"1 \+ weight|weight|γ|plus one|offset", plus_one=True)
_rnw(r"weight|γ|scale|gain", use_w=False)
_rnw(r"L2|norm|√d|sqrt\(d\)|mean of the squares|root mean", kind="l2")
_rnw(INPLACE, inplace=True)
_rnw(DTYPE, dtype=torch.float64)
correct(RN)(lambda x, weight, eps=1e-6: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight)
correct(RN)(lambda x, weight, eps=1e-6: F.rms_norm(x, (x.shape[-1],), weight, eps))
correct(RN)(lambda x, weight, eps=1e-6: weight * x / torch.sqrt(torch.mean(x * x, dim=-1, keepdim=True) + eps))


# =============================================================================================
# 07 swiglu
# =============================================================================================
SG = "swiglu"


def _sg(x, wg, wu, wd, *, act="silu", on="gate", combine="mul", down=True, transpose=False):
    lin = (lambda a, w: a @ w) if transpose else F.linear
    g, u = lin(x, wg), lin(x, wu)
    f = {"silu": F.silu, "sigmoid": torch.sigmoid, "gelu": F.gelu, "relu": F.relu}[act]
    if on == "gate":
        h = f(g) * u if combine == "mul" else f(g) + u
    elif on == "up":
        h = g * f(u)
    elif on == "both":
        h = f(g) * f(u)
    elif on == "after":
        h = f(g * u)
    return lin(h, wd) if down else h


def _sgw(pattern, **kw):
    wrong(SG, pattern)(lambda x, wg, wu, wd: _sg(x, wg, wu, wd, **kw))


_sgw(r"gate|up|branch|wrong branch|swapped|SiLU", on="up")
_sgw(r"both|gate|branch|SiLU", on="both")
_sgw(r"SiLU|sigmoid|z ?σ|x ?σ|GLU", act="sigmoid")
_sgw(r"SiLU|GELU|GeGLU|activation", act="gelu")
_sgw(r"SiLU|ReLU|activation", act="relu")
_sgw(r"product|multipl|⊙|sum|add", combine="add")
_sgw(r"after|product|gate|SiLU|order", on="after")
_sgw(r"w_down|down|shape|project", down=False)
_sgw(r"transpos|F\.linear|x W|shape|\.T", transpose=True)
correct(SG)(lambda x, wg, wu, wd: (F.silu(x @ wg.T) * (x @ wu.T)) @ wd.T)
correct(SG)(lambda x, wg, wu, wd: F.linear(F.linear(x, wg) * torch.sigmoid(F.linear(x, wg)) * F.linear(x, wu), wd))

# =============================================================================================
# 07 prefix_lm_loss
# =============================================================================================
PL = "prefix_lm_loss"


def _pl(logits, tokens, prefix_len, *, start=None, stop=None, shift=1, denom="cont", dtype=None, p_fixed=None):
    P = prefix_len if p_fixed is None else p_fixed
    T = tokens.shape[1]
    a = P if start is None else start(P)
    b = T if stop is None else stop(T)
    tgt = tokens[:, a:b]
    lg = logits[:, a - shift: b - shift]
    if dtype is not None:
        lg = lg.to(dtype)
    per = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tgt.reshape(-1), reduction="none")
    if denom == "cont":
        return per.mean()
    if denom == "all":
        return per.sum() / (tokens.shape[0] * (T - 1))
    if denom == "allT":
        return per.sum() / tokens.numel()


def _plw(pattern, **kw):
    wrong(PL, pattern)(lambda logits, tokens, prefix_len: _pl(logits, tokens, prefix_len, **kw))


_plw(r"position|first continuation|off by one|x_P|prefix_len - 1|P - 1|one too few", start=lambda P: P + 1)
_plw(r"shift|position before|t-1|t - 1|next|previous|no shift", shift=0)
_plw(r"prefix|continuation only|leak|whole|every position", start=lambda P: 1)
_plw(r"divid|T - P|all positions|continuation|denominator|mean over", denom="all")
_plw(r"divid|T - P|all positions|continuation|denominator|mean over", denom="allT")
_plw(_ignored("prefix_len"), p_fixed=8)
_plw(DTYPE, dtype=torch.float64)


@wrong(PL, r"prefix|continuation|wrong part|scores the prefix")
def plloss_prefix_only(logits, tokens, prefix_len):
    lg = logits[:, : prefix_len - 1]
    return F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tokens[:, 1:prefix_len].reshape(-1))


@wrong(PL, r"position|one too|last|T - P|continuation|end")
def plloss_drops_last(logits, tokens, prefix_len):
    lg = logits[:, prefix_len - 1: -2]
    return F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tokens[:, prefix_len:-1].reshape(-1))


correct(PL)(lambda logits, tokens, prefix_len: _pl(logits, tokens, prefix_len))


@correct(PL)
def plloss_ignore(logits, tokens, prefix_len):
    labels = tokens[:, 1:].clone()
    labels[:, : prefix_len - 1] = IGNORE
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=IGNORE)


# =============================================================================================
# 07 locality_mass
# =============================================================================================
LM = "locality_mass"


def _lm(weights, window=4, query_offset=0, *, lo_off=0, sym=False, use_off=True, off_sign=1, use_w=True, denom=None, future=False,
        reduce=False, cpu=False):
    Tq, Tk = weights.shape[-2:]
    dev = torch.device("cpu") if cpu else weights.device
    w = window if use_w else 4
    off = (query_offset if use_off else 0) * off_sign
    i = torch.arange(Tq, device=dev)[:, None] + off
    j = torch.arange(Tk, device=dev)[None, :]
    lo = i - w + lo_off
    if sym:
        keep = (j >= i - w) & (j <= i + w)
    elif future:
        keep = j >= lo
    else:
        keep = (j >= lo) & (j <= i)
    mass = (weights * keep).sum(-1)
    if denom == "window":
        mass = mass / (w + 1)
    elif denom == "keys":
        mass = (weights * keep).mean(-1)
    if reduce:
        return mass.mean()
    return mass


def _lmw(pattern, **kw):
    wrong(LM, pattern)(lambda weights, window=4, query_offset=0: _lm(weights, window, query_offset, **kw))


_lmw(r"window|off by one|i - w|w \+ 1|one key", lo_off=1)
_lmw(r"future|both sides|symmetric|j <= i|after", sym=True)
_lmw(_ignored("query_offset"), use_off=False)
_lmw(r"query_offset|offset|sign|i = j \+|direction", off_sign=-1)
_lmw(_ignored("window"), use_w=False)
_lmw(r"denominator|divid|sum|mean|mass", denom="window")
_lmw(r"denominator|divid|sum|mean|mass", denom="keys")
_lmw(r"future|j <= i|after|upper", future=True)
_lmw(r"shape|one value per query|\(\.\.\., T_q\)|mean", reduce=True)
_lmw(DEVICE, cpu=True)
correct(LM)(lambda weights, window=4, query_offset=0: _lm(weights, window, query_offset))


@correct(LM)
def locality_loop(weights, window=4, query_offset=0):
    out = torch.zeros(weights.shape[:-1], dtype=weights.dtype, device=weights.device)
    for q in range(weights.shape[-2]):
        i = q + query_offset
        lo, hi = max(0, i - window), min(weights.shape[-1], i + 1)
        if hi > lo:
            out[..., q] = weights[..., q, lo:hi].sum(-1)
    return out


# =============================================================================================
# 06 kv_cache_bytes
# =============================================================================================
KV = "kv_cache_bytes"


def _kv(L, H, dh, n, bpe=4, ns=0, *, two=2, bpe_fixed=None, use_src=True, src_two=2, src_per_tok=False, bits=False, mib=False,
        src_layers=1, as_float=False):
    b = bpe if bpe_fixed is None else bpe_fixed
    self_ = two * L * H * dh * b * n
    cross = src_two * L * H * dh * b * ns * src_layers if use_src else 0
    if src_per_tok:
        cross *= max(n, 1)
    r = self_ + cross
    if bits:
        r *= 8
    if mib:
        r /= 2 ** 20
    return float(r) if as_float else r


def _kvw(pattern, **kw):
    wrong(KV, pattern)(lambda n_layers, n_kv_heads, d_head, n_tokens, bytes_per_el=4, n_source_tokens=0:
                      _kv(n_layers, n_kv_heads, d_head, n_tokens, bytes_per_el, n_source_tokens, **kw))


_kvw(r"\b2\b|two|K and V|key and (the )?value|keys and values|factor", two=1, src_two=1)
_kvw(_ignored("bytes_per_el"), bpe_fixed=4)
_kvw(_ignored("n_source_tokens") + r"|cross.*missing", use_src=False)
_kvw(r"cross|source|K and V|key and value|2", src_two=1)
_kvw(r"source|once|whatever|generated|n_tokens|per generated", src_per_tok=True)
_kvw(r"bits|8|bytes", bits=True)
_kvw(r"MiB|bytes|2\*\*20|unit", mib=True)
_kvw(r"cross|source|layers|decoder layers|twice", src_layers=2)
correct(KV)(lambda n_layers, n_kv_heads, d_head, n_tokens, bytes_per_el=4, n_source_tokens=0:
            2 * n_layers * n_kv_heads * d_head * bytes_per_el * (n_tokens + n_source_tokens))
correct(KV)(lambda n_layers, n_kv_heads, d_head, n_tokens, bytes_per_el=4, n_source_tokens=0:
            _kv(n_layers, n_kv_heads, d_head, n_tokens, bytes_per_el, n_source_tokens, as_float=True))


@wrong(KV, r"n_kv_heads.*(twice|squared)|heads twice|squared")
def kv_heads_squared(n_layers, n_kv_heads, d_head, n_tokens, bytes_per_el=4, n_source_tokens=0):
    return 2 * n_layers * n_kv_heads * n_kv_heads * d_head * bytes_per_el * (n_tokens + n_source_tokens)


@wrong(KV, r"n_layers|layers")
def kv_no_layers(n_layers, n_kv_heads, d_head, n_tokens, bytes_per_el=4, n_source_tokens=0):
    return 2 * n_kv_heads * d_head * bytes_per_el * (n_tokens + n_source_tokens)


# =============================================================================================
# 06 decode_step_flops
# =============================================================================================
DF = "decode_step_flops"


def _df(N, L, n_ctx, d, V, *, wN=2, attn=4, per_layer=True, out=2, quad=False, ctx_plus=0, out_per_layer=False, use_d=True,
        use_v=True, as_float=False):
    ctx = n_ctx + ctx_plus
    a = attn * (ctx * ctx if quad else ctx) * (d if use_d else 64)
    a = a * L if per_layer else a
    o = out * d * (V if use_v else 1000)
    if out_per_layer:
        o *= L
    r = wN * N + a + o
    return float(r) if as_float else r


def _dfw(pattern, **kw):
    wrong(DF, pattern)(lambda n_params, n_layers, n_ctx, d, vocab: _df(n_params, n_layers, n_ctx, d, vocab, **kw))


_dfw(r"2N|2 ?[·*×] ?N|multiply and an add|weights|n_params", wN=1)
_dfw(r"QK|· ?V|twice|both|attention|4 ?[·*×]", attn=2)
_dfw(r"layers is missing|not per layer|is per layer|every layer|× ?n_layers|times the number of layers|n_layers is missing", per_layer=False)
_dfw(r"output|2dV|2 ?[·*×] ?d ?[·*×] ?V|logits|vocab", out=0)
_dfw(r"n_ctx²|quadratic|one new token|prefill|n_ctx", quad=True)
_dfw(r"6N|training|2N|n_params", wN=6)
_dfw(r"output|once|per layer|2dV", out_per_layer=True)
_dfw(r"n_ctx|context|off by one|\+ 1", ctx_plus=1)
_dfw(_ignored("d"), use_d=False)
_dfw(_ignored("vocab"), use_v=False)
correct(DF)(lambda n_params, n_layers, n_ctx, d, vocab: 2 * n_params + 4 * n_layers * n_ctx * d + 2 * d * vocab)
correct(DF)(lambda n_params, n_layers, n_ctx, d, vocab: _df(n_params, n_layers, n_ctx, d, vocab, as_float=True))
