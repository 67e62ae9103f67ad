"""A second blind round of learner-style implementations (lessons 01-05), written from the exercise
specs after the general diagnoses of the checks were in place but without tailoring the checks to
them: the held-out measure of how often a hint names a mistake nobody listed.

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


def _sd(q, k, v, mask=None, *, scale):
    s = q @ k.transpose(-2, -1) * scale
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return torch.nan_to_num(s.softmax(-1)) @ v


wrong(SDPA, r"divided by|√d_k")(lambda q, k, v, mask=None: _sd(q, k, v, mask, scale=1 / math.sqrt(q.shape[1])))
wrong(SDPA, r"divided by|√d_k|multipl")(lambda q, k, v, mask=None: _sd(q, k, v, mask, scale=math.sqrt(q.shape[-1])))


@wrong("causal_mask", r"diagonal|itself")
def causal_not_triu(t):
    return ~torch.triu(torch.ones(t, t, dtype=torch.bool))


@wrong("padding_mask", r"first row|every row|each row|whole batch")
def padding_first_row_only(tokens, pad_id=0):
    return (tokens[:1] != pad_id)[:, None, None, :]


@wrong("sliding_window_mask", r"off by one|too few|window")
def window_one_short(t, window):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return (j <= i) & (j > i - window + 1)


@wrong("prefix_mask", r"\bor\b|\|")
def prefix_and(t, prefix_len):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return (j <= i) & (j < prefix_len)


@wrong("mlm_corrupt", r"80%")
def corrupt_independent_draws(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None):
    chosen = (torch.rand(tokens.shape) < p) & (tokens >= 6)
    inputs = tokens.clone()
    inputs[chosen & (torch.rand(tokens.shape) < 0.8)] = mask_id
    rnd = chosen & (torch.rand(tokens.shape) < 0.1)
    inputs[rnd] = torch.randint(6, vocab_size, tokens.shape)[rnd]
    return inputs, torch.where(chosen, tokens, IGNORE)


@wrong("mlm_corrupt", r"special")
def corrupt_specials_unlabelled(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None):
    chosen = torch.rand(tokens.shape) < p
    r = torch.rand(tokens.shape)
    inputs = tokens.clone()
    inputs[chosen & (r < 0.8)] = mask_id
    rnd = chosen & (r >= 0.8) & (r < 0.9)
    inputs[rnd] = torch.randint(6, vocab_size, tokens.shape)[rnd]
    return inputs, torch.where(chosen & (tokens >= 6), tokens, IGNORE)


@wrong("mlm_loss", r"count|divid|\+ 1|number of")
def mlm_denominator_plus_one(logits, labels):
    keep = labels != IGNORE
    nll = -logits.log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return (nll * keep).sum() / (keep.sum() + 1)


@wrong("clm_loss", r"shift|align|t\+1|own token")
def clm_both_sliced(logits, tokens, pad_id=0):
    tgt = tokens[:, 1:]
    if not (tgt != pad_id).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:, 1:].flatten(0, 1), tgt.flatten(), ignore_index=pad_id)


@wrong("clm_loss", r"per sequence|all positions|counted")
def clm_row_means_over_all(logits, tokens, pad_id=0):
    tgt = tokens[:, 1:]
    keep = tgt != pad_id
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), tgt, reduction="none") * keep
    return nll.mean(dim=1).mean()


NTP = "next_token_probs"


@wrong(NTP, r"sum to 1|renormalis")
def probs_topk_zero_no_renorm(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    pr = (logits / temperature).softmax(-1)
    if top_k is not None:
        kth = pr.topk(top_k, -1).values[:, -1:]
        pr = torch.where(pr >= kth, pr, torch.zeros_like(pr))
    if top_p is not None:
        s, order = pr.sort(-1, descending=True)
        s = torch.where(s.cumsum(-1) - s < top_p, s, torch.zeros_like(s))
        pr = torch.zeros_like(pr).scatter(-1, order, s)
    return pr


@wrong(NTP, r"one-hot|shape|\(B, V\)")
def probs_t0_index(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature == 0:
        return logits.argmax(-1)
    lg = logits / temperature
    if top_k is not None:
        lg = lg.masked_fill(lg < lg.topk(top_k, -1).values[:, -1:], NINF)
    if top_p is not None:
        s, order = lg.sort(-1, descending=True)
        pr = s.softmax(-1)
        s = s.masked_fill(pr.cumsum(-1) - pr >= top_p, NINF)
        lg = torch.full_like(lg, NINF).scatter(-1, order, s)
    return lg.softmax(-1)


GREEDY = "greedy_decode_with_cache"


def _gr(model, prompt, n, eos_id=2, pad_id=0, *, after_eos=None, keepdim=False, prefill_minus_one=False):
    cache = model.new_cache()
    if prefill_minus_one and prompt.shape[1] > 1:
        model(prompt[:, :-1], cache=cache)
        logits = model(prompt[:, -1:], cache=cache)[:, -1]
    else:
        logits = model(prompt, cache=cache)[:, -1]
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    out = []
    for step in range(n):
        tok = logits.argmax(-1)
        tok = tok.masked_fill(done, pad_id if after_eos is None else after_eos(eos_id, pad_id))
        out.append(tok[:, None] if keepdim else tok)
        done |= tok == eos_id
        if done.all() or step == n - 1:
            break
        logits = model(tok[:, None], cache=cache)[:, -1]
    return torch.stack(out, 1)


correct(GREEDY)(lambda m, p, n, eos_id=2, pad_id=0: _gr(m, p, n, eos_id, pad_id, prefill_minus_one=True))
wrong(GREEDY, r"pad_id|padded with|with padding|pad the")(lambda m, p, n, eos_id=2, pad_id=0: _gr(m, p, n, eos_id, pad_id, after_eos=lambda e, q: e))
wrong(GREEDY, r"shape|\(B, ")(lambda m, p, n, eos_id=2, pad_id=0: _gr(m, p, n, eos_id, pad_id, keepdim=True))


@correct("shift_right")
def shift_assign(targets, bos_id):
    out = torch.empty_like(targets)
    out[:, 1:] = targets[:, :-1]
    out[:, 0] = bos_id
    return out


@wrong("seq2seq_loss", r"first position|first token|drop|shift")
def s2s_drops_first(logits, targets, pad_id=0):
    lg, y = logits[:, 1:], targets[:, 1:]
    if not (y != pad_id).any():
        return logits.sum() * 0.0
    return F.cross_entropy(lg.flatten(0, 1), y.flatten(), ignore_index=pad_id)


@wrong("free_running_logits", r"append|whole|history|concat|every token so far")
def free_only_last_token(model, src, n_steps, bos_id=1):
    tgt = torch.full((src.shape[0], 1), bos_id, dtype=torch.long)
    out = []
    for _ in range(n_steps):
        lg = model(src, tgt)[:, -1]
        out.append(lg)
        tgt = lg.argmax(-1, keepdim=True)
    return torch.stack(out, 1)


@wrong("collate_encdec", r"(src|source).*(BOS|extra|too many)")
def encdec_bos_on_src(batch):
    return {"src": pad_batch([[BOS_ID] + s for s, _ in batch]),
            "tgt_in": pad_batch([[BOS_ID] + t for _, t in batch]),
            "tgt_out": pad_batch([t + [EOS_ID] for _, t in batch])}


@wrong("collate_encdec", r"tgt_in.*(short|too few|missing|last)")
def encdec_tgt_in_drops_last(batch):
    return {"src": pad_batch([s for s, _ in batch]),
            "tgt_in": pad_batch([[BOS_ID] + t[:-1] for _, t in batch]),
            "tgt_out": pad_batch([t + [EOS_ID] for _, t in batch])}


@wrong("collate_decoder", r"prefix_len")
def decoder_prefix_plus_two(batch):
    seqs = [s + [SEP_ID] + t + [EOS_ID] for s, t in batch]
    tokens = pad_batch(seqs)
    lm = torch.zeros_like(tokens, dtype=torch.bool)
    for i, (s, t) in enumerate(batch):
        lm[i, len(s) + 1: len(s) + 2 + len(t)] = True
    return {"tokens": tokens, "loss_mask": lm, "prefix_len": torch.tensor([len(s) + 2 for s, _ in batch])}


@wrong("beam_step", r"paired|belongs|view|order of the beams|score")
def beam_view_kbv(scores, logp):
    b, k = scores.shape
    v = logp.shape[-1]
    total = scores[:, :, None] + logp.view(k, b, v).transpose(0, 1)
    s, flat = total.reshape(b, k * v).topk(k, -1)
    return s, flat // v, flat % v



@wrong("corpus_bleu", r"clip|count|unique|set")
def bleu_unique_matches(hyps, refs, max_n=4):
    m, tot = [0] * max_n, [0] * max_n
    c = r = 0
    for h, rf in zip(hyps, refs):
        h, rf = h.split(), rf.split()
        c, r = c + len(h), r + len(rf)
        for n in range(1, max_n + 1):
            hg, rg = ngrams(h, n), ngrams(rf, n)
            m[n - 1] += len(set(hg) & set(rg))
            tot[n - 1] += sum(hg.values())
    if min(m) == 0:
        return 0.0
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * bp * math.exp(sum(math.log(a / b) for a, b in zip(m, tot)) / max_n)


@wrong("corpus_bleu", r"length|brevity|words|characters")
def bleu_char_lengths(hyps, refs, max_n=4):
    m, tot = [0] * max_n, [0] * max_n
    c = r = 0
    for h, rf in zip(hyps, refs):
        c, r = c + len(h), r + len(rf)
        h, rf = h.split(), rf.split()
        for n in range(1, max_n + 1):
            hg, rg = ngrams(h, n), ngrams(rf, n)
            m[n - 1] += sum(min(x, rg[g]) for g, x in hg.items())
            tot[n - 1] += sum(hg.values())
    if min(m) == 0:
        return 0.0
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * bp * math.exp(sum(math.log(a / b) for a, b in zip(m, tot)) / max_n)


@wrong("encoder_block", r"pre_norm|pre-norm|post-norm|wrong way")
def block_always_post(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    x = norm1(x + attn(x, mask))
    return norm2(x + ffn(x))


@wrong("encoder_block", r"residual")
def block_no_ffn_residual(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        x = x + attn(norm1(x), mask)
        return ffn(norm2(x))
    x = norm1(x + attn(x, mask))
    return norm2(ffn(x))


@wrong("cross_attention", r"√d_head|scale|divided")
def cross_scale_heads(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    q = rearrange(x @ w_q, "b t (h d) -> b h t d", h=n_heads)
    k = rearrange(context @ w_k, "b s (h d) -> b h s d", h=n_heads)
    v = rearrange(context @ w_v, "b s (h d) -> b h s d", h=n_heads)
    s = q @ k.transpose(-2, -1) / math.sqrt(n_heads)
    if context_mask is not None:
        s = s.masked_fill(~context_mask, NINF)
    return rearrange(torch.nan_to_num(s.softmax(-1)) @ v, "b h t d -> b t (h d)") @ w_o
