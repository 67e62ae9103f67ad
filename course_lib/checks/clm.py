"""Checks for lesson 03: CLM loss and greedy decoding with a KV cache."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

import functools

from ..config import ModelConfig
from ..generation import generate
from ..losses import IGNORE
from ..losses import clm_loss as _ref_clm_loss
from ..models import DecoderOnly

from ._core import (_CHECKS, NINF, PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, SEP_ID, SPECIAL_IDS, _Case, _Fail, _NotImplementedYet, _Variant, _call, _clone, _diagnose, _fmt, _gen, _logits_case, _MEAN, _nll, _ok, _one_line, _padded_tokens, _pads_ignored, _pending, _randn, _run, _same, _shape, register)  # noqa: F401

__all__ = ["check_clm_loss", "check_greedy_decode_with_cache", "reference_greedy_decode_with_cache", "toy_decoder"]


def reference_greedy_decode_with_cache(model, prompt: Tensor, max_new_tokens: int, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> Tensor:
    """Greedy decoding with the KV cache: :func:`course_lib.generate` with ``temperature=0``."""
    return generate(model, prompt, max_new_tokens, eos_id=eos_id, pad_id=pad_id)


# --------------------------------------------------------------------------------------------
_SHIFT = "the targets are not shifted: the logits at position t predict the token at t+1, so compare logits[:, :-1] with tokens[:, 1:]."

_CLM_VARIANTS = [
    _Variant(lambda lg, tok, pad_id=0: F.cross_entropy(lg.flatten(0, 1), _pads_ignored(tok, pad_id).flatten(), ignore_index=IGNORE), _SHIFT),
    _Variant(lambda lg, tok, pad_id=0: F.cross_entropy(lg.flatten(0, 1), tok.flatten()), _SHIFT),
    _Variant(lambda lg, tok, pad_id=0: F.cross_entropy(lg[:, 1:].flatten(0, 1), _pads_ignored(tok[:, :-1], pad_id).flatten(), ignore_index=IGNORE),
             "the shift goes the wrong way: drop the *last* logit and the *first* token (logits[:, :-1] against tokens[:, 1:])."),
    _Variant(lambda lg, tok, pad_id=0: F.cross_entropy(lg[:, :-1].flatten(0, 1), tok[:, 1:].flatten()),
             "padding is scored: targets equal to pad_id must be ignored (set them to -100, or pass ignore_index=pad_id)."),
    _Variant(lambda lg, tok, pad_id=0: _nll(lg[:, :-1], _pads_ignored(tok[:, 1:], pad_id)).sum(), _MEAN),
    _Variant(lambda lg, tok, pad_id=0: (_nll(lg[:, :-1], _pads_ignored(tok[:, 1:], pad_id)).sum(1) / (tok[:, 1:] != pad_id).sum(1)).mean(),
             "the loss is averaged per sequence and then over the batch; average over all counted tokens at once, so every token weighs the same."),
    _Variant(lambda lg, tok, pad_id=0: _nll(lg[:, :-1], _pads_ignored(tok[:, 1:], pad_id)).mean(),
             "the loss is averaged over all positions, padding included; divide by the number of non-pad targets."),
]


@register("clm_loss")
def check_clm_loss(fn: Callable) -> bool:
    """Check ``fn(logits (B, T, V), tokens (B, T), pad_id=0) -> scalar``: next-token cross-entropy
    (logits at t against the token at t+1), padding ignored, mean over the counted targets."""
    g = _gen(707)
    V = 13
    tk = lambda lengths, t: _padded_tokens(g, lengths, t, vocab=V, bos=True, eos=True)
    cases = [
        _Case("a right-padded batch", (_logits_case(g, 3, 6, V), tk([6, 4, 2], 6))),
        _Case("no padding", (_logits_case(g, 2, 4, V), tk([4, 4], 4))),
        _Case("a batch of one, length two", (_logits_case(g, 1, 2, V), tk([2], 2))),
        _Case("large logits (numerical stability)", (_logits_case(g, 2, 5, V, scale=200.0), tk([5, 3], 5))),
    ]
    return _run("clm_loss", fn, cases, lambda lg, tok: _ref_clm_loss(lg, tok, pad_id=PAD_ID), _CLM_VARIANTS)


# --------------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------------
# 8. greedy decoding with a KV cache
# --------------------------------------------------------------------------------------------
class _ToyDecoder(DecoderOnly):
    """A seeded random :class:`DecoderOnly` with two rules on top of its logits, so that greedy
    decoding is varied but predictable: special ids other than EOS are never predicted, and EOS
    is predicted exactly after the token ``eos_after`` (and never elsewhere)."""

    def __init__(self, cfg: ModelConfig, eos_after: int) -> None:
        super().__init__(cfg)
        bias = torch.zeros(cfg.vocab_size)
        bias[[PAD_ID, BOS_ID, UNK_ID, MASK_ID, SEP_ID]] = -1e4
        self.register_buffer("logit_bias", bias, persistent=False)
        self.eos_after = eos_after

    def forward(self, tokens: Tensor, **kwargs) -> Tensor:
        logits = super().forward(tokens, **kwargs) + self.logit_bias
        eos = torch.where(tokens == self.eos_after, 1e4, -1e4).to(logits.dtype)
        return torch.cat([logits[..., :EOS_ID], eos[..., None], logits[..., EOS_ID + 1 :]], dim=-1)


@functools.lru_cache(maxsize=None)
def _toy_decoder_cached(seed: int, vocab_size: int) -> _ToyDecoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = ModelConfig(vocab_size=vocab_size, d_model=32, n_heads=4, n_layers=2, max_len=256)
        model = _ToyDecoder(cfg, eos_after=vocab_size - 1)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, 0.5)  # large weights: confident, varied predictions
            model.embed.pos.weight.normal_(0.0, 1.0)
    return model.eval()


def toy_decoder(seed: int = 3, vocab_size: int = 16) -> DecoderOnly:
    """A fresh copy of the small seeded random decoder the greedy-decoding check uses: special ids
    other than EOS are never predicted, and the last id (``vocab_size - 1``) is always followed by EOS."""
    import copy

    return copy.deepcopy(_toy_decoder_cached(seed, vocab_size))


class _Recorder:
    """Records each forward call of a model (a forward pre-hook): (cached positions or None, new tokens)."""

    def __init__(self, model) -> None:
        self.calls: list[tuple[int | None, int]] = []
        self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        tokens = args[0] if args else kwargs.get("tokens")
        cache = kwargs.get("cache", args[1] if len(args) > 1 else None)
        past = None
        if cache is not None:
            try:
                past = len(cache[0]["self"])
            except Exception:  # noqa: BLE001 - an unusual cache object: the model will complain itself
                past = -1
        self.calls.append((past, int(tokens.shape[1]) if isinstance(tokens, Tensor) and tokens.dim() == 2 else -1))

    def close(self) -> None:
        self._handle.remove()


def _greedy_rows(model, n_cand: int, p_len: int, steps: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Candidate prompts, the step of each row's first greedy EOS (``steps`` if none), and whether
    every greedy choice had a safe margin (so tiny float differences cannot flip the argmax)."""
    g = _gen(seed)
    prompts = torch.randint(len(SPECIAL_IDS), model.cfg.vocab_size, (n_cand, p_len), generator=g)
    out = generate(model, prompts, steps, eos_id=None)  # no early stop: all rows have `steps` tokens
    is_eos = out == EOS_ID
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full((n_cand,), steps))
    with torch.no_grad():
        logits = model(torch.cat([prompts, out], 1))[:, p_len - 1 : p_len - 1 + steps]
    top2 = logits.topk(2, dim=-1).values
    margin = top2[..., 0] - top2[..., 1]
    upto = torch.arange(steps)[None, :] <= first[:, None]
    safe = (margin.masked_fill(~upto, float("inf")) > 1e-2).all(1)
    return prompts, first, safe


