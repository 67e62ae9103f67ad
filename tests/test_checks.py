"""Tests for course_lib.learner.checks: every check passes the reference, catches each classic mistake with
the right one-sentence hint, reports unfinished work without raising, and explains wrong shapes."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import course_lib as cl
from course_lib import checks as C
from course_lib.losses import IGNORE

NINF = float("-inf")


# ---------------------------------------------------------------------------------------------
# correct implementations, written the way a learner would (and as the solutions do)
# ---------------------------------------------------------------------------------------------
def attn(q, k, v, mask=None, *, scale="sqrt", fill="before", axis=-1, fix_nan=True, return_weights=False):
    d = q.shape[-1]
    scores = q @ k.transpose(-2, -1)
    scores = scores / {"sqrt": math.sqrt(d), "none": 1.0, "d": d}[scale]
    if mask is not None:
        if fill == "before":
            scores = scores.masked_fill(~mask, NINF)
        elif fill == "inverted":
            scores = scores.masked_fill(mask, NINF)
        elif fill == "zero":
            scores = scores * mask
        elif fill == "big":
            scores = scores.masked_fill(~mask, -1e9)
    weights = scores.softmax(dim=axis)
    if mask is not None and fill == "after":
        weights = weights * mask
    if fix_nan:
        weights = torch.nan_to_num(weights)
    return weights if return_weights else weights @ v


def causal_ok(t):
    return torch.tril(torch.ones(t, t, dtype=torch.bool))


def padding_ok(tokens, pad_id=0):
    return (tokens != pad_id)[:, None, None, :]


def prefix_ok(t, prefix_len):
    return causal_ok(t) | (torch.arange(t) < prefix_len)[None, :]


def split_ok(x, n_heads):
    return rearrange(x, "b t (h d) -> b h t d", h=n_heads)


def merge_ok(x):
    return rearrange(x, "b h t d -> b t (h d)")


def cross(x, context, w_q, w_k, w_v, w_o, n_heads, context_mask=None, *, kv_from_x=False, swap=False, use_mask=True,
          causal=False, scale="head", order="h d", use_wo=True, linear=False):
    proj = (lambda a, w: F.linear(a, w)) if linear else (lambda a, w: a @ w)
    q_in, kv_in = (context, x) if swap else (x, x if kv_from_x else context)
    split = lambda t: rearrange(t, f"b t ({order}) -> b h t d", h=n_heads)
    q, k, v = split(proj(q_in, w_q)), split(proj(kv_in, w_k)), split(proj(kv_in, w_v))
    mask = context_mask if use_mask else None
    if causal:
        c = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        mask = c if mask is None else mask & c
    s = q @ k.transpose(-2, -1) / {"head": math.sqrt(q.shape[-1]), "model": math.sqrt(x.shape[-1]), "none": 1.0}[scale]
    if mask is not None:
        s = s.masked_fill(~mask, NINF)
    out = rearrange(torch.nan_to_num(s.softmax(-1)) @ v, f"b h t d -> b t ({order})")
    return proj(out, w_o) if use_wo else out


def corrupt(tokens, vocab_size, mask_id, p=0.15, special_ids=(0, 1, 2, 3, 4, 5), generator=None, *, skip_special=True,
            split=(0.8, 0.1), labels="chosen", lo=None, fixed_p=None, in_place=False, ignore=IGNORE):
    p = fixed_p if fixed_p is not None else p
    lo = len(special_ids) if lo is None else lo
    special = torch.isin(tokens, torch.tensor(special_ids, device=tokens.device)) if skip_special else torch.zeros_like(tokens, dtype=torch.bool)
    chosen = (torch.rand(tokens.shape, generator=generator).to(tokens.device) < p) & ~special
    r = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    to_mask = chosen & (r < split[0])
    to_rand = chosen & (r >= split[0]) & (r < split[0] + split[1])
    inputs = tokens if in_place else tokens.clone()
    original = tokens.clone()
    inputs[to_mask] = mask_id
    inputs[to_rand] = torch.randint(lo, vocab_size, tokens.shape, generator=generator).to(tokens.device)[to_rand]
    if labels == "chosen":
        lab = torch.where(chosen, original, torch.full_like(tokens, ignore))
    elif labels == "all":
        lab = original.clone()
    elif labels == "masked_only":
        lab = torch.where(to_mask, original, torch.full_like(tokens, ignore))
    elif labels == "inputs":
        lab = torch.where(chosen, inputs, torch.full_like(tokens, ignore))
    return inputs, lab


def nll(logits, targets):
    return -F.log_softmax(logits, -1).gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)


def mlm_loss_ok(logits, labels):
    keep = labels != IGNORE
    if not keep.any():
        return logits.sum() * 0.0
    return nll(logits, labels)[keep].mean()


def clm_loss_ok(logits, tokens, pad_id=0):
    targets = tokens[:, 1:]
    keep = targets != pad_id
    if not keep.any():
        return logits.sum() * 0.0
    return nll(logits[:, :-1], targets)[keep].mean()


def shift_right_ok(targets, bos_id):
    return torch.cat([torch.full_like(targets[:, :1], bos_id), targets[:, :-1]], dim=1)


def seq2seq_loss_ok(logits, targets, pad_id=0):
    if not (targets != pad_id).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id)


def greedy(model, prompt, max_new_tokens, eos_id=2, pad_id=0, *, refeed=False, stop=True, pad=True, first_eos=False,
           use_cache=True, with_prompt=False):
    cache = model.new_cache() if use_cache else None
    seq = prompt
    logits = model(prompt, cache=cache)[:, -1]
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    out = []
    for _ in range(max_new_tokens):
        token = logits.argmax(-1)
        if pad:
            token = token.masked_fill(done, pad_id)
        out.append(token)
        done |= token == eos_id
        seq = torch.cat([seq, token[:, None]], dim=1)
        if first_eos and bool((token == eos_id).any()):
            break
        if stop and bool(done.all()):
            break
        new = seq if (refeed or not use_cache) else token[:, None]
        logits = model(new, cache=cache)[:, -1]
    new_tokens = torch.stack(out, dim=1)
    return torch.cat([prompt, new_tokens], 1) if with_prompt else new_tokens


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Fill in this function")


# ---------------------------------------------------------------------------------------------
# the reference (and a learner-style correct version) passes every check
# ---------------------------------------------------------------------------------------------
CORRECT = [
    (C.check_scaled_dot_product_attention, cl.scaled_dot_product_attention),
    (C.check_scaled_dot_product_attention, attn),
    (C.check_causal_mask, cl.causal_mask),
    (C.check_causal_mask, causal_ok),
    (C.check_padding_mask, cl.padding_mask),
    (C.check_padding_mask, padding_ok),
    (C.check_prefix_mask, cl.prefix_mask),
    (C.check_prefix_mask, prefix_ok),
    (C.check_split_heads, C.reference_split_heads),
    (C.check_split_heads, lambda x, h: x.view(x.shape[0], x.shape[1], h, -1).transpose(1, 2)),
    (C.check_merge_heads, C.reference_merge_heads),
    (C.check_merge_heads, lambda x: x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)),
    (C.check_cross_attention, C.reference_cross_attention),
    (C.check_cross_attention, cross),
    (C.check_mlm_corrupt, cl.mlm_corrupt),
    (C.check_mlm_corrupt, corrupt),
    (C.check_mlm_loss, cl.mlm_loss),
    (C.check_mlm_loss, mlm_loss_ok),
    (C.check_clm_loss, cl.clm_loss),
    (C.check_clm_loss, clm_loss_ok),
    (C.check_shift_right, cl.shift_right),
    (C.check_shift_right, shift_right_ok),
    (C.check_seq2seq_loss, cl.seq2seq_loss),
    (C.check_seq2seq_loss, seq2seq_loss_ok),
    (C.check_greedy_decode_with_cache, C.reference_greedy_decode_with_cache),
    (C.check_greedy_decode_with_cache, greedy),
]


def _id(check) -> str:
    return check.__name__.removeprefix("check_")


@pytest.mark.parametrize("check,fn", CORRECT, ids=[f"{_id(c)}-{i}" for i, (c, _) in enumerate(CORRECT)])
def test_correct_implementation_passes(check, fn, capsys):
    assert check(fn) is True
    out = capsys.readouterr().out
    assert out.startswith("✅ " + _id(check) + ": all ") and out.count("\n") == 1, out


# ---------------------------------------------------------------------------------------------
# each classic mistake is caught, with the right hint
# ---------------------------------------------------------------------------------------------
def _bad_mlm_random_specials(tokens, vocab_size, mask_id, p=0.15):
    return corrupt(tokens, vocab_size, mask_id, p, lo=0)


WRONG = [
    # attention from the formula
    ("sdpa", C.check_scaled_dot_product_attention, lambda q, k, v, m=None: attn(q, k, v, m, scale="none"), "√d_k"),
    ("sdpa", C.check_scaled_dot_product_attention, lambda q, k, v, m=None: attn(q, k, v, m, scale="d"), "instead of √d_k"),
    ("sdpa", C.check_scaled_dot_product_attention, lambda q, k, v, m=None: attn(q, k, v, m, axis=-2), "wrong axis"),
    ("sdpa", C.check_scaled_dot_product_attention, lambda q, k, v, m=None: attn(q, k, v, m, fill="after"), "after the softmax"),
    ("sdpa", C.check_scaled_dot_product_attention, lambda q, k, v, m=None: attn(q, k, v, m, fill="inverted"), "inverted"),
    ("sdpa", C.check_scaled_dot_product_attention, lambda q, k, v, m=None: attn(q, k, v, m, fill="zero"), "-inf"),
    ("sdpa", C.check_scaled_dot_product_attention, lambda q, k, v, m=None: attn(q, k, v, m, fix_nan=False), "NaN"),
    ("sdpa", C.check_scaled_dot_product_attention, lambda q, k, v, m=None: attn(q, k, v, m, fill="big"), "all masked"),
    ("sdpa", C.check_scaled_dot_product_attention, lambda q, k, v, m=None: attn(q, k, v, m, return_weights=True), "weights"),
    ("sdpa", C.check_scaled_dot_product_attention,
     lambda q, k, v, m=None: cl.scaled_dot_product_attention(q, k, v, m, return_weights=True), "output tensor (…, T_q, d_v) alone"),
    # masks
    ("causal", C.check_causal_mask, lambda t: torch.ones(t, t, dtype=torch.bool).tril(-1), "diagonal"),
    ("causal", C.check_causal_mask, lambda t: torch.ones(t, t, dtype=torch.bool).tril(1), "one future token"),
    ("causal", C.check_causal_mask, lambda t: torch.ones(t, t, dtype=torch.bool).triu(1), "inverted"),
    ("causal", C.check_causal_mask, lambda t: torch.ones(t, t, dtype=torch.bool).triu(), "transposed"),
    ("causal", C.check_causal_mask, lambda t: torch.ones(t, t, dtype=torch.bool), "encoder"),
    ("causal", C.check_causal_mask, lambda t: torch.ones(t, t).tril(), "boolean"),
    ("causal", C.check_causal_mask, lambda t: torch.zeros(t, t).masked_fill(~causal_ok(t), NINF), "additive"),
    ("padding", C.check_padding_mask, lambda tok, pad_id=0: (tok == pad_id)[:, None, None, :], "inverted"),
    ("padding", C.check_padding_mask, lambda tok, pad_id=0: tok != pad_id, "(B, 1, 1, T)"),
    ("padding", C.check_padding_mask, lambda tok, pad_id=0: (tok != pad_id)[:, None, :, None], "queries"),
    ("padding", C.check_padding_mask, lambda tok, pad_id=0: (tok != 0)[:, None, None, :], "pad_id"),
    ("prefix", C.check_prefix_mask, lambda t, p: causal_ok(t), "plain causal mask"),
    ("prefix", C.check_prefix_mask, lambda t, p: causal_ok(t) | (torch.arange(t) < p)[:, None], "keys"),
    ("prefix", C.check_prefix_mask, lambda t, p: causal_ok(t) | (torch.arange(t) <= p)[None, :], "off by one"),
    ("prefix", C.check_prefix_mask, lambda t, p: ~prefix_ok(t, p), "inverted"),
    ("prefix", C.check_prefix_mask, lambda t, p: torch.ones(t, t, dtype=torch.bool), "causal"),
    # heads
    ("split", C.check_split_heads, lambda x, h: rearrange(x, "b t (d h) -> b h t d", h=h), "(h d)"),
    ("split", C.check_split_heads, lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1), "transpose"),
    ("split", C.check_split_heads, lambda x, h: rearrange(x, "b t (h d) -> b t h d", h=h), "head axis"),
    ("split", C.check_split_heads, lambda x, h: rearrange(x, "b t (h d) -> b h t d", d=h), "n_heads is the number of heads"),
    ("merge", C.check_merge_heads, lambda x: rearrange(x, "b h t d -> b t (d h)"), "(h d)"),
    ("merge", C.check_merge_heads, lambda x: x.reshape(x.shape[0], x.shape[2], -1), "transpose"),
    # cross-attention
    ("cross", C.check_cross_attention, lambda *a: cross(*a, kv_from_x=True), "K and V"),
    ("cross", C.check_cross_attention, lambda *a: cross(*a, swap=True), "swapped"),
    ("cross", C.check_cross_attention, lambda *a: cross(*a, use_mask=False), "context_mask"),
    ("cross", C.check_cross_attention, lambda *a: cross(*a, causal=True), "not be causal"),
    ("cross", C.check_cross_attention, lambda *a: cross(*a, scale="none"), "√d_head"),
    ("cross", C.check_cross_attention, lambda *a: cross(*a, scale="model"), "√d_model"),
    ("cross", C.check_cross_attention, lambda *a: cross(*a, order="d h"), "(h d)"),
    ("cross", C.check_cross_attention, lambda *a: cross(*a, use_wo=False), "W_O"),
    ("cross", C.check_cross_attention, lambda *a: cross(*a, linear=True), "transposed"),
    # MLM
    ("mlm_corrupt", C.check_mlm_corrupt, lambda t, v, m, p=0.15: corrupt(t, v, m, p, skip_special=False), "special tokens"),
    ("mlm_corrupt", C.check_mlm_corrupt, lambda t, v, m, p=0.15: corrupt(t, v, m, p, split=(1.0, 0.0)), "80%"),
    ("mlm_corrupt", C.check_mlm_corrupt, lambda t, v, m, p=0.15: corrupt(t, v, m, p, split=(0.1, 0.1)), "80%"),
    ("mlm_corrupt", C.check_mlm_corrupt, lambda t, v, m, p=0.15, special_ids=(0, 1, 2, 3, 4, 5), generator=None:
     corrupt(t, v, m, p, special_ids, generator, fixed_p=0.15), "p argument is ignored"),
    ("mlm_corrupt", C.check_mlm_corrupt, lambda t, v, m, p=0.15: corrupt(t, v, m, p, labels="all"), "IGNORE (-100)"),
    ("mlm_corrupt", C.check_mlm_corrupt, lambda t, v, m, p=0.15: corrupt(t, v, m, p, ignore=0), "not 0"),
    ("mlm_corrupt", C.check_mlm_corrupt, lambda t, v, m, p=0.15: corrupt(t, v, m, p, labels="masked_only"), "10%"),
    ("mlm_corrupt", C.check_mlm_corrupt, lambda t, v, m, p=0.15: corrupt(t, v, m, p, labels="inputs"), "original token"),
    ("mlm_corrupt", C.check_mlm_corrupt, _bad_mlm_random_specials, "ordinary tokens"),
    ("mlm_corrupt", C.check_mlm_corrupt, lambda t, v, m, p=0.15: corrupt(t, v, m, p, in_place=True), "in place"),
    ("mlm_loss", C.check_mlm_loss, lambda lg, lb: nll(lg, lb.clamp(min=0)).mean(), "not masked"),
    ("mlm_loss", C.check_mlm_loss, lambda lg, lb: (nll(lg, lb) * (lb != IGNORE)).mean(), "number of masked positions"),
    ("mlm_loss", C.check_mlm_loss, lambda lg, lb: (nll(lg, lb) * (lb != IGNORE)).sum(), "mean"),
    ("mlm_loss", C.check_mlm_loss, lambda lg, lb: F.nll_loss(lg.flatten(0, 1), lb.flatten()), "log_softmax"),
    ("mlm_loss", C.check_mlm_loss, lambda lg, lb: F.nll_loss(lg.softmax(-1).log().flatten(0, 1), lb.flatten()), "log_softmax"),
    ("mlm_loss", C.check_mlm_loss, lambda lg, lb: F.cross_entropy(lg.flatten(0, 1), lb.flatten()), "not NaN"),
    ("mlm_loss", C.check_mlm_loss, lambda lg, lb: (nll(lg, lb) * (lb != IGNORE)).sum() / (lb != IGNORE).sum(), "not NaN"),
    # CLM
    ("clm_loss", C.check_clm_loss, lambda lg, tok, pad_id=0: F.cross_entropy(lg.flatten(0, 1), tok.flatten(), ignore_index=pad_id), "t+1"),
    ("clm_loss", C.check_clm_loss, lambda lg, tok, pad_id=0: F.cross_entropy(lg.flatten(0, 1), tok.flatten()), "t+1"),
    ("clm_loss", C.check_clm_loss, lambda lg, tok, pad_id=0: F.cross_entropy(lg[:, 1:].flatten(0, 1), tok[:, :-1].flatten(), ignore_index=pad_id), "wrong way"),
    ("clm_loss", C.check_clm_loss, lambda lg, tok, pad_id=0: F.cross_entropy(lg[:, :-1].flatten(0, 1), tok[:, 1:].flatten()), "padding is scored"),
    ("clm_loss", C.check_clm_loss, lambda lg, tok, pad_id=0: (nll(lg[:, :-1], tok[:, 1:]) * (tok[:, 1:] != 0)).sum(), "mean"),
    ("clm_loss", C.check_clm_loss,
     lambda lg, tok, pad_id=0: ((nll(lg[:, :-1], tok[:, 1:]) * (tok[:, 1:] != 0)).sum(1) / (tok[:, 1:] != 0).sum(1)).mean(), "per sequence"),
    # seq2seq
    ("shift_right", C.check_shift_right, lambda y, bos: y.clone(), "shift right"),
    ("shift_right", C.check_shift_right, lambda y, bos: torch.cat([torch.zeros_like(y[:, :1]), y[:, :-1]], 1), "BOS"),
    ("shift_right", C.check_shift_right, lambda y, bos: y[:, :-1], "BOS is missing"),
    ("shift_right", C.check_shift_right, lambda y, bos: torch.cat([torch.full_like(y[:, :1], bos), y], 1), "drop the last"),
    ("shift_right", C.check_shift_right, lambda y, bos: torch.cat([y[:, 1:], torch.zeros_like(y[:, :1])], 1), "left"),
    ("shift_right", C.check_shift_right, lambda y, bos: torch.cat([torch.ones_like(y[:, :1]), y[:, :-1]], 1), "bos_id"),
    ("seq2seq_loss", C.check_seq2seq_loss,
     lambda lg, y, pad_id=0: F.cross_entropy(lg[:, :-1].flatten(0, 1), y[:, 1:].flatten(), ignore_index=pad_id), "already aligned"),
    ("seq2seq_loss", C.check_seq2seq_loss, lambda lg, y, pad_id=0: F.cross_entropy(lg.flatten(0, 1), y.flatten()), "padding is scored"),
    ("seq2seq_loss", C.check_seq2seq_loss, lambda lg, y, pad_id=0: (nll(lg, y) * (y != 0)).sum(), "mean"),
    ("seq2seq_loss", C.check_seq2seq_loss,
     lambda lg, y, pad_id=0: F.cross_entropy(lg.flatten(0, 1), shift_right_ok(y, 1).flatten(), ignore_index=pad_id), "decoder input"),
    # greedy decoding with a KV cache
    ("greedy", C.check_greedy_decode_with_cache, lambda m, p, n, eos_id=2, pad_id=0: greedy(m, p, n, refeed=True), "newest token"),
    ("greedy", C.check_greedy_decode_with_cache, lambda m, p, n, eos_id=2, pad_id=0: greedy(m, p, n, stop=False, pad=False), "EOS"),
    ("greedy", C.check_greedy_decode_with_cache, lambda m, p, n, eos_id=2, pad_id=0: greedy(m, p, n, pad=False), "EOS"),
    ("greedy", C.check_greedy_decode_with_cache, lambda m, p, n, eos_id=2, pad_id=0: greedy(m, p, n, first_eos=True), "stopped when the first row"),
    ("greedy", C.check_greedy_decode_with_cache, lambda m, p, n, eos_id=2, pad_id=0: greedy(m, p, n, stop=False), "stop decoding"),
    ("greedy", C.check_greedy_decode_with_cache, lambda m, p, n, eos_id=2, pad_id=0: greedy(m, p, n, use_cache=False), "cache"),
    ("greedy", C.check_greedy_decode_with_cache, lambda m, p, n, eos_id=2, pad_id=0: greedy(m, p, n, with_prompt=True), "without the prompt"),
]


@pytest.mark.parametrize("check,wrong,hint", [w[1:] for w in WRONG], ids=[f"{w[0]}-{i}-{w[3]}" for i, w in enumerate(WRONG)])
def test_classic_mistake_is_caught_with_hint(check, wrong, hint, capsys):
    with pytest.raises(AssertionError) as info:
        check(wrong)
    message = str(info.value)
    assert hint in message, message
    assert "\n" not in message and message.startswith(_id(check)), message
    assert capsys.readouterr().out == ""  # a failure prints nothing: the error is the message


# ---------------------------------------------------------------------------------------------
# unfinished work, crashes and wrong shapes
# ---------------------------------------------------------------------------------------------
REGISTERED = sorted(C._core._CHECKS.items())  # every check of every lesson module, by the name it prints


@pytest.mark.parametrize("name,check", REGISTERED, ids=[n for n, _ in REGISTERED])
def test_not_implemented_is_reported_without_raising(name, check, capsys):
    assert check(not_implemented) is False
    out = capsys.readouterr().out
    assert out == f"⏳ {name}: not implemented yet — fill in the cell above and run it again.\n"


@pytest.mark.parametrize("name,check", REGISTERED, ids=[n for n, _ in REGISTERED])
def test_other_errors_become_one_sentence(name, check):
    def broken(*args, **kwargs):
        raise ValueError("something odd\nwith a second line")

    with pytest.raises(AssertionError) as info:
        check(broken)
    message = str(info.value)
    assert "ValueError: something odd" in message and "\n" not in message, message
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    "check,wrong,got,expected",
    [
        (C.check_scaled_dot_product_attention, lambda q, k, v, m=None: attn(q, k, v, m)[..., :-1], "(2, 2, 4, 5)", "(2, 2, 4, 6)"),
        (C.check_causal_mask, lambda t: torch.ones(t, t + 1, dtype=torch.bool).tril(), "(4, 5)", "(4, 4)"),
        (C.check_prefix_mask, lambda t, p: prefix_ok(t, p)[None], "(1, 6, 6)", "(6, 6)"),
        (C.check_split_heads, lambda x, h: split_ok(x, h)[:, :, :-1], "(3, 2, 4, 6)", "(3, 2, 5, 6)"),
        (C.check_cross_attention, lambda *a: cross(*a)[:, :, :8], "(2, 4, 8)", "(2, 4, 16)"),
        (C.check_shift_right, lambda y, bos: shift_right_ok(y, bos)[:1], "(1, 4)", "(3, 4)"),
        (C.check_clm_loss, lambda lg, tok, pad_id=0: nll(lg[:, :-1], tok[:, 1:]), "(3, 5)", "()"),
        (C.check_mlm_corrupt, lambda t, v, m, p=0.15: (t[:, :-1], t[:, :-1]), "(256, 47)", "(256, 48)"),
        (C.check_greedy_decode_with_cache, lambda m, p, n, eos_id=2, pad_id=0: greedy(m, p, n)[:, :-1], "(3, 7)", "(3, 8)"),
    ],
    ids=lambda v: _id(v) if callable(v) and getattr(v, "__name__", "").startswith("check_") else None,
)
def test_wrong_shape_names_both_shapes(check, wrong, got, expected):
    with pytest.raises(AssertionError) as info:
        check(wrong)
    message = str(info.value)
    assert got in message and expected in message and "\n" not in message, message


def test_returning_none_asks_for_return():
    with pytest.raises(AssertionError, match="forget the `return`"):
        C.check_causal_mask(lambda t: None)


def test_non_function_argument_is_explained():
    with pytest.raises(AssertionError, match="needs your function itself"):
        C.check_causal_mask(causal_ok(3))


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    C.check_cross_attention(cross)
    C.check_mlm_corrupt(corrupt)
    C.check_greedy_decode_with_cache(greedy)
    assert torch.equal(torch.get_rng_state(), before)


def test_reference_variants_are_consistent():
    """The library's own versions agree with the formula versions the checks diagnose against."""
    for case in C.attention._sdpa_cases():
        assert torch.allclose(cl.scaled_dot_product_attention(*case.args), C.attention._sdpa_formula(*case.args), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(2, 3, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    w = [torch.randn(8, 8, generator=g) for _ in range(4)]
    mask = cl.padding_mask(torch.tensor([[7, 7, 7, 0, 0], [7, 7, 7, 7, 7]]))
    assert torch.allclose(C.reference_cross_attention(x, ctx, *w, 2, mask), C.attention._cross_formula(x, ctx, *w, 2, mask), atol=1e-5)


def test_toy_decoder_cache_matches_no_cache_and_ends_with_eos():
    model = C.toy_decoder()
    prompt = torch.tensor([[7, 8, 9], [10, 11, 12]])
    with_cache = cl.generate(model, prompt, 12)
    assert torch.equal(with_cache, cl.generate(model, prompt, 12, use_cache=False))
    assert int(with_cache.min()) >= 0 and not bool(((with_cache > 0) & (with_cache < 6) & (with_cache != 2)).any())
    for case in C.clm._greedy_cases():
        assert case.args[0].dtype == torch.long


# ---------------------------------------------------------------------------------------------
# use_or_reference
# ---------------------------------------------------------------------------------------------
def test_use_or_reference_picks_the_learners_function_when_it_passes(capsys):
    def shift_right(targets, bos_id):
        return shift_right_ok(targets, bos_id)

    assert C.use_or_reference(shift_right, cl.shift_right) is shift_right and shift_right.owner == "your"
    assert capsys.readouterr().out == "→ shift_right: using yours (it passes its check).\n"


def test_use_or_reference_falls_back_when_not_implemented_or_wrong(capsys):
    def scaled_dot_product_attention(q, k, v, mask=None):
        raise NotImplementedError

    chosen = C.use_or_reference(scaled_dot_product_attention, cl.scaled_dot_product_attention)
    assert chosen.__wrapped__ is cl.scaled_dot_product_attention and chosen.owner == "the library's"
    out = capsys.readouterr().out
    assert "not implemented yet" in out and "__main__" not in out

    def causal_mask(t):
        return torch.ones(t, t, dtype=torch.bool)

    assert C.use_or_reference(causal_mask, cl.causal_mask).__wrapped__ is cl.causal_mask
    out = capsys.readouterr().out
    assert out == "→ causal_mask: using course_lib's version for now (yours does not pass its check yet).\n"


def test_use_or_reference_finds_the_check_from_either_name_or_name_argument(capsys):
    def my_decoder(model, prompt, n, eos_id=2, pad_id=0):
        return greedy(model, prompt, n, eos_id, pad_id)

    assert C.use_or_reference(my_decoder, C.reference_greedy_decode_with_cache) is my_decoder
    assert C.use_or_reference(lambda y, b: y, cl.shift_right, name="shift_right").__wrapped__ is cl.shift_right
    with pytest.raises(ValueError, match="no check named"):
        C.use_or_reference(lambda y: y, cl.shift_right, name="nope")


# ---------------------------------------------------------------------------------------------
# in a notebook: the sentence first and alone
# ---------------------------------------------------------------------------------------------
def test_a_failing_check_shows_its_sentence_alone_in_a_notebook(monkeypatch):
    """Executed in a real kernel (as in JupyterLab), a failing check's error output is its one sentence,
    without the ~25 lines of traceback through the check's machinery; full_tracebacks() brings them back."""
    import nbformat
    from nbclient import NotebookClient

    from course_lib.learner.checks._core import TRACEBACK_ENV

    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    nb = nbformat.v4.new_notebook()
    wrong = "checks.check_causal_mask(lambda t: torch.ones(t, t, dtype=torch.bool))"
    nb.cells = [nbformat.v4.new_code_cell("import torch\nfrom course_lib import checks"),
                nbformat.v4.new_code_cell(wrong),
                nbformat.v4.new_code_cell("checks.full_tracebacks()\n" + wrong)]
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    short, full = nb.cells[1].outputs, nb.cells[2].outputs
    assert [o.output_type for o in short] == ["error"] and short[0].ename == "CheckFailed"
    assert len(short[0].traceback) == 1, short[0].traceback
    line = short[0].traceback[0]
    assert "causal_mask: every key is visible" in line and "_core.py" not in line and "\n" not in line
    assert full[0].ename == "CheckFailed" and len(full[0].traceback) > 3
    assert "_core.py" in "".join(full[0].traceback)


def test_check_failed_renders_as_one_line_and_is_an_assertion_error():
    with pytest.raises(AssertionError) as info:
        C.check_causal_mask(lambda t: torch.ones(t, t, dtype=torch.bool))
    err = info.value
    assert isinstance(err, C.CheckFailed)
    assert err._render_traceback_() == [f"\x1b[0;31m✗\x1b[0m {err}"]
    C.full_tracebacks(True)
    try:
        assert not hasattr(err, "_render_traceback_")
    finally:
        C.full_tracebacks(None)


def test_the_fallback_never_calls_the_librarys_version_yours(capsys):
    """With nothing implemented the fallback says it uses course_lib's version (not '__main__'s'), and the
    returned function says whose it is, so a cell can print '{f.owner} formula'."""
    def kv_cache_bytes(*args, **kwargs):
        raise NotImplementedError

    kv = C.use_or_reference(kv_cache_bytes, lambda *a, **k: costs_kv(*a, **k), "kv_cache_bytes")
    out = capsys.readouterr().out
    assert "__main__" not in out and "course_lib's version" in out
    assert kv.owner == "the library's" and kv(9, 4, 16, 50) == costs_kv(9, 4, 16, 50)


def costs_kv(*args, **kwargs):
    return cl.costs.kv_cache_bytes(*args, **kwargs)
