"""A second, *blind* set of learner-style implementations for the exercise checks (lessons 01-05),
written from the exercise specs only, before reading the checks' hint code: mistakes and styles
that tests/learners/first.py does not already cover (an off-by-one window, a mask on the wrong axis,
softmax then zeroing without renormalising, a two-position shift, a loss divided by the batch size,
a wrong mask token id, argmax over the batch, an n-gram order off by one, ...).

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
from course_lib.tokenizer import BOS_ID, EOS_ID, SEP_ID, pad_batch
from .common import NINF, SPECIAL_IDS, ngrams, registry

WRONG, CORRECT, wrong, correct = registry()


SDPA = "scaled_dot_product_attention"


# ---------------------------------------------------------------------------- attention
@wrong(SDPA, r"√d_k|square root|fourth root")
def sdpa_sqrt_twice(q, k, v, mask=None):
    d_k = q.shape[-1]
    s = q @ k.transpose(-2, -1) / math.sqrt(math.sqrt(d_k))
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return torch.nan_to_num(s.softmax(-1)) @ v


@wrong(SDPA, r"after the softmax|weights.*scal|scal.*weights|sum to 1")
def sdpa_scale_after_softmax(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1)
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    w = torch.nan_to_num(s.softmax(-1)) / math.sqrt(q.shape[-1])
    return w @ v


@wrong(SDPA, r"renormalis|after the softmax|sum to 1")
def sdpa_zero_after_softmax(q, k, v, mask=None):
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    if mask is not None:
        w = w.masked_fill(~mask, 0.0)  # hide the masked keys ... but the rows no longer sum to 1
    return w @ v


@wrong(SDPA, r"-inf|additive")
def sdpa_adds_bool_mask(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s + mask  # a boolean mask added as if it were an additive one
    return s.softmax(-1) @ v


@wrong(SDPA, r"instead of -inf|set to 0|multipl|-inf")
def sdpa_multiplies_by_mask(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s * mask
    return s.softmax(-1) @ v


@wrong(SDPA, r"transpos|queries|wrong axis")
def sdpa_mask_transposed(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask.transpose(-2, -1), NINF)
    return torch.nan_to_num(s.softmax(-1)) @ v


@wrong(SDPA, r"log_softmax|log-|softmax")
def sdpa_log_softmax(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return torch.nan_to_num(s.log_softmax(-1), neginf=0.0) @ v


@wrong(SDPA, r"normalis|sum to 1|softmax")
def sdpa_exp_no_normalise(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return s.exp() @ v


@wrong(SDPA, r"softmax|sigmoid|sum to 1")
def sdpa_sigmoid(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    return torch.sigmoid(s) @ v


@correct(SDPA)
def sdpa_bmm_flat(q, k, v, mask=None):
    shape = q.shape[:-2]
    qq, kk, vv = q.reshape(-1, *q.shape[-2:]), k.reshape(-1, *k.shape[-2:]), v.reshape(-1, *v.shape[-2:])
    s = torch.bmm(qq, kk.transpose(1, 2)).reshape(*shape, q.shape[-2], k.shape[-2]) * q.shape[-1] ** -0.5
    if mask is not None:
        s = s.masked_fill(mask == 0, NINF)
    w = s.softmax(-1)
    w = w.masked_fill(w != w, 0.0)
    return w @ v


# ---------------------------------------------------------------------------- masks
@wrong("causal_mask", r"diagonal|itself")
def causal_loop_strict(t):
    m = torch.zeros(t, t, dtype=torch.bool)
    for i in range(t):
        for j in range(i):  # forgets j == i
            m[i, j] = True
    return m


@wrong("causal_mask", r"shape|\(t, t\)")
def causal_batched(t):
    return torch.tril(torch.ones(1, t, t, dtype=torch.bool))


@wrong("causal_mask", r"future|j <= i")
def causal_two_ahead(t):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return j <= i + 2


@correct("causal_mask")
def causal_triu_eq(t):
    return torch.triu(torch.ones(t, t), diagonal=1) == 0


@wrong("padding_mask", r"pad_id")
def padding_bool_cast(tokens, pad_id=0):
    return tokens.bool()[:, None, None, :]


@wrong("padding_mask", r"queries|\(B, 1, 1, T\)")
def padding_outer(tokens, pad_id=0):
    m = tokens != pad_id
    return m[:, None, :, None] & m[:, None, None, :]


@wrong("padding_mask", r"\(B, 1, 1, T\)|shape")
def padding_wrong_unsqueeze(tokens, pad_id=0):
    return (tokens != pad_id).unsqueeze(0).unsqueeze(0)


@correct("padding_mask")
def padding_ne_unsqueeze(tokens, pad_id=0):
    return tokens.ne(pad_id).unsqueeze(-2).unsqueeze(-2)


@wrong("prefix_mask", r"causal|future|later")
def prefix_only(t, prefix_len):
    return (torch.arange(t)[None, :] < prefix_len).expand(t, t)


@wrong("prefix_mask", r"future|diagonal|offset")
def prefix_tril_offset(t, prefix_len):
    return torch.ones(t, t, dtype=torch.bool).tril(prefix_len)


@correct("prefix_mask")
def prefix_block(t, prefix_len):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return (j <= i) | ((i < prefix_len) & (j < prefix_len))


@wrong("split_heads", r"shape|\(B, H, T, D\)")
def split_permute_wrong(x, n_heads):
    b, t, _ = x.shape
    return x.view(b, t, n_heads, -1).permute(0, 2, 3, 1)


@wrong("merge_heads", r"contiguous|view")
def merge_view_after_transpose(x):
    b, h, t, d = x.shape
    return x.transpose(1, 2).view(b, t, h * d)


@correct("merge_heads")
def merge_permute_reshape(x):
    return x.permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[2], -1)


@wrong("sliding_window_mask", r"off by one|one key too many|window")
def window_inclusive(t, window):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return (j <= i) & (j >= i - window)


@wrong("sliding_window_mask", r"diagonal|itself")
def window_strict(t, window):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return (j < i) & (j > i - window)


@correct("sliding_window_mask")
def window_tril_triu(t, window):
    return torch.ones(t, t, dtype=torch.bool).tril().triu(-window + 1)


# ---------------------------------------------------------------------------- MLM
def _corr(tokens, vocab_size, mask_id, p=0.15, *, mask_tok=None, split=(0.8, 0.9), invert_labels=False,
          specials=(0, 1, 2, 3, 4, 5), above=False):
    special = torch.zeros_like(tokens, dtype=torch.bool)
    for s in specials:
        special |= tokens == s
    r0 = torch.rand(tokens.shape)
    chosen = ((r0 > p) if above else (r0 < p)) & ~special
    r = torch.rand(tokens.shape)
    to_mask = chosen & (r < split[0])
    to_rand = chosen & (r >= split[0]) & (r < split[1])
    inputs = tokens.clone()
    inputs[to_mask] = mask_id if mask_tok is None else mask_tok(mask_id)
    rnd = torch.randint(6, vocab_size, tokens.shape)
    inputs[to_rand] = rnd[to_rand]
    labels = torch.where(~chosen if invert_labels else chosen, tokens, torch.full_like(tokens, IGNORE))
    return inputs, labels


MLMC = "mlm_corrupt"
wrong(MLMC, r"mask_id|\[MASK\] id")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corr(tokens, vocab_size, mask_id, p, mask_tok=lambda m: m + 1))
wrong(MLMC, r"80%")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corr(tokens, vocab_size, mask_id, p, split=(0.1, 0.9)))
wrong(MLMC, r"inverted|the other way|not chosen|unchosen")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corr(tokens, vocab_size, mask_id, p, invert_labels=True))
wrong(MLMC, r"special")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corr(tokens, vocab_size, mask_id, p, specials=(0,)))
wrong(MLMC, r"p=|probability p|1 - p|too many")(lambda tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None: _corr(tokens, vocab_size, mask_id, p, above=True))


@correct(MLMC)
def corrupt_one_uniform(tokens, vocab_size, mask_id, p=0.15, special_ids=SPECIAL_IDS, generator=None):
    u = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    chosen = (u < p) & (tokens >= len(special_ids))
    inputs = tokens.clone()
    inputs[chosen & (u < 0.8 * p)] = mask_id
    rnd = chosen & (u >= 0.8 * p) & (u < 0.9 * p)
    inputs[rnd] = torch.randint(len(special_ids), vocab_size, (int(rnd.sum()),), generator=generator).to(tokens.device)
    return inputs, torch.where(chosen, tokens, IGNORE)


def _nll(lg, lb):
    return -lg.log_softmax(-1).gather(-1, lb.clamp(min=0)[..., None]).squeeze(-1)


@wrong("mlm_loss", r"batch size|per row|B\b")
def mlm_over_batch(logits, labels):
    keep = labels != IGNORE
    return (_nll(logits, labels) * keep).sum() / labels.shape[0]


@wrong("mlm_loss", r"all positions|B·T|counted")
def mlm_ce_none_mean(logits, labels):
    return F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none").mean()


@wrong("mlm_loss", r"softmax|probabilities|logits")
def mlm_double_softmax(logits, labels):
    if not (labels != IGNORE).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.softmax(-1).flatten(0, 1), labels.flatten(), ignore_index=IGNORE)


@correct("mlm_loss")
def mlm_gather_mean(logits, labels):
    keep = labels != IGNORE
    return (_nll(logits, labels) * keep).sum() / keep.sum().clamp(min=1)


# ---------------------------------------------------------------------------- CLM
@wrong("clm_loss", r"two positions|two places|by two|twice")
def clm_shift_two(logits, tokens, pad_id=0):
    tgt = tokens[:, 2:]
    if not (tgt != pad_id).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:, :-2].flatten(0, 1), tgt.flatten(), ignore_index=pad_id)


@wrong("clm_loss", r"axis|dim=|vocabulary")
def clm_logsoftmax_time(logits, tokens, pad_id=0):
    lp = logits[:, :-1].log_softmax(dim=1)
    tgt = tokens[:, 1:]
    keep = tgt != pad_id
    nll = -lp.gather(-1, tgt[..., None]).squeeze(-1)
    return (nll * keep).sum() / keep.sum().clamp(min=1)


@wrong("clm_loss", r"per position|per time|counted tokens|per sequence|mean of")
def clm_mean_per_position(logits, tokens, pad_id=0):
    tgt = tokens[:, 1:]
    keep = (tgt != pad_id).float()
    nll = -logits[:, :-1].log_softmax(-1).gather(-1, tgt[..., None]).squeeze(-1)
    per_pos = (nll * keep).sum(0) / keep.sum(0).clamp(min=1)
    used = keep.sum(0) > 0
    if not used.any():
        return logits.sum() * 0.0
    return per_pos[used].mean()


@correct("clm_loss")
def clm_ignore_index_pad(logits, tokens, pad_id=0):
    tgt = tokens[:, 1:]
    if not (tgt != pad_id).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), tgt, ignore_index=pad_id)


NTP = "next_token_probs"


def _ntp_ok(logits, temperature=1.0, top_k=None, top_p=None, *, k_fill=NINF, p_desc=True, temp_after=False):
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    lg = logits if temp_after else logits / temperature
    if top_k is not None:
        kth = lg.topk(top_k, -1).values[:, -1:]
        lg = lg.masked_fill(lg < kth, k_fill)
    if top_p is not None:
        s, order = lg.sort(-1, descending=p_desc)
        pr = s.softmax(-1)
        before = pr.cumsum(-1) - pr
        s = s.masked_fill(before >= top_p, NINF)
        lg = torch.full_like(lg, NINF).scatter(-1, order, s)
    out = lg.softmax(-1)
    return out / temperature if temp_after else out


wrong(NTP, r"sum to 1|after the softmax")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp_ok(lg, temperature, top_k, top_p, temp_after=True))
wrong(NTP, r"sort|descending|smallest|least likely")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp_ok(lg, temperature, top_k, top_p, p_desc=False))
wrong(NTP, r"-inf|zero|0 instead")(lambda lg, temperature=1.0, top_k=None, top_p=None: _ntp_ok(lg, temperature, top_k, top_p, k_fill=0.0))


@correct(NTP)
def ntp_power_of_probs(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature == 0:
        out = torch.zeros_like(logits)
        return out.scatter(-1, logits.argmax(-1, keepdim=True), 1.0)
    pr = logits.softmax(-1) ** (1.0 / temperature)  # p^(1/T), renormalised = softmax(logits / T)
    pr = pr / pr.sum(-1, keepdim=True)
    if top_k is not None:
        kth = pr.topk(top_k, -1).values[:, -1:]
        pr = torch.where(pr >= kth, pr, torch.zeros_like(pr))
        pr = pr / pr.sum(-1, keepdim=True)
    if top_p is not None:
        s, order = pr.sort(-1, descending=True)
        s = torch.where(s.cumsum(-1) - s < top_p, s, torch.zeros_like(s))
        pr = torch.zeros_like(pr).scatter(-1, order, s)
        pr = pr / pr.sum(-1, keepdim=True)
    return pr


GREEDY = "greedy_decode_with_cache"


def _greedy(model, prompt, n, eos_id=2, pad_id=0, *, pos=-1, arg_dim=-1, stop_any=False):
    cache = model.new_cache()
    logits = model(prompt, cache=cache)[:, pos]
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    out = []
    for step in range(n):
        tok = logits.argmax(dim=arg_dim)
        if tok.shape != done.shape:
            tok = tok[: done.shape[0]] if tok.numel() >= done.numel() else tok.expand(done.shape)
        tok = tok.masked_fill(done, pad_id)
        out.append(tok)
        done |= tok == eos_id
        if (done.any() if stop_any else done.all()) or step == n - 1:
            break
        logits = model(tok[:, None], cache=cache)[:, -1]
    return torch.stack(out, 1)


wrong(GREEDY, r"last position|-1|first position")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, pos=0))
wrong(GREEDY, r"every row|all rows|any row|first row")(lambda m, p, n, eos_id=2, pad_id=0: _greedy(m, p, n, eos_id, pad_id, stop_any=True))


@wrong(GREEDY, r"tensor|list")
def greedy_returns_list(model, prompt, max_new_tokens, eos_id=2, pad_id=0):
    return list(_greedy(model, prompt, max_new_tokens, eos_id, pad_id).unbind(1))


# ---------------------------------------------------------------------------- seq2seq
@wrong("cross_attention", r"inverted")
def cross_mask_inverted(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    q = rearrange(x @ w_q, "b t (h d) -> b h t d", h=n_heads)
    k = rearrange(context @ w_k, "b s (h d) -> b h s d", h=n_heads)
    v = rearrange(context @ w_v, "b s (h d) -> b h s d", h=n_heads)
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if context_mask is not None:
        s = s.masked_fill(context_mask, NINF)
    w = torch.nan_to_num(s.softmax(-1))
    return rearrange(w @ v, "b h t d -> b t (h d)") @ w_o


@wrong("cross_attention", r"values|\bV\b (is|are|comes?) ")
def cross_v_from_x(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None):
    if x.shape[1] != context.shape[1]:
        v_src = x[:, :1].expand(-1, context.shape[1], -1)
    else:
        v_src = x
    q = rearrange(x @ w_q, "b t (h d) -> b h t d", h=n_heads)
    k = rearrange(context @ w_k, "b s (h d) -> b h s d", h=n_heads)
    v = rearrange(v_src @ w_v, "b s (h d) -> b h s d", h=n_heads)
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if context_mask is not None:
        s = s.masked_fill(~context_mask, NINF)
    return rearrange(torch.nan_to_num(s.softmax(-1)) @ v, "b h t d -> b t (h d)") @ w_o


@wrong("shift_right", r"two positions|two places|by two|twice|too far")
def shift_two(targets, bos_id):
    bos = torch.full_like(targets[:, :2], bos_id)
    return torch.cat([bos, targets[:, :-2]], 1)


@correct("shift_right")
def shift_roll_then_bos(targets, bos_id):
    out = targets.roll(1, dims=1)
    out[:, 0] = bos_id
    return out


@wrong("seq2seq_loss", r"EOS (is|was) (not|never)|EOS.*(scored|counted|ignored|skipped)")
def s2s_ignores_eos(logits, targets, pad_id=0):
    keep = (targets != pad_id) & (targets != EOS_ID)
    if not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], targets[keep])


@wrong("seq2seq_loss", r"axis|dim=|vocabulary")
def s2s_logsoftmax_dim1(logits, targets, pad_id=0):
    if not (targets != pad_id).any():
        return logits.sum() * 0.0
    lp = F.log_softmax(logits, dim=1)
    return F.nll_loss(lp.flatten(0, 1), targets.flatten(), ignore_index=pad_id)


@correct("seq2seq_loss")
def s2s_boolean_index(logits, targets, pad_id=0):
    keep = targets != pad_id
    if not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], targets[keep])


@wrong("free_running_logits", r"last position|-1|first position")
def free_first_position(model, src, n_steps, bos_id=1):
    tgt = torch.full((src.shape[0], 1), bos_id, dtype=torch.long)
    out = []
    for _ in range(n_steps):
        lg = model(src, tgt)[:, 0]
        out.append(lg)
        tgt = torch.cat([tgt, lg.argmax(-1, keepdim=True)], 1)
    return torch.stack(out, 1)


@wrong("free_running_logits", r"argmax over|axis|dim")
def free_argmax_batch(model, src, n_steps, bos_id=1):
    tgt = torch.full((src.shape[0], 1), bos_id, dtype=torch.long)
    out = []
    for _ in range(n_steps):
        lg = model(src, tgt)[:, -1]
        out.append(lg)
        nxt = lg.argmax(0)[: src.shape[0]] if lg.shape[-1] >= src.shape[0] else lg.argmax(-1)
        tgt = torch.cat([tgt, nxt[:, None] % lg.shape[-1]], 1)
    return torch.stack(out, 1)


# ---------------------------------------------------------------------------- translation
@wrong("collate_encdec", r"EOS|tgt_in")
def encdec_eos_in_input(batch):
    return {"src": pad_batch([s for s, _ in batch]),
            "tgt_in": pad_batch([[BOS_ID] + t + [EOS_ID] for _, t in batch]),
            "tgt_out": pad_batch([t + [EOS_ID] for _, t in batch])}


@wrong("collate_encdec", r"swapped")
def encdec_in_out_swapped(batch):
    return {"src": pad_batch([s for s, _ in batch]),
            "tgt_in": pad_batch([t + [EOS_ID] for _, t in batch]),
            "tgt_out": pad_batch([[BOS_ID] + t for _, t in batch])}


@wrong("collate_encdec", r"dict|keys")
def encdec_tuple(batch):
    return (pad_batch([s for s, _ in batch]), pad_batch([[BOS_ID] + t for _, t in batch]),
            pad_batch([t + [EOS_ID] for _, t in batch]))


@wrong("collate_decoder", r"padding|loss_mask|loss mask")
def decoder_mask_to_end(batch):
    seqs = [s + [SEP_ID] + t + [EOS_ID] for s, t in batch]
    tokens = pad_batch(seqs)
    lm = torch.zeros_like(tokens, dtype=torch.bool)
    for i, (s, _) in enumerate(batch):
        lm[i, len(s) + 1:] = True
    return {"tokens": tokens, "loss_mask": lm, "prefix_len": torch.tensor([len(s) + 1 for s, _ in batch])}


@wrong("collate_decoder", r"EOS")
def decoder_no_eos(batch):
    seqs = [s + [SEP_ID] + t for s, t in batch]
    tokens = pad_batch(seqs)
    lm = torch.zeros_like(tokens, dtype=torch.bool)
    for i, (s, t) in enumerate(batch):
        lm[i, len(s) + 1: len(s) + 1 + len(t)] = True
    return {"tokens": tokens, "loss_mask": lm, "prefix_len": torch.tensor([len(s) + 1 for s, _ in batch])}


@wrong("collate_decoder", r"prefix_len (is|covers|counts|should)")
def decoder_prefix_whole(batch):
    seqs = [s + [SEP_ID] + t + [EOS_ID] for s, t in batch]
    tokens = pad_batch(seqs)
    lm = torch.zeros_like(tokens, dtype=torch.bool)
    for i, (s, t) in enumerate(batch):
        lm[i, len(s) + 1: len(s) + 2 + len(t)] = True
    return {"tokens": tokens, "loss_mask": lm, "prefix_len": torch.tensor([len(x) for x in seqs])}


@wrong("beam_step", r"log|probabilit")
def beam_adds_probs(scores, logp):
    b, k = scores.shape
    v = logp.shape[-1]
    total = scores.reshape(-1, 1) + logp.exp()
    s, flat = total.reshape(b, k * v).topk(k, -1)
    return s, flat // v, flat % v


@wrong("beam_step", r"paired|belongs|beam.s score|scores of the wrong")
def beam_scores_transposed(scores, logp):
    b, k = scores.shape
    v = logp.shape[-1]
    total = scores.T.reshape(-1, 1) + logp
    s, flat = total.reshape(b, k * v).topk(k, -1)
    return s, flat // v, flat % v


@correct("beam_step")
def beam_token_major(scores, logp):
    b, k = scores.shape
    v = logp.shape[-1]
    total = (scores[:, :, None] + logp.view(b, k, v)).transpose(1, 2).reshape(b, v * k)
    s, flat = total.topk(k, -1)
    return s, flat % k, flat // k



def _bleu(hyps, refs, max_n=4, *, orders=None, bp="ok", tok=str.split, denom="hyp"):
    orders = range(1, max_n + 1) if orders is None else orders(max_n)
    m, tot = Counter(), Counter()
    c = r = 0
    for h, rf in zip(hyps, refs):
        h, rf = tok(h), tok(rf)
        c, r = c + len(h), r + len(rf)
        for n in orders:
            hg, rg = ngrams(h, n), ngrams(rf, n)
            m[n] += sum(min(x, rg[g]) for g, x in hg.items())
            tot[n] += sum((hg if denom == "hyp" else rg).values())
    if any(m[n] == 0 for n in orders) or c == 0:
        return 0.0
    lm = sum(math.log(m[n] / tot[n]) for n in orders) / max_n
    b = 1.0 if c > r else (math.exp(1 - r / c) if bp == "ok" else math.exp(1 - c / r))
    return 100 * b * math.exp(lm)


wrong("corpus_bleu", r"max_n|n-gram orders|1 to max_n|up to max_n")(lambda h, r, max_n=4: _bleu(h, r, max_n, orders=lambda n: range(1, n)))
wrong("corpus_bleu", r"brevity")(lambda h, r, max_n=4: _bleu(h, r, max_n, bp="flip"))
wrong("corpus_bleu", r"whitespace|split|character")(lambda h, r, max_n=4: _bleu(h, r, max_n, tok=list))
wrong("corpus_bleu", r"recall|reference n-grams|hypothesis n-grams|denominator")(lambda h, r, max_n=4: _bleu(h, r, max_n, denom="ref"))


@correct("corpus_bleu")
def bleu_log_space(hyps, refs, max_n=4):
    return _bleu(hyps, refs, max_n)


# ---------------------------------------------------------------------------- encoder block
@wrong("encoder_block", r"pre_norm|post-norm")
def block_ignores_flag(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    x = x + attn(norm1(x), mask)
    return x + ffn(norm2(x))


@wrong("encoder_block", r"order|FFN.*before|before.*attention")
def block_ffn_first(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        x = x + ffn(norm2(x))
        return x + attn(norm1(x), mask)
    x = norm2(x + ffn(x))
    return norm1(x + attn(x, mask))


@wrong("encoder_block", r"residual")
def block_ffn_residual_from_input(x, mask, attn, ffn, norm1, norm2, pre_norm=True):
    if pre_norm:
        h = x + attn(norm1(x), mask)
        return x + ffn(norm2(h))
    h = norm1(x + attn(x, mask))
    return norm2(x + ffn(h))
