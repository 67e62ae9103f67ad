"""A third blind round of learner-style implementations (lessons 01-05), written from the exercise
specs after the second round's fixes and measured before any change to the checks: the held-out
measure of how often a hint names a mistake nobody listed.

``WRONG``: ``(check name, function, regex the hint must match to name the mistake)``;
``CORRECT``: ``(check name, function)``. tests/learners/__init__.py collects both.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from course_lib.losses import IGNORE
from course_lib.tokenizer import BOS_ID, EOS_ID, SEP_ID, pad_batch
from .common import NINF, SPECIAL_IDS, ngrams, registry

WRONG, CORRECT, wrong, correct = registry()


SDPA = "scaled_dot_product_attention"


@wrong(SDPA, r"sum to 1|axis|each query")
def sdpa_softmax_over_both(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    w = s.flatten(-2).softmax(-1).view_as(s)
    return torch.nan_to_num(w) @ v


@wrong(SDPA, r"divided by|√d_k")
def sdpa_precedence(q, k, v, mask=None):
    d_k = q.shape[-1]
    s = q @ k.transpose(-2, -1) / (d_k ** 1 / 2)
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return torch.nan_to_num(s.softmax(-1)) @ v


@correct(SDPA)
def sdpa_kq_transposed_back(q, k, v, mask=None):
    s = (k @ q.transpose(-2, -1)).transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return torch.nan_to_num(s.softmax(-1)) @ v


@correct("causal_mask")
def causal_strict_plus_eye(t):
    return torch.tril(torch.ones(t, t, dtype=torch.bool), diagonal=-1) | torch.eye(t, dtype=torch.bool)


@wrong("causal_mask", r"future|flip|mirror")
def causal_flipped(t):
    return torch.ones(t, t, dtype=torch.bool).tril().flip(-1)


@wrong("padding_mask", r"queries|\(B, 1, 1, T\)")
def padding_expanded(tokens, pad_id=0):
    t = tokens.shape[1]
    return (tokens != pad_id).unsqueeze(1).unsqueeze(1).expand(-1, -1, t, -1)


@correct("sliding_window_mask")
def window_ge(t, window):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return (j <= i) & (j >= i - window + 1)


@wrong("sliding_window_mask", r"future|later")
def window_no_causal(t, window):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return j > i - window


@correct("split_heads")
def split_chunks(x, n_heads):
    return torch.stack(x.chunk(n_heads, dim=-1), dim=1)


@wrong("merge_heads", r"H\*D|axes|axis \d")
def merge_unbind_time(x):
    return torch.cat(x.unbind(2), dim=-1)


def _corr(tokens, vocab_size, mask_id, p=0.15, *, ignore=IGNORE, label_changed_only=False):
    chosen = (torch.rand(tokens.shape) < p) & (tokens >= 6)
    r = torch.rand(tokens.shape)
    inputs = tokens.clone()
    inputs[chosen & (r < 0.8)] = mask_id
    rnd = chosen & (r >= 0.8) & (r < 0.9)
    inputs[rnd] = torch.randint(6, vocab_size, tokens.shape)[rnd]
    lab_at = chosen & (r < 0.9) if label_changed_only else chosen
    return inputs, torch.where(lab_at, tokens, torch.full_like(tokens, ignore))


wrong("mlm_corrupt", r"-100|IGNORE")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corr(tokens, vocab_size, mask_id, p, ignore=-1))
wrong("mlm_corrupt", r"unchanged.*label|every chosen")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corr(tokens, vocab_size, mask_id, p, label_changed_only=True))


@correct("mlm_loss")
def mlm_clamp_ignore_zero(logits, labels):
    if not (labels != IGNORE).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, 1), labels.clamp(min=0).flatten(), ignore_index=0)


@wrong("mlm_loss", r"per.sequence|per row|sum of")
def mlm_sum_of_row_means(logits, labels):
    keep = labels != IGNORE
    nll = -logits.log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1) * keep
    return (nll.sum(1) / keep.sum(1).clamp(min=1)).sum()


@wrong("clm_loss", r"padding|inverted|pad_id")
def clm_scores_only_padding(logits, tokens, pad_id=0):
    tgt = tokens[:, 1:]
    keep = tgt == pad_id
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), tgt, reduction="none")
    return (nll * keep).sum() / keep.sum().clamp(min=1)


@wrong("clm_loss", r"row|flatten|boundar|across")
def clm_flat_shift(logits, tokens, pad_id=0):
    v = logits.shape[-1]
    lg, tg = logits.reshape(-1, v)[:-1], tokens.reshape(-1)[1:]
    if not (tg != pad_id).any():
        return logits.sum() * 0.0
    return F.cross_entropy(lg, tg, ignore_index=pad_id)


NTP = "next_token_probs"


@wrong(NTP, r"twice|T²|squared")
def probs_temperature_twice(logits, temperature=1.0, top_k=None, top_p=None):
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
    return (lg / temperature).softmax(-1)


@wrong("greedy_decode_with_cache", r"sampled|multinomial|not the argmax")
def greedy_samples(model, prompt, max_new_tokens, eos_id=2, pad_id=0):
    g = torch.Generator().manual_seed(0)
    cache = model.new_cache()
    logits = model(prompt, cache=cache)[:, -1]
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    out = []
    for step in range(max_new_tokens):
        tok = torch.multinomial(logits.softmax(-1), 1, generator=g)[:, 0].masked_fill(done, pad_id)
        out.append(tok)
        done |= tok == eos_id
        if done.all() or step == max_new_tokens - 1:
            break
        logits = model(tok[:, None], cache=cache)[:, -1]
    return torch.stack(out, 1)


@correct("shift_right")
def shift_new_full(targets, bos_id):
    return torch.cat([targets.new_full((targets.shape[0], 1), bos_id), targets[:, :-1]], dim=1)


@wrong("seq2seq_loss", r"divid|count|per row|per sequence|batch")
def s2s_mean_row_count(logits, targets, pad_id=0):
    keep = targets != pad_id
    if not keep.any():
        return logits.sum() * 0.0
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none") * keep
    return nll.sum() / keep.float().sum(1).mean()


@wrong("free_running_logits", r"BOS|start")
def free_starts_with_src(model, src, n_steps, bos_id=1):
    tgt = src[:, :1].clone()
    out = []
    for _ in range(n_steps):
        lg = model(src, tgt)[:, -1]
        out.append(lg)
        tgt = torch.cat([tgt, lg.argmax(-1, keepdim=True)], 1)
    return torch.stack(out, 1)


@wrong("collate_encdec", r"padded with|PAD")
def encdec_pads_ignore(batch):
    return {"src": pad_batch([s for s, _ in batch]),
            "tgt_in": pad_batch([[BOS_ID] + t for _, t in batch]),
            "tgt_out": pad_batch([t + [EOS_ID] for _, t in batch], pad_id=IGNORE)}


@wrong("collate_decoder", r"BOS|extra")
def decoder_bos_first(batch):
    seqs = [[BOS_ID] + s + [SEP_ID] + t + [EOS_ID] for s, t in batch]
    tokens = pad_batch(seqs)
    lm = torch.zeros_like(tokens, dtype=torch.bool)
    for i, (s, t) in enumerate(batch):
        lm[i, len(s) + 2: len(s) + 3 + len(t)] = True
    return {"tokens": tokens, "loss_mask": lm, "prefix_len": torch.tensor([len(s) + 2 for s, _ in batch])}


@wrong("beam_step", r"not added|new scores|old beam scores|new totals")
def beam_old_scores(scores, logp):
    b, k = scores.shape
    v = logp.shape[-1]
    total = scores.reshape(-1, 1) + logp
    _, flat = total.reshape(b, k * v).topk(k, -1)
    beam = flat // v
    return scores.gather(1, beam), beam, flat % v



@wrong("corpus_bleu", r"log10|natural|base")
def bleu_log10(hyps, refs, max_n=4):
    m, tot = [0] * max_n, [0] * max_n
    c = r = 0
    for h, rf in zip(hyps, refs):
        h, rf = h.split(), rf.split()
        c, r = c + len(h), r + len(rf)
        for n in range(1, max_n + 1):
            hg, rg = ngrams(h, n), ngrams(rf, n)
            m[n - 1] += sum(min(x, rg[g]) for g, x in hg.items())
            tot[n - 1] += sum(hg.values())
    if min(m) == 0:
        return 0.0
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * bp * math.exp(sum(math.log10(a / b) for a, b in zip(m, tot)) / max_n)


@wrong("encoder_block", r"norm2|same norm|second norm|norm1")
def block_norm1_twice(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        x = x + attn(norm1(x), mask)
        return x + ffn(norm1(x))
    x = norm1(x + attn(x, mask))
    return norm1(x + ffn(x))


@wrong("cross_attention", r"w_k|keys")
def cross_keys_with_wq(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    q = rearrange(x @ w_q, "b t (h d) -> b h t d", h=n_heads)
    k = rearrange(context @ w_q, "b s (h d) -> b h s d", h=n_heads)
    v = rearrange(context @ w_v, "b s (h d) -> b h s d", h=n_heads)
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if context_mask is not None:
        s = s.masked_fill(~context_mask, NINF)
    return rearrange(torch.nan_to_num(s.softmax(-1)) @ v, "b h t d -> b t (h d)") @ w_o
