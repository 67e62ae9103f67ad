"""A fifth blind round of learner-style implementations (lessons 01-05), written from the exercise
specs after the fourth round's fixes and measured before any change to the checks.

``WRONG``: ``(check name, function, regex the hint must match to name the mistake)``;
``CORRECT``: ``(check name, function)``. tests/learners/__init__.py collects both.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from course_lib.losses import IGNORE
from course_lib.tokenizer import BOS_ID, EOS_ID, pad_batch
from .common import NINF, SPECIAL_IDS, ngrams, registry

WRONG, CORRECT, wrong, correct = registry()


@wrong("scaled_dot_product_attention", r"axis|sum to 1|each query")
def sdpa_normalise_columns(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    e = (s - s.amax(-1, keepdim=True)).exp()
    w = e / e.sum(-2, keepdim=True)
    return torch.nan_to_num(w) @ v


@wrong("causal_mask", r"shape|\(t, t\)|axis")
def causal_one_too_big(t):
    return torch.ones(t + 1, t + 1, dtype=torch.bool).tril()


@wrong("padding_mask", r"bool")
def padding_bitwise_not_int(tokens, pad_id=0):
    return (~(tokens == pad_id).int())[:, None, None, :]


@correct("sliding_window_mask")
def window_differences(t, window):
    d = torch.arange(t)[:, None] - torch.arange(t)[None, :]
    return (d < window) & (d >= 0)


@wrong("sliding_window_mask", r"future|transposed")
def window_ahead(t, window):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return (j >= i) & (j < i + window)


@wrong("mlm_corrupt", r"independent|each position|whole row|rows")
def corrupt_whole_rows(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None):
    chosen = (torch.rand(tokens.shape[0], 1) < p).expand_as(tokens) & (tokens >= 6)
    r = torch.rand(tokens.shape)
    inputs = tokens.clone()
    inputs[chosen & (r < 0.8)] = mask_id
    rnd = chosen & (r >= 0.8) & (r < 0.9)
    inputs[rnd] = torch.randint(6, vocab_size, tokens.shape)[rnd]
    return inputs, torch.where(chosen, tokens, IGNORE)


@wrong("mlm_loss", r"cross_entropy|softmax|binary|sigmoid")
def mlm_bce(logits, labels):
    keep = labels != IGNORE
    if not keep.any():
        return logits.sum() * 0.0
    onehot = F.one_hot(labels[keep], logits.shape[-1]).float()
    return F.binary_cross_entropy_with_logits(logits[keep], onehot)


@wrong("clm_loss", r"roll|wrap|last position|first token")
def clm_roll(logits, tokens, pad_id=0):
    tgt = tokens.roll(-1, dims=1)
    if not (tgt != pad_id).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=pad_id)


@wrong("clm_loss", r"divid|count")
def clm_counts_inputs(logits, tokens, pad_id=0):
    tgt = tokens[:, 1:]
    keep = tgt != pad_id
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), tgt, reduction="none") * keep
    n = (tokens != pad_id).sum()
    return nll.sum() / n if keep.any() else logits.sum() * 0.0


@wrong("next_token_probs", r"cumulative|individual|own probability")
def probs_top_p_threshold(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    lg = logits / temperature
    if top_k is not None:
        lg = lg.masked_fill(lg < lg.topk(top_k, -1).values[:, -1:], NINF)
    if top_p is not None:
        pr = lg.softmax(-1)
        keep = (pr >= 1 - top_p) | (pr == pr.max(-1, keepdim=True).values)
        lg = lg.masked_fill(~keep, NINF)
    return lg.softmax(-1)


@wrong("greedy_decode_with_cache", r"too many|max_new_tokens")
def greedy_one_extra(model, prompt, max_new_tokens, eos_id=2, pad_id=0):
    cache = model.new_cache()
    logits = model(prompt, cache=cache)[:, -1]
    done = torch.zeros(prompt.shape[0], dtype=torch.bool)
    out = []
    for _ in range(max_new_tokens + 1):
        tok = logits.argmax(-1).masked_fill(done, pad_id)
        out.append(tok)
        done |= tok == eos_id
        if done.all():
            break
        logits = model(tok[:, None], cache=cache)[:, -1]
    return torch.stack(out, 1)


@wrong("seq2seq_loss", r"exp|perplexity")
def s2s_perplexity(logits, targets, pad_id=0):
    if not (targets != pad_id).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id).exp()


@wrong("free_running_logits", r"axes|axis|shape|\(B, n_steps, V\)")
def free_stack_dim0(model, src, n_steps, bos_id=1):
    tgt = torch.full((src.shape[0], 1), bos_id, dtype=torch.long)
    out = []
    for _ in range(n_steps):
        lg = model(src, tgt)[:, -1]
        out.append(lg)
        tgt = torch.cat([tgt, lg.argmax(-1, keepdim=True)], 1)
    return torch.stack(out, 0)


@wrong("collate_encdec", r"truncat|longest|cut|short")
def encdec_truncates_src(batch):
    n = min(len(s) for s, _ in batch)
    return {"src": torch.tensor([s[:n] for s, _ in batch]), "tgt_in": pad_batch([[BOS_ID] + t for _, t in batch]),
            "tgt_out": pad_batch([t + [EOS_ID] for _, t in batch])}



@correct("corpus_bleu")
def bleu_min_bp(hyps, refs, max_n=4):
    m, tot = [0] * max_n, [0] * max_n
    c = r = 0
    for h, rf in zip(hyps, refs):
        h, rf = h.split(), rf.split()
        c, r = c + len(h), r + len(rf)
        for n in range(1, max_n + 1):
            hg, rg = ngrams(h, n), ngrams(rf, n)
            m[n - 1] += sum(min(x, rg[g]) for g, x in hg.items())
            tot[n - 1] += sum(hg.values())
    if min(m) == 0 or c == 0:
        return 0.0
    bp = min(1.0, math.exp(1 - r / c))
    return 100 * bp * math.exp(sum(math.log(a / b) for a, b in zip(m, tot)) / max_n)


@wrong("encoder_block", r"inverted|~mask")
def block_inverted_mask(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    m = None if mask is None else ~mask
    if pre_norm:
        x = x + attn(norm1(x), m)
        return x + ffn(norm2(x))
    x = norm1(x + attn(x, m))
    return norm2(x + ffn(x))


@wrong("cross_attention", r"transposed|w_o")
def cross_wo_transposed(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    q = rearrange(x @ w_q, "b t (h d) -> b h t d", h=n_heads)
    k = rearrange(context @ w_k, "b s (h d) -> b h s d", h=n_heads)
    v = rearrange(context @ w_v, "b s (h d) -> b h s d", h=n_heads)
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if context_mask is not None:
        s = s.masked_fill(~context_mask, NINF)
    return rearrange(torch.nan_to_num(s.softmax(-1)) @ v, "b h t d -> b t (h d)") @ w_o.T