@functools.lru_cache(maxsize=None)
def _greedy_cases() -> tuple[_Case, ...]:
    model = _toy_decoder_cached(3, 16)

    def pick(p_len, steps, seed, want):  # want: list of predicates on the first-EOS step
        prompts, first, safe = _greedy_rows(model, 96, p_len, steps, seed)
        rows, used = [], set()
        for pred in want:
            for i in range(prompts.shape[0]):
                if i not in used and bool(safe[i]) and pred(int(first[i])):
                    rows.append(i)
                    used.add(i)
                    break
            else:  # pragma: no cover - only if the toy model changed
                raise RuntimeError("could not build the greedy-decoding cases; the toy decoder changed.")
        return prompts[rows]

    no_eos = lambda f: f >= 8
    return (
        _Case("3 prompts of length 4, 8 new tokens, no EOS", (pick(4, 8, 11, [no_eos] * 3), 8)),
        _Case("a batch of one with a prompt of length one", (pick(1, 6, 12, [lambda f: f >= 6]), 6)),
        _Case("max_new_tokens=1", (pick(3, 1, 13, [lambda f: True] * 2), 1)),
        _Case("one row emits EOS early and must be padded after it", (pick(4, 8, 14, [no_eos, lambda f: 2 <= f <= 6, no_eos]), 8)),
        _Case("every row emits EOS, so decoding stops early", (pick(3, 10, 15, [lambda f: 1 <= f <= 7, lambda f: 1 <= f <= 7]), 10)),
    )


