"""A fourth blind round of learner-style implementations (lessons 01-05), written from the exercise
specs after the third round's fixes and measured before any change to the checks.

``WRONG``: ``(check name, function, regex the hint must match to name the mistake)``;
``CORRECT``: ``(check name, function)``. tests/learners/__init__.py collects both.
"""
from __future__ import annotations

import math
from collections import Counter

import torch
import torch.nn.functional as F
from einops import rearrange

from course_lib.losses import IGNORE
from course_lib.tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_ID, pad_batch
from .common import NINF, registry

WRONG, CORRECT, wrong, correct = registry()


SDPA = "scaled_dot_product_attention"


@wrong(SDPA, r"-inf|\+inf|positive|infinite")
def sdpa_fill_plus_inf(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, float("inf"))
    return torch.nan_to_num(s.softmax(-1)) @ v


@correct(SDPA)
def sdpa_sqrt_of_k(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])
    if mask is not None:
        s = s.masked_fill(mask.logical_not(), NINF)
    return torch.nan_to_num(s.softmax(-1)) @ v


@correct("causal_mask")
def causal_float_threshold(t):
    return torch.tril(torch.ones(t, t)) > 0.5


@wrong("split_heads", r"shape|axes|axis")
def split_transpose_23(x, n_heads):
    b, t, _ = x.shape
    return x.view(b, t, n_heads, -1).transpose(2, 3)


@correct("prefix_mask")
def prefix_precedence(t, prefix_len):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return (j <= i) | (j < prefix_len) & (i < prefix_len)


@correct("mlm_loss")
def mlm_positive_labels(logits, labels):
    keep = labels > 0
    if not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], labels[keep])


@wrong("mlm_loss", r"first row|every row|only one row|other rows")
def mlm_first_row_only(logits, labels):
    keep = labels[0] != IGNORE
    if not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[0][keep], labels[0][keep])


@wrong("mlm_loss", r"target|label|gather|most likely|max")
def mlm_max_logprob(logits, labels):
    keep = labels != IGNORE
    if not keep.any():
        return logits.sum() * 0.0
    return -logits.log_softmax(-1).max(-1).values[keep].mean()


@wrong("clm_loss", r"EOS")
def clm_ignores_eos(logits, tokens, pad_id=0):
    tgt = tokens[:, 1:]
    keep = (tgt != pad_id) & (tgt != EOS_ID)
    if not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:, :-1][keep], tgt[keep])


@wrong("clm_loss", r"not shifted|own token")
def clm_drop_last_both(logits, tokens, pad_id=0):
    tgt = tokens[:, :-1]
    if not (tgt != pad_id).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tgt.flatten(), ignore_index=pad_id)


@wrong("seq2seq_loss", r"divid|count|batch")
def s2s_times_batch(logits, targets, pad_id=0):
    if not (targets != pad_id).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id) * targets.shape[0]


NTP = "next_token_probs"


@wrong(NTP, r"smallest|largest|too many|k-th")
def probs_kthvalue(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    lg = logits / temperature
    if top_k is not None:
        kth = lg.kthvalue(top_k, dim=-1, keepdim=True).values  # the k-th *smallest*
        lg = lg.masked_fill(lg < kth, NINF)
    if top_p is not None:
        s, order = lg.sort(-1, descending=True)
        pr = s.softmax(-1)
        s = s.masked_fill(pr.cumsum(-1) - pr >= top_p, NINF)
        lg = torch.full_like(lg, NINF).scatter(-1, order, s)
    return lg.softmax(-1)


@wrong(NTP, r"sum to 1|axis|dim")
def probs_softmax_dim0(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    lg = logits / temperature
    if top_k is not None:
        lg = lg.masked_fill(lg < lg.topk(top_k, -1).values[:, -1:], NINF)
    if top_p is not None:
        s, order = lg.sort(-1, descending=True)
        pr = s.softmax(-1)
        s = s.masked_fill(pr.cumsum(-1) - pr >= top_p, NINF)
        lg = torch.full_like(lg, NINF).scatter(-1, order, s)
    return torch.nan_to_num(lg.softmax(0))


@wrong("collate_encdec", r"left|right|padded at|end")
def encdec_left_padding(batch):
    def left(rows):
        n = max(len(r) for r in rows)
        return torch.tensor([[PAD_ID] * (n - len(r)) + r for r in rows])
    return {"src": left([s for s, _ in batch]), "tgt_in": pad_batch([[BOS_ID] + t for _, t in batch]),
            "tgt_out": pad_batch([t + [EOS_ID] for _, t in batch])}


@wrong("collate_encdec", r"EOS")
def encdec_no_eos_anywhere(batch):
    return {"src": pad_batch([s for s, _ in batch]), "tgt_in": pad_batch([[BOS_ID] + t[:-1] for _, t in batch]),
            "tgt_out": pad_batch([list(t) for _, t in batch])}


@correct("collate_decoder")
def decoder_mask_by_position(batch):
    seqs = [s + [SEP_ID] + t + [EOS_ID] for s, t in batch]
    tokens = pad_batch(seqs)
    start = torch.tensor([len(s) + 1 for s, _ in batch])
    pos = torch.arange(tokens.shape[1])[None, :]
    return {"tokens": tokens, "loss_mask": (pos >= start[:, None]) & (tokens != PAD_ID), "prefix_len": start}


@wrong("collate_decoder", r"<sep>|SEP")
def decoder_sep_at_end(batch):
    seqs = [s + t + [SEP_ID, EOS_ID] for s, t in batch]
    tokens = pad_batch(seqs)
    lm = torch.zeros_like(tokens, dtype=torch.bool)
    for i, (s, t) in enumerate(batch):
        lm[i, len(s) + 1: len(s) + 2 + len(t)] = True
    return {"tokens": tokens, "loss_mask": lm, "prefix_len": torch.tensor([len(s) + 1 for s, _ in batch])}


@correct("beam_step")
def beam_div_floor(scores, logp):
    b, k = scores.shape
    v = logp.shape[-1]
    s, flat = (scores.reshape(-1, 1) + logp).reshape(b, -1).topk(k, dim=1)
    return s, torch.div(flat, v, rounding_mode="floor"), flat - torch.div(flat, v, rounding_mode="floor") * v


@wrong("beam_step", r"token|% V|c % V")
def beam_token_minus_k(scores, logp):
    b, k = scores.shape
    v = logp.shape[-1]
    s, flat = (scores.reshape(-1, 1) + logp).reshape(b, -1).topk(k, dim=1)
    beam = flat // v
    return s, beam, flat - beam * k


def _grams_short(toks, n):
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n))  # misses the last n-gram


@wrong("corpus_bleu", r"last n-gram|range|off by one|n-grams")
def bleu_drops_last_ngram(hyps, refs, max_n=4):
    m, tot = [0] * max_n, [0] * max_n
    c = r = 0
    for h, rf in zip(hyps, refs):
        h, rf = h.split(), rf.split()
        c, r = c + len(h), r + len(rf)
        for n in range(1, max_n + 1):
            hg, rg = _grams_short(h, n), _grams_short(rf, n)
            m[n - 1] += sum(min(x, rg[g]) for g, x in hg.items())
            tot[n - 1] += sum(hg.values())
    if min(m) == 0:
        return 0.0
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * bp * math.exp(sum(math.log(a / b) for a, b in zip(m, tot)) / max_n)


@wrong("encoder_block", r"twice|normalised input|norm\(x\) \+|reads x itself")
def block_post_double_norm(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        x = x + attn(norm1(x), mask)
        return x + ffn(norm2(x))
    x = norm1(x + attn(norm1(x), mask))
    return norm2(x + ffn(norm2(x)))


@wrong("cross_attention", r"axis|dim|queries|keys")
def cross_softmax_queries(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    q = rearrange(x @ w_q, "b t (h d) -> b h t d", h=n_heads)
    k = rearrange(context @ w_k, "b s (h d) -> b h s d", h=n_heads)
    v = rearrange(context @ w_v, "b s (h d) -> b h s d", h=n_heads)
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if context_mask is not None:
        s = s.masked_fill(~context_mask, NINF)
    return rearrange(torch.nan_to_num(s.softmax(-2)) @ v, "b h t d -> b t (h d)") @ w_o