@register("greedy_decode_with_cache")
def check_greedy_decode_with_cache(fn: Callable, model=None) -> bool:
    """Check ``fn(model, prompt (B, P), max_new_tokens, eos_id=2, pad_id=0) -> new tokens (B, <= N)``:
    greedy decoding that prefills the prompt into a KV cache, then feeds one token per step, pads
    rows that emitted EOS and stops once every row has. Must equal :func:`course_lib.generate`.
    ``model`` defaults to the check's own seeded toy decoder (see :func:`toy_decoder`)."""
    name = "greedy_decode_with_cache"
    if not callable(fn):
        raise AssertionError(f"check_{name} needs your function itself, e.g. check_{name}({name}); got a {type(fn).__name__}.")
    model = _toy_decoder_cached(3, 16) if model is None else model
    cases = _greedy_cases()
    try:
        used_cache, n_calls = False, 0
        for case in cases:
            prompt, n = case.args
            expected = generate(model, prompt, n, eos_id=EOS_ID, pad_id=PAD_ID)
            rec = _Recorder(model)
            try:
                got = _call(name, fn, _Case(case.name, (model, prompt, n)))
            finally:
                rec.close()
            where = f"(seen on the case '{case.name}')"
            refed = any(past is not None and past > 0 and t > 1 for past, t in rec.calls)
            used_cache = used_cache or any(past is not None for past, _ in rec.calls)
            n_calls += len(rec.calls)
            if isinstance(got, Tensor) and _same(got, expected):
                continue
            if refed:
                raise _Fail(
                    f"{name}: after the prefill, feed only the newest token to the model; re-feeding the whole sequence "
                    f"into the cache stores its keys and values again (duplicated positions) {where}."
                )
            if not isinstance(got, Tensor):
                raise _Fail(f"{name} returned {'None' if got is None else 'a ' + type(got).__name__} {where}; return the new tokens as a LongTensor (B, number of new tokens).")
            if got.dim() != 2 or got.shape[0] != expected.shape[0]:
                raise _Fail(f"{name} returned shape {_fmt(_shape(got))} but the expected shape is {_fmt(_shape(expected))} {where}.")
            P = prompt.shape[1]
            if got.shape[1] == P + expected.shape[1] and torch.equal(got[:, P:].long(), expected):
                raise _Fail(f"{name}: return only the new tokens (B, ≤ max_new_tokens), without the prompt {where}.")
            no_stop = generate(model, prompt, n, eos_id=None)
            L = got.shape[1]
            eos_matters = not torch.equal(no_stop, expected)
            if L < expected.shape[1] and torch.equal(got.long(), expected[:, :L]) and bool((got == EOS_ID).any()):
                raise _Fail(f"{name} stopped when the first row emitted EOS; keep going until every row has emitted EOS (pad the finished ones) {where}.")
            if eos_matters and L <= n and torch.equal(got.long(), no_stop[:, :L]):
                raise _Fail(
                    f"{name}: a row that emitted EOS must be padded with pad_id from then on, and decoding stops once every "
                    f"row has emitted EOS {where}."
                )
            E = expected.shape[1]
            if L > E and torch.equal(got[:, :E].long(), expected) and bool((got[:, E:] == PAD_ID).all()):
                raise _Fail(f"{name}: once every row has emitted EOS, stop decoding instead of adding more padding {where}.")
            if got.shape != expected.shape:
                raise _Fail(f"{name} returned shape {_fmt(_shape(got))} but the expected shape is {_fmt(_shape(expected))} {where}.")
            if got.is_floating_point():
                raise _Fail(f"{name} returned dtype {got.dtype}; token ids are integers (use argmax, which returns torch.long) {where}.")
            bad = int((got.long() != expected).any(0).nonzero()[0])
            raise _Fail(
                f"{name} differs from course_lib.generate from new token {bad} on (case '{case.name}'); the first new token comes from "
                "the logits at the prompt's last position, and each next one from the logits of the token just fed."
            )
        if n_calls and not used_cache:  # (calls through model.forward are not seen: no verdict then)
            raise _Fail(f"{name} gives the right tokens but never passes a KV cache; create one with model.new_cache() and call model(new_tokens, cache=cache).")
    except _NotImplementedYet:
        return _pending(name)
    except _Fail as e:
        raise AssertionError(str(e)) from None
    return _ok(name, len(cases))


