"""Checks for lesson 05 (the translator).

Same conventions as the rest of :mod:`course_lib.learner.checks`: each ``check_<name>(fn)`` runs the learner's function
against the reference on seeded cases and

* prints one line ``✅ <name>: all N cases match.`` and returns ``True`` on success;
* prints ``⏳ <name>: not implemented yet …`` and returns ``False`` (without raising) while the
  function still raises ``NotImplementedError``;
* raises ``AssertionError`` with ONE sentence naming the likely mistake otherwise. The mistake is
  found by comparing the learner's answer with known-wrong variants of the reference (target not
  shifted right, loss mask covering the source, beam scores not accumulated, BLEU without the
  brevity penalty, ...).

The signatures the checks expect (the practice notebook states them too)::

    collate_encdec(batch) -> {"src": (B, S), "tgt_in": (B, T), "tgt_out": (B, T)}
    collate_decoder(batch) -> {"tokens": (B, L), "loss_mask": bool (B, L), "prefix_len": (B,)}
        batch = [(source ids, target ids), ...] without special tokens; PAD 0, BOS 1, EOS 2, SEP 5
    beam_step(scores (B, K), logp (B*K, V)) -> (new_scores (B, K), beam (B, K), token (B, K))
        best first, as torch.topk returns them
    corpus_bleu(hyps, refs, max_n=4) -> float in [0, 100]
        whitespace tokens, one reference per hypothesis, no smoothing
"""
from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ._core import (Case, Fail, Variant, constant_argument_probe, device_property, number_hint_probe, register, run_check, same,
                    use_or_reference)

_Case, _Fail, _Variant = Case, Fail, Variant
from ...generation import beam_step as reference_beam_step  # the library's step, as beam_search uses it
from ...losses import shift_right
from ...tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_ID, pad_batch
from ...lessons.translate import collate_decoder as _ref_collate_decoder
from ...lessons.translate import collate_encdec as _ref_collate_encdec

__all__ = [
    "check_collate_encdec",
    "check_collate_decoder",
    "check_beam_step",
    "check_bleu",
    "use_or_reference",
    "reference_beam_step",
    "reference_corpus_bleu",
    "bleu_statistics",
    "check_matched_decoder_layers",
    "reference_matched_decoder_layers",
]


# --------------------------------------------------------------------------------------------
# references that the library has no function of the same shape for
# --------------------------------------------------------------------------------------------
def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_statistics(hyps: Sequence[str], refs: Sequence[str], max_n: int = 4) -> dict[str, Any]:
    """Corpus counts behind BLEU: clipped n-gram matches and totals per order, hypothesis and
    reference lengths (whitespace tokens)."""
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for h, r in zip(hyps, refs):
        ht, rt = h.split(), r.split()
        hyp_len, ref_len = hyp_len + len(ht), ref_len + len(rt)
        for n in range(1, max_n + 1):
            hc, rc = _ngrams(ht, n), _ngrams(rt, n)
            matches[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            totals[n - 1] += sum(hc.values())
    return {"matches": matches, "totals": totals, "hyp_len": hyp_len, "ref_len": ref_len}


def _bleu_from(stats: dict, *, bp: str = "ok", mean: str = "geometric", scale: float = 100.0) -> float:
    precisions = [m / t if t else 0.0 for m, t in zip(stats["matches"], stats["totals"])]
    if mean == "arithmetic":
        score = sum(precisions) / len(precisions)
    else:
        if min(precisions) == 0.0:
            return 0.0
        score = math.exp(sum(math.log(p) for p in precisions) / len(precisions))
    c, r = stats["hyp_len"], stats["ref_len"]
    if bp == "ok":
        score *= 1.0 if c > r else math.exp(1 - r / c) if c else 0.0
    elif bp == "inverted":
        score *= 1.0 if c > r else math.exp(1 - c / r)
    elif bp == "always":
        score *= math.exp(1 - r / c) if c else 0.0
    return scale * score


def reference_corpus_bleu(hyps: Sequence[str], refs: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU (0-100) by hand, the way sacrebleu computes it without smoothing:

        BLEU = BP · exp( (1/N) Σ_n log p_n ),   p_n = Σ clipped n-gram matches / Σ hypothesis n-grams
        BP   = 1 if c > r else exp(1 - r/c)     (c, r: total hypothesis / reference length)

    Counts are pooled over the whole corpus before dividing; a p_n of 0 gives BLEU 0. Equal to
    ``sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", smooth_method="none").score``.
    """
    return _bleu_from(bleu_statistics(hyps, refs, max_n))


# --------------------------------------------------------------------------------------------
# machinery (the shared run_check, with a shape check that explains dict / tuple results)
# --------------------------------------------------------------------------------------------
_same = same


def _run(name: str, fn: Callable, cases: Sequence[Case], reference: Callable, variants: Sequence[Variant],
         shape_check: Callable[[Any, Any, Case], str | None], **kw) -> bool:
    return run_check(name, fn, cases, reference, variants, shape_check=shape_check or (lambda *a: None), **kw)


def _dict_shape_check(name: str, keys: Sequence[str]):
    def check(got, expected, case):
        if not isinstance(got, dict):
            return f"{name} returned a {type(got).__name__} on the case '{case.name}' but should return a dict with the keys {list(keys)}."
        missing = [k for k in keys if k not in got]
        if missing:
            return f"{name} returned a dict without the key(s) {missing} on the case '{case.name}'; return {list(keys)}."
        for k in keys:
            g, e = got[k], expected[k]
            if not isinstance(g, Tensor):
                return f"{name}: '{k}' is a {type(g).__name__} on the case '{case.name}' but should be a torch.Tensor of shape {tuple(e.shape)}."
            if k == "tgt_out" and g.dim() == 2 and tuple(g.shape) == (e.shape[0], e.shape[1] - 1):
                return f"{name}: 'tgt_out' is one token short on the case '{case.name}': EOS is missing; append EOS (id 2) to every target, tgt_out = target + EOS."
            if tuple(g.shape) != tuple(e.shape):
                if g.dim() == 2 and e.dim() == 2 and g.shape[0] == e.shape[0] and abs(g.shape[1] - e.shape[1]) == 1:
                    rows = lambda t: [[x for x in r if x != PAD_ID] for r in t.tolist()]  # noqa: E731
                    gr, er = rows(g), rows(e)
                    if all(len(a) == len(b) + 1 for a, b in zip(gr, er)):
                        end = "start" if all(a[1:] == b for a, b in zip(gr, er)) else "end" if all(a[:-1] == b for a, b in zip(gr, er)) else None
                        if end:
                            tok = gr[0][0] if end == "start" else gr[0][-1]
                            return f"{name}: '{k}' has one token too many in every row — an extra id {tok} at the {end} (seen on the case '{case.name}')."
                    if all(len(a) + 1 == len(b) for a, b in zip(gr, er)):
                        end = "first" if all(b[1:] == a for a, b in zip(gr, er)) else "last" if all(b[:-1] == a for a, b in zip(gr, er)) else None
                        if end:
                            return f"{name}: '{k}' is one token short in every row — the {end} token (id {er[0][0] if end == 'first' else er[0][-1]} in row 0) is missing (seen on the case '{case.name}')."
                        lost = {tuple((Counter(b) - Counter(a)).elements()) for a, b in zip(gr, er)}
                        if len(lost) == 1 and len(next(iter(lost))) == 1:
                            tok = next(iter(lost))[0]
                            what = {SEP_ID: "<sep>", EOS_ID: "EOS", BOS_ID: "BOS"}.get(tok, f"id {tok}")
                            return (f"{name}: '{k}' lacks {what} (id {tok}) in every row: expected {er[0]}, got {gr[0]} in row 0 "
                                    f"(seen on the case '{case.name}').")
                    if all(len(a) == len(b) + 1 for a, b in zip(gr, er)):
                        extra = {tuple((Counter(a) - Counter(b)).elements()) for a, b in zip(gr, er)}
                        if len(extra) == 1 and len(next(iter(extra))) == 1:
                            tok = next(iter(extra))[0]
                            return (f"{name}: '{k}' has an extra id {tok} in every row: expected {er[0]}, got {gr[0]} in row 0 "
                                    f"(seen on the case '{case.name}').")
                return f"{name}: '{k}' has shape {tuple(g.shape)} but should have shape {tuple(e.shape)} on the case '{case.name}' (pad every row to the longest one)."
            if e.dtype == torch.bool and g.dtype != torch.bool and g.shape == e.shape and torch.equal(g != 0, e):
                return f"{name}: '{k}' holds the right positions but has dtype {g.dtype}; make it a torch.bool tensor (e.g. with a comparison)."
            if not e.is_floating_point() and g.shape == e.shape and e.dtype != torch.bool:
                diff = g != e
                vals = g[diff].unique()
                if bool(diff.any()) and bool((e[diff] == PAD_ID).all()) and vals.numel() == 1:
                    return f"{name}: '{k}' is padded with {int(vals)} instead of PAD_ID = {PAD_ID} on the case '{case.name}'."
            if not _same(g, e):
                for k2 in keys:
                    if k2 != k and isinstance(got.get(k2), Tensor) and _same(g, expected[k2]) and not _same(e, expected[k2]):
                        return f"{name}: '{k}' holds what '{k2}' should hold — the two are swapped (seen on the case '{case.name}')."
                if k == "prefix_len" and isinstance(got.get("tokens"), Tensor):
                    whole = (got["tokens"] != PAD_ID).sum(-1)
                    covers = " covers the whole sequence;" if g.shape == whole.shape and torch.equal(g.long(), whole.long()) else ""
                    return (f"{name}: prefix_len{covers} should be len(source) + 1 per pair — the source and <sep>, the part every "
                            f"position may see — expected {e.tolist()}, got {g.tolist()} (seen on the case '{case.name}').")
                if g.dim() == 2:
                    rows = [(gr, er) for gr, er in zip(g.tolist(), e.tolist()) if gr != er]
                    real = lambda r: [x for x in r if x != PAD_ID]  # noqa: E731
                    if rows and all(real(gr) == real(er) for gr, er in rows):
                        return (f"{name}: '{k}' is padded at the wrong end — row {rows[0][0]} should be {rows[0][1]}: keep each "
                                f"sequence at the start of its row and pad at the end (right) (seen on the case '{case.name}').")
                    if rows and all(sorted(real(gr)) == sorted(real(er)) for gr, er in rows):
                        sep = " — look where <sep> (id 5) goes: right after the source" if any(SEP_ID in er for _, er in rows) else ""
                        return (f"{name}: '{k}' has the right tokens in the wrong order{sep}: expected {rows[0][1]}, got {rows[0][0]} "
                                f"(seen on the case '{case.name}').")
                return f"{name}: '{k}' differs from the reference on the case '{case.name}' (expected {e.tolist()}, got {g.tolist()})."
        return None
    return check


def _rand_batch(rng: random.Random, lengths: Sequence[tuple[int, int]], vocab: int = 30) -> list[tuple[list[int], list[int]]]:
    """Sentence pairs of ordinary ids (>= 6) with the given (source, target) lengths."""
    word = lambda: rng.randrange(6, vocab)
    return [([word() for _ in range(s)], [word() for _ in range(t)]) for s, t in lengths]


# --------------------------------------------------------------------------------------------
# 1. the encoder-decoder batch
# --------------------------------------------------------------------------------------------
def _encdec_variant(batch, *, tgt_in="ok", tgt_out="ok", src="ok"):
    src_t = {"ok": lambda: pad_batch([s for s, _ in batch]),
             "eos": lambda: pad_batch([s + [EOS_ID] for s, _ in batch]),
             "bos_eos": lambda: pad_batch([[BOS_ID] + s + [EOS_ID] for s, _ in batch])}[src]()
    out_rows = [t + [EOS_ID] for _, t in batch] if tgt_out == "ok" else [list(t) for _, t in batch]
    if tgt_out == "bos":
        out_rows = [[BOS_ID] + t + [EOS_ID] for _, t in batch]
    out = pad_batch(out_rows)
    if tgt_in == "ok":
        inp = shift_right(out, BOS_ID)
    elif tgt_in == "copy":
        inp = out.clone()
    elif tgt_in == "no_bos":
        inp = pad_batch([t for _, t in batch])
    elif tgt_in == "pad_first":
        inp = shift_right(out, PAD_ID)
    elif tgt_in == "bos_eos":
        inp = pad_batch([[BOS_ID] + t + [EOS_ID] for _, t in batch])
    elif tgt_in == "shift_left":
        inp = pad_batch([t[1:] + [EOS_ID] for _, t in batch])
    return {"src": src_t, "tgt_in": inp, "tgt_out": out}


_ENCDEC_VARIANTS = [
    _Variant(lambda b: _encdec_variant(b, tgt_in="copy"),
             "tgt_in equals tgt_out: the target is not shifted right, so the decoder would see the very token it must predict; tgt_in is BOS followed by the target (tgt_out without its last token)"),
    _Variant(lambda b: _encdec_variant(b, tgt_in="no_bos"),
             "BOS is missing: tgt_in must start with BOS (id 1) and then hold the target shifted one place to the right"),
    _Variant(lambda b: _encdec_variant(b, tgt_in="pad_first"),
             "tgt_in starts with PAD instead of BOS: the first decoder input must be BOS (id 1)"),
    _Variant(lambda b: _encdec_variant(b, tgt_in="bos_eos"),
             "tgt_in has one token too many: it is BOS + target (same length as tgt_out); EOS belongs only to tgt_out, as the last thing to predict"),
    _Variant(lambda b: _encdec_variant(b, tgt_in="shift_left"),
             "the target is shifted the wrong way: tgt_in must be BOS + target (shifted right), so that position t predicts tgt_out[t] from the tokens before it"),
    _Variant(lambda b: _encdec_variant(b, tgt_out="no_eos", tgt_in="no_bos"),
             "EOS is missing from tgt_out and BOS from tgt_in: tgt_out = target + EOS (so the model learns to stop) and tgt_in = BOS + target"),
    _Variant(lambda b: _encdec_variant(b, tgt_out="no_eos"),
             "EOS is missing from tgt_out: append EOS (id 2) to every target so the model learns when to stop"),
    _Variant(lambda b: _encdec_variant(b, tgt_out="bos"),
             "tgt_out starts with BOS: BOS is only the decoder's first input, never a token to predict; tgt_out = target + EOS"),
    _Variant(lambda b: _encdec_variant(b, src="eos"),
             "src has an EOS appended: in this course the source is just its ids, right-padded (the encoder sees the whole sentence anyway)"),
    _Variant(lambda b: _encdec_variant(b, src="bos_eos"),
             "src has BOS and EOS added: in this course the source is just its ids, right-padded"),
    _Variant(lambda b: _encdec_variant([(t, s) for s, t in b]),
             "source and target are swapped: each pair is (source ids, target ids) — src holds the first, tgt_in and tgt_out are made from the second"),
    _Variant(lambda b: _encdec_variant(b[:1]),
             "only the first pair made it into the batch: build every row from every pair of the list (one row per pair)"),
    _Variant(lambda b: _encdec_variant(b[-1:]),
             "only the last pair made it into the batch (a variable overwritten in the loop?): build one row per pair"),
]


def _encdec_cases() -> list[_Case]:
    rng = random.Random(501)
    return [
        _Case("two pairs, different lengths", (_rand_batch(rng, [(4, 3), (2, 5)]),)),
        _Case("one pair", (_rand_batch(rng, [(3, 3)]),)),
        _Case("three pairs with a one-word target", (_rand_batch(rng, [(5, 1), (1, 4), (3, 2)]),)),
        _Case("four pairs of equal length", (_rand_batch(rng, [(3, 3)] * 4),)),
    ]


def _dont_care(out):
    """``tgt_in`` where ``tgt_out`` is padding never matters (see :func:`_ignore_tgt_in_after_eos`)."""
    if isinstance(out, dict) and all(isinstance(out.get(k), Tensor) for k in ("tgt_in", "tgt_out")) \
            and out["tgt_in"].shape == out["tgt_out"].shape:
        out = {**out, "tgt_in": out["tgt_in"].masked_fill(out["tgt_out"] == PAD_ID, PAD_ID)}
    return out


def _ignore_tgt_in_after_eos(fn: Callable) -> Callable:
    """``tgt_in`` at positions where ``tgt_out`` is padding never matters (the loss ignores them and
    the causal mask hides them from earlier positions), so ``shift_right(tgt_out)``, which puts EOS
    there, is as right as ``BOS + target`` padded with PAD. Compare them as PAD."""

    def wrapped(batch):
        out = fn(batch)
        if isinstance(out, dict) and all(isinstance(out.get(k), Tensor) for k in ("tgt_in", "tgt_out")) \
                and out["tgt_in"].shape == out["tgt_out"].shape:
            out = {**out, "tgt_in": out["tgt_in"].masked_fill(out["tgt_out"] == PAD_ID, PAD_ID)}
        return out

    return wrapped


@register("collate_encdec")
def check_collate_encdec(fn: Callable) -> bool:
    """Check ``fn(batch) -> {"src", "tgt_in", "tgt_out"}`` (source padded; target + EOS; BOS + target)."""
    return _run("collate_encdec", fn, _encdec_cases(), _ref_collate_encdec, _ENCDEC_VARIANTS,
                _dict_shape_check("collate_encdec", ("src", "tgt_in", "tgt_out")), transform=_dont_care,
                arg_names=("batch",), output={"src": "ids", "tgt_in": "ids", "tgt_out": "ids"})


# --------------------------------------------------------------------------------------------
# 2. the decoder-only batch
# --------------------------------------------------------------------------------------------
def _decoder_variant(batch, *, mask="ok", seq="ok", prefix="ok"):
    make = {"ok": lambda s, t: s + [SEP_ID] + t + [EOS_ID], "no_sep": lambda s, t: s + t + [EOS_ID],
            "no_eos": lambda s, t: s + [SEP_ID] + t}[seq]
    tokens = pad_batch([make(s, t) for s, t in batch])
    loss_mask = torch.zeros_like(tokens, dtype=torch.bool)
    for i, (s, t) in enumerate(batch):
        n = len(make(s, t))
        start = len(s) + (seq != "no_sep")
        lo, hi = {"ok": (start, n), "all": (0, n), "with_sep": (start - 1, n), "no_eos": (start, n - 1), "early": (start - 1, n - 1),
                  "late": (start + 1, n), "pad_too": (start, tokens.shape[1]), "source": (0, len(s))}[mask]
        loss_mask[i, lo:hi] = True
    prefix_len = torch.tensor([len(s) + (1 if prefix == "ok" else 0) for s, _ in batch])
    return {"tokens": tokens, "loss_mask": loss_mask, "prefix_len": prefix_len}


_DECODER_VARIANTS = [
    _Variant(lambda b: _decoder_variant(b, mask="all"),
             "the loss mask covers the source too: the model would be trained to predict the English sentence it is given; mark only the target tokens and EOS"),
    _Variant(lambda b: _decoder_variant(b, mask="source"),
             "the loss mask marks the source instead of the target: mark the target tokens and the final EOS, the part the model must produce"),
    _Variant(lambda b: _decoder_variant(b, mask="with_sep"),
             "the loss mask includes <sep>: it is part of the prompt (given, not predicted); start the mask at the first target token, index len(source) + 1"),
    _Variant(lambda b: _decoder_variant(b, mask="early"),
             "the loss mask is shifted one place left (it marks <sep> … the last target word, the positions whose logits predict the target); here loss_mask marks the target *tokens* themselves and EOS, and clm_loss does the shift"),
    _Variant(lambda b: _decoder_variant(b, mask="late"),
             "the loss mask starts one token late: the first target word, at index len(source) + 1, must be predicted too"),
    _Variant(lambda b: _decoder_variant(b, mask="no_eos"),
             "EOS is not in the loss mask: without it the model never learns when to stop; mark the target tokens and EOS"),
    _Variant(lambda b: _decoder_variant(b, mask="pad_too"),
             "the loss mask covers the padding after EOS: mark only the target tokens and EOS"),
    _Variant(lambda b: _decoder_variant(b, seq="no_sep"),
             "<sep> (id 5) is missing between source and target: the sequence is source <sep> target <eos>"),
    _Variant(lambda b: _decoder_variant(b, seq="no_eos"),
             "EOS (id 2) is missing after the target: the sequence is source <sep> target <eos>"),
    _Variant(lambda b: _decoder_variant(b, prefix="no_sep"),
             "prefix_len is one short: the prefix-LM's bidirectional part is the source AND <sep>, so prefix_len = len(source) + 1"),
    _Variant(lambda b: _decoder_variant(b, seq="no_sep", prefix="no_sep"),
             "<sep> (id 5) is missing between source and target: the sequence is source <sep> target <eos>, and prefix_len = len(source) + 1 counts it"),
    _Variant(lambda b: _decoder_variant([(t, s) for s, t in b]),
             "source and target are swapped: each pair is (source ids, target ids), and the sequence is source <sep> target <eos>"),
    _Variant(lambda b: _decoder_variant(b[:1]),
             "only the first pair made it into the batch: build one row per pair of the list"),
    _Variant(lambda b: _decoder_variant(b[-1:]),
             "only the last pair made it into the batch (a variable overwritten in the loop?): build one row per pair"),
]


@register("collate_decoder")
def check_collate_decoder(fn: Callable) -> bool:
    """Check ``fn(batch) -> {"tokens", "loss_mask", "prefix_len"}`` for ``source <sep> target <eos>``."""
    return _run("collate_decoder", fn, _encdec_cases(), _ref_collate_decoder, _DECODER_VARIANTS,
                _dict_shape_check("collate_decoder", ("tokens", "loss_mask", "prefix_len")),
                arg_names=("batch",), output={"tokens": "ids", "loss_mask": "mask", "prefix_len": "ids"})


# --------------------------------------------------------------------------------------------
# 3. one step of beam search
# --------------------------------------------------------------------------------------------
def _beam_variant(scores, logp, *, add=True, index="ok", per_example=True):
    B, K = scores.shape
    V = logp.shape[-1]
    total = (scores.reshape(B * K, 1) + logp) if add == True else logp if add == False else \
        scores.reshape(B * K, 1) + logp.exp() if add == "prob" else scores.T.reshape(B * K, 1) + logp if add == "transposed" else \
        (scores[:, :, None] + logp.view(K, B, V).transpose(0, 1)).reshape(B * K, V) if add == "kb" else \
        scores.reshape(B * K, 1) * logp  # noqa: E712
    if per_example:
        new, flat = total.reshape(B, K * V).topk(K, dim=-1)
    else:
        new, flat = total.reshape(-1).topk(B * K)
        new, flat = new.reshape(B, K), flat.reshape(B, K)
    beam, token = {"ok": (flat // V, flat % V), "mod": (flat % K, flat % V), "mod_v": (flat % V, flat // V),
                   "div_k": (flat // K, flat % K)}[index]
    return new, beam, token


def _beam_one_row(scores, logp):
    B, K = scores.shape
    V = logp.shape[-1]
    new, flat = (scores.reshape(B * K, 1) + logp).reshape(1, -1).topk(K, dim=-1)
    return new, flat // V, flat % V


def _beam_lowest(scores, logp):
    B, K = scores.shape
    V = logp.shape[-1]
    new, flat = (scores.reshape(B * K, 1) + logp).reshape(B, K * V).topk(K, dim=-1, largest=False)
    return new, flat // V, flat % V


def _beam_per_beam(scores, logp):
    B, K = scores.shape
    new, tok = (scores.reshape(B * K, 1) + logp).max(-1)
    new, order = new.reshape(B, K).sort(-1, descending=True)
    return new, order, tok.reshape(B, K).gather(1, order)


_BEAM_VARIANTS = [
    _Variant(lambda s, lp: _beam_variant(s, lp, add="prob"),
             "probabilities (logp.exp()) are added to the scores; beam scores are sums of log-probabilities, scores[b, k] + logp[b*K + k, v]"),
    _Variant(lambda s, lp: (lambda n, b, t: (s.gather(1, b), b, t))(*_beam_variant(s, lp)),
             "the returned scores are the old beam scores; return the new totals of the chosen candidates, scores[b, k] + logp[b*K + k, v] (the topk values)"),
    _Variant(lambda s, lp: _beam_variant(s, lp, add="kb"),
             "each beam is paired with another beam's log-probabilities: logp.view(K, B, V) mixes the inputs; row b*K + k of logp belongs to scores[b, k], so use logp.view(B, K, V)"),
    _Variant(lambda s, lp: _beam_variant(s, lp, add="transposed"),
             "each beam is paired with another beam's score: scores.T.reshape(-1, 1) mixes the inputs; row b*K + k of logp belongs to scores[b, k], so use scores.reshape(B*K, 1)"),
    _Variant(lambda s, lp: (lambda n, b, t: (n, b + torch.arange(s.shape[0])[:, None] * s.shape[1], t))(*reference_beam_step(s, lp)),
             "the beam index counts across the whole batch; return the beam within its own input, 0 … K-1 (candidate c comes from beam c // V)"),
    _Variant(_beam_lowest, "you kept the K *lowest* scores; log-probabilities are ≤ 0 and higher is better, so take topk with largest=True (the default)"),
    _Variant(_beam_per_beam, "each beam keeps only its own best token; compare all K·V candidates of an input together (view them as (B, K*V)) and keep the best K"),
    _Variant(lambda s, lp: _beam_variant(s, lp, add=False),
             "the previous scores are not added: a candidate's score is its beam's total so far plus the new token's log-probability, scores[b, k] + logp[b*K + k, v]"),
    _Variant(lambda s, lp: _beam_variant(s, lp, add="mul"),
             "scores are multiplied by log-probabilities: log-probabilities of a sequence ADD up (probabilities multiply)"),
    _Variant(lambda s, lp: _beam_variant(s, lp, index="mod"),
             "the beam index is computed with % instead of //: candidate c of the K*V flattened ones comes from beam c // V and is token c % V"),
    _Variant(lambda s, lp: _beam_variant(s, lp, index="mod_v"),
             "beam and token are swapped: candidate c comes from beam c // V (which block of V) and is token c % V (where in the block)"),
    _Variant(lambda s, lp: _beam_variant(s, lp, index="div_k"),
             "the flat index is split with K instead of V: each beam contributes a block of V candidates, so beam = c // V and token = c % V"),
    _Variant(lambda s, lp: _beam_variant(s, lp, per_example=False),
             "the top K are taken over the whole batch: each input keeps its own K beams, so view the candidates as (B, K*V) and take topk along dim=-1"),
    _Variant(_beam_one_row,
             "the candidates of the whole batch are viewed as one row, so you return K beams in total instead of K per input: view them as (B, K*V) and take topk along dim=-1"),
]


def _beam_cases() -> list[_Case]:
    g = torch.Generator().manual_seed(503)
    lp = lambda n, v: torch.randn(n, v, generator=g).log_softmax(-1)
    first = torch.zeros(2, 3)
    first[:, 1:] = float("-inf")  # the first step: all beams identical, only beam 0 is expanded
    finished = lp(3 * 2, 7)
    finished[1] = float("-inf")  # a finished beam may only "emit" padding (id 0) at no cost
    finished[1, 0] = 0.0
    return [
        _Case("B=2, K=3, V=11", (-torch.rand(2, 3, generator=g).cumsum(-1), lp(6, 11))),
        _Case("the first step (beams 1.. have score -inf)", (first, lp(6, 9))),
        _Case("B=1, K=1 (greedy)", (-torch.rand(1, 1, generator=g), lp(1, 5))),
        _Case("B=3, K=2 with a finished beam", (-3 * torch.rand(3, 2, generator=g), finished)),
    ]


@register("beam_step")
def check_beam_step(fn: Callable) -> bool:
    """Check ``fn(scores (B, K), logp (B*K, V)) -> (new_scores, beam, token)``, each ``(B, K)``, best first."""

    def shape_check(got, expected, case):
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            return f"beam_step should return three tensors (new_scores, beam, token); got a {type(got).__name__} on the case '{case.name}'."
        for what, g, e in zip(("new_scores", "beam", "token"), got, expected):
            if not isinstance(g, Tensor) or tuple(g.shape) != tuple(e.shape):
                shape = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
                return f"beam_step: {what} should be a tensor of shape {tuple(e.shape)} (B, K), got {shape} on the case '{case.name}'."
        if _same(got[0], expected[0]):
            return f"beam_step: the new scores are right but the beam or token indices are not, on the case '{case.name}'; candidate c of the K*V comes from beam c // V and is token c % V."
        if _same(got[0].sort(-1, descending=True).values, expected[0]):
            return f"beam_step: the right candidates but not best first, on the case '{case.name}'; return them in descending order of score (torch.topk does)."
        return None

    def wrong_order(got, expected, case):
        if isinstance(got, (tuple, list)) and len(got) == 3 and all(isinstance(t, Tensor) for t in got):
            names = ("new_scores", "beam", "token")
            for perm in itertools.permutations(range(3)):
                if perm != (0, 1, 2) and all(_same(got[i], expected[p]) for i, p in enumerate(perm)):
                    order = ", ".join(names[p] for p in perm)
                    return (f"beam_step: the right three tensors in the wrong order — you returned ({order}); return "
                            f"(new_scores, beam, token) (seen on the case '{case.name}').")
        return None

    cases = _beam_cases()
    return _run("beam_step", fn, cases, reference_beam_step, _BEAM_VARIANTS, shape_check, pre_check=wrong_order,
                arg_names=("scores", "logp"), output=("float", "ids", "ids"), output_names=("new_scores", "beam", "token"),
                properties=[device_property("beam_step", cases[0], reference_beam_step)])


# --------------------------------------------------------------------------------------------
# 4. BLEU by hand
# --------------------------------------------------------------------------------------------
def _bleu_variant(hyps, refs, max_n=4, **kw):
    return _bleu_from(bleu_statistics(hyps, refs, max_n), **kw)


def _bleu_unclipped(hyps, refs, max_n=4):
    stats = bleu_statistics(hyps, refs, max_n)
    stats["matches"] = [0] * max_n
    for h, r in zip(hyps, refs):
        ht, rt = h.split(), r.split()
        for n in range(1, max_n + 1):
            rc = _ngrams(rt, n)
            stats["matches"][n - 1] += sum(c for g, c in _ngrams(ht, n).items() if g in rc)
    return _bleu_from(stats)


def _bleu_pooled_clip(hyps, refs, max_n=4):
    """Clipping against the whole corpus's reference counts instead of each sentence's own."""
    stats = bleu_statistics(hyps, refs, max_n)
    for n in range(1, max_n + 1):
        hc, rc = Counter(), Counter()
        for h, r in zip(hyps, refs):
            hc.update(_ngrams(h.split(), n))
            rc.update(_ngrams(r.split(), n))
        stats["matches"][n - 1] = sum(min(c, rc[g]) for g, c in hc.items())
    return _bleu_from(stats)


def _bleu_pooled_refs(hyps, refs, max_n=4):
    """Each hypothesis clipped against the reference counts of the whole corpus (not its own reference)."""
    stats = bleu_statistics(hyps, refs, max_n)
    for n in range(1, max_n + 1):
        rc = Counter()
        for r in refs:
            rc.update(_ngrams(r.split(), n))
        stats["matches"][n - 1] = sum(min(c, rc[g]) for h in hyps for g, c in _ngrams(h.split(), n).items())
    return _bleu_from(stats)


def _bleu_skip_zero(hyps, refs, max_n=4, smooth=None):
    stats = bleu_statistics(hyps, refs, max_n)
    ps = []
    for m, t in zip(stats["matches"], stats["totals"]):
        if smooth == "add1":
            ps.append((m + 1) / (t + 1))
        elif smooth == "eps":
            ps.append(max(m, 1e-9) / t if t else 1e-9)
        elif m > 0 and t > 0:
            ps.append(m / t)
    if not ps:
        return 0.0
    c, r = stats["hyp_len"], stats["ref_len"]
    bp = 1.0 if c > r else math.exp(1 - r / c) if c else 0.0
    return 100.0 * bp * math.exp(sum(math.log(p) for p in ps) / len(ps))


def _bleu_bp_per_sentence(hyps, refs, max_n=4):
    stats = bleu_statistics(hyps, refs, max_n)
    if min(stats["matches"]) == 0:
        return 0.0
    bp = sum(1.0 if len(h.split()) > len(r.split()) else math.exp(1 - len(r.split()) / len(h.split())) for h, r in zip(hyps, refs)) / len(hyps)
    return 100 * bp * math.exp(sum(math.log(m / t) for m, t in zip(stats["matches"], stats["totals"])) / max_n)


def _bleu_divide_by_4(hyps, refs, max_n=4):
    stats = bleu_statistics(hyps, refs, max_n)
    if min(stats["matches"]) == 0:
        return 0.0
    c, r = stats["hyp_len"], stats["ref_len"]
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * bp * math.exp(sum(math.log(m / t) for m, t in zip(stats["matches"], stats["totals"])) / 4)


def _bleu_sentence_average(hyps, refs, max_n=4):
    return sum(reference_corpus_bleu([h], [r], max_n) for h, r in zip(hyps, refs)) / len(hyps)


def _bleu_general(hyps, refs, max_n=4, *, top=0, denom="hyp", tok="split", divide=None, clip="min", lengths="tokens", last=True):
    """BLEU with a different n-gram range (orders 1 … max_n + top), denominator (the hypothesis or the
    reference n-grams) or tokenisation (whitespace words or characters); ``divide`` overrides the
    number the summed log precisions are divided by."""
    split = list if tok == "chars" else str.split
    orders = list(range(1, max_n + 1 + top))
    matches, totals = Counter(), Counter()
    c = r = 0
    for h, rf in zip(hyps, refs):
        ht, rt = split(h), split(rf)
        c, r = (c + len(ht), r + len(rt)) if lengths == "tokens" else (c + len(h), r + len(rf))
        for n in orders:
            hc, rc = (_ngrams(ht, n), _ngrams(rt, n)) if last else (_ngrams(ht[:-1], n), _ngrams(rt[:-1], n))
            matches[n] += len(set(hc) & set(rc)) if clip == "set" else sum(min(k, rc[g]) for g, k in hc.items())
            totals[n] += sum((hc if denom == "hyp" else rc).values())
    if not orders or any(matches[n] == 0 or totals[n] == 0 for n in orders) or c == 0:
        return 0.0
    log = math.log10 if tok == "log10" else math.log
    log_mean = sum(log(matches[n] / totals[n]) for n in orders) / (divide(max_n) if divide else len(orders))
    return 100 * (1.0 if c > r else math.exp(1 - r / c)) * math.exp(log_mean)


_ORDERS = "the n-gram orders stop one short: range(1, max_n) gives 1 … max_n - 1; use range(1, max_n + 1) so orders 1 up to max_n all count"
_BLEU_VARIANTS = [
    _Variant(lambda h, r, max_n=4: _bleu_variant(h, r, max_n, bp="none"),
             "the brevity penalty is missing: multiply by BP = exp(1 - r/c) when the hypotheses are shorter than the references (c <= r), otherwise short, cautious output would score too well"),
    _Variant(lambda h, r, max_n=4: _bleu_variant(h, r, max_n, mean="arithmetic"),
             "the precisions are averaged arithmetically: BLEU takes their geometric mean, exp of the mean of log p_n"),
    _Variant(lambda h, r, max_n=4: _bleu_variant(h, r, max_n, mean="arithmetic", bp="none"),
             "arithmetic instead of geometric mean and no brevity penalty: BLEU = BP · exp((1/N) Σ log p_n)"),
    _Variant(lambda h, r, max_n=4: _bleu_variant(h, r, max_n, bp="inverted"),
             "the brevity penalty is upside down: BP = exp(1 - r/c) with r the reference length and c the hypothesis length"),
    _Variant(lambda h, r, max_n=4: _bleu_variant(h, r, max_n, bp="always"),
             "the brevity penalty is applied to long hypotheses too: BP = 1 when c > r"),
    _Variant(lambda h, r, max_n=4: _bleu_variant(h, r, max_n, scale=1.0),
             "the score is between 0 and 1: report BLEU on sacrebleu's 0-100 scale (multiply by 100)"),
    _Variant(_bleu_unclipped,
             "the n-gram counts are not clipped: a hypothesis n-gram counts at most as often as it occurs in the reference (min(count_hyp, count_ref))"),
    _Variant(_bleu_pooled_clip,
             "the n-gram counts are clipped against the whole corpus's reference counts; clip per sentence, min(count in this hypothesis, count in its own reference), then add up"),
    _Variant(_bleu_pooled_refs,
             "each hypothesis is clipped against the n-gram counts of all the references together; clip against its own reference only, min(count in the hypothesis, count in its reference)"),
    _Variant(_bleu_skip_zero,
             "a precision of 0 is skipped; without smoothing BLEU is 0 as soon as some p_n is 0 (log 0 = -inf), so return 0.0 then"),
    _Variant(lambda h, r, max_n=4: _bleu_skip_zero(h, r, max_n, smooth="add1"),
             "the precisions are smoothed (+1); compute BLEU without smoothing, p_n = matches / total, and return 0.0 when some p_n is 0"),
    _Variant(lambda h, r, max_n=4: _bleu_skip_zero(h, r, max_n, smooth="eps"),
             "a zero precision is replaced by a tiny number; without smoothing BLEU is exactly 0 when some p_n is 0, so return 0.0 then"),
    _Variant(lambda h, r, max_n=4: reference_corpus_bleu(h, r, 4),
             "the max_n argument is ignored; use n-grams of orders 1 … max_n, not a hard-coded 4"),
    _Variant(lambda h, r, max_n=4: reference_corpus_bleu(r, h, max_n),
             "hypotheses and references are swapped: precision counts the *hypothesis* n-grams found in the reference, and c is the hypotheses' length"),
    _Variant(_bleu_bp_per_sentence,
             "the brevity penalty is computed per sentence; BLEU's is one corpus-level factor from the total lengths c and r"),
    _Variant(_bleu_divide_by_4,
             "the mean of the log precisions divides by 4 whatever max_n is; average over the max_n orders"),
    _Variant(_bleu_sentence_average,
             "sentence scores are averaged: corpus BLEU pools the matches, n-gram totals and lengths over all sentences first, then computes one score"),
    _Variant(lambda h, r, max_n=4: _bleu_general(h, r, max_n, top=-1), _ORDERS),
    _Variant(lambda h, r, max_n=4: _bleu_general(h, r, max_n, top=-1, divide=lambda n: n), _ORDERS),
    _Variant(lambda h, r, max_n=4: _bleu_general(h, r, max_n, top=1),
             "one n-gram order too many: range(1, max_n + 2) goes up to max_n + 1; use orders 1 up to max_n"),
    _Variant(lambda h, r, max_n=4: _bleu_general(h, r, max_n, denom="ref"),
             "the precision divides by the reference n-grams (that is recall); divide the clipped matches by the number of hypothesis n-grams"),
    _Variant(lambda h, r, max_n=4: _bleu_general(h, r, max_n, last=False),
             "the last n-gram of each sentence is missed (off by one): a sentence of L tokens has L - n + 1 n-grams, range(len(tokens) - n + 1)"),
    _Variant(lambda h, r, max_n=4: _bleu_general(h, r, max_n, tok="log10"),
             "the precisions are logged in base 10 (math.log10) but the mean is exponentiated with exp; use the natural log, math.log, with math.exp"),
    _Variant(lambda h, r, max_n=4: _bleu_general(h, r, max_n, lengths="chars"),
             "the lengths c and r of the brevity penalty are counted in characters (len of the string); count words, len(hyp.split())"),
    _Variant(lambda h, r, max_n=4: _bleu_general(h, r, max_n, clip="set"),
             "each matching n-gram is counted once (a set); count it min(count in the hypothesis, count in the reference) times — clipping, not de-duplication"),
    _Variant(lambda h, r, max_n=4: _bleu_general(h, r, max_n, tok="chars"),
             "the sentences are counted in characters; BLEU here counts whitespace tokens, so split each string with .split() first"),
]


def _bleu_cases() -> list[_Case]:
    return [
        _Case("one sentence, shorter than its reference",
              (["the cat sat on the mat"], ["the cat sat on the red mat today"])),
        _Case("two sentences, one too long and one too short",
              (["the small dogs do not see the red car and the cat sees the the the car .", "i see the cat on the mat ."],
               ["the small dogs do not see the red car and the cat sees the car .", "i see the black cat on the mat today ."])),
        _Case("a perfect corpus", (["le chat noir dort .", "les petits chiens mangent une pomme ."],
                                   ["le chat noir dort .", "les petits chiens mangent une pomme ."])),
        _Case("three sentences, max_n=2", (["a b c d", "e f g", "a a a a"], ["a b c e", "e f g h", "a b a c"]), {"max_n": 2}),
        _Case("a word repeated more often than in its own reference (clipping per sentence)",
              (["the cat sat on the mat the the", "a dog ran in the park"], ["the cat sat on the mat today ok", "the the a dog ran in the park"])),
        _Case("no 4-gram in common: BLEU is 0 without smoothing",
              (["the cat sat on mat the dog", "we saw it"], ["the cat sat down on the mat", "we saw it today"])),
    ]


@register("corpus_bleu")
def check_bleu(fn: Callable) -> bool:
    """Check ``fn(hyps, refs, max_n=4) -> corpus BLEU in [0, 100]`` (whitespace tokens, no smoothing)."""

    def learner(hyps, refs, max_n=4):
        try:
            out = fn(hyps, refs) if max_n == 4 else fn(hyps, refs, max_n=max_n)
        except (ValueError, ZeroDivisionError) as e:
            if "math domain" in str(e) or isinstance(e, ZeroDivisionError):
                raise Fail(f"corpus_bleu raised {type(e).__name__} ({e}) — a precision of 0 (or an empty hypothesis) makes log or the division fail; "
                           "without smoothing BLEU is 0 as soon as some p_n is 0, so return 0.0 in that case.") from None
            raise
        return float(out) if isinstance(out, Tensor) and out.numel() == 1 else out

    def shape_check(got, expected, case):
        if not isinstance(got, (int, float)):
            return f"corpus_bleu should return one number (a float between 0 and 100); got a {type(got).__name__} on the case '{case.name}'."
        return f"corpus_bleu gives {float(got):.4f} but the reference gives {expected:.4f} on the case '{case.name}'; print your n-gram precisions and brevity penalty and compare them with the formula."

    if not callable(fn):
        return _run("corpus_bleu", fn, [], reference_corpus_bleu, [], shape_check)
    return _run("corpus_bleu", learner, _bleu_cases(), reference_corpus_bleu, _BLEU_VARIANTS, shape_check, arg_names=("hyps", "refs", "max_n"))


# --------------------------------------------------------------------------------------------
# 5. matching parameters
# --------------------------------------------------------------------------------------------
def _match_formula(n_enc, n_dec, d_model, d_ff, *, attn=4, ffn=2, cross=True, invert=False, only="both", ff4=False,
                   bias=False, norms=False, swap=False, cross_attn=None):
    d_ff = 4 * d_model if ff4 else d_ff
    d = d_model
    if swap:
        n_enc, n_dec = n_dec, n_enc
    a, f = attn * d ** 2, ffn * d * d_ff
    if bias:  # every projection's bias: 4·d for attention, d_ff + d for the FFN (d_ff twice for a gated FFN)
        a, f = a + attn * d, f + (ffn - 1) * d_ff + d
    layer = a + f + (4 * d if norms else 0)
    dec_layer = {True: a + (a if cross_attn is None else cross_attn * d ** 2) + f, False: a + f, "kv": a + f + 2 * d ** 2,
                 "layer": 2 * (a + f)}[cross] + (6 * d if norms else 0)
    total = (n_enc * layer if only != "dec" else 0) + (n_dec * dec_layer if only != "enc" else 0)
    return layer / total if invert else total / layer


def reference_matched_decoder_layers(n_enc: int, n_dec: int, d_model: int, d_ff: int) -> float:
    """How many decoder-only layers hold as many parameters as an encoder-decoder with ``n_enc``
    encoder and ``n_dec`` decoder layers (biases and norms aside, a ReLU/GELU FFN):

        encoder layer = decoder-only layer = 4·d² (W_Q, W_K, W_V, W_O) + 2·d·d_ff (FFN up and down)
        encoder-decoder decoder layer      = 8·d² (self- and cross-attention) + 2·d·d_ff

    Returns ``(n_enc · layer + n_dec · decoder layer) / layer`` as a float (not rounded)."""
    return float(_match_formula(n_enc, n_dec, d_model, d_ff))


_MATCH_VARIANTS = [
    Variant(lambda *a: _match_formula(*a, cross=False), "the decoder's cross-attention is not counted: a decoder layer of the encoder-decoder has two attention layers, 8·d² + 2·d·d_ff"),
    Variant(lambda *a: _match_formula(*a, attn=3), "an attention layer has four d×d matrices, W_Q, W_K, W_V and W_O: 4·d², not 3·d²"),
    Variant(lambda *a: _match_formula(*a, ffn=1), "the FFN has two matrices, up (d×d_ff) and down (d_ff×d): 2·d·d_ff"),
    Variant(lambda *a: _match_formula(*a, invert=True), "the ratio is upside down: divide the encoder-decoder's parameters by one decoder-only layer's"),
    Variant(lambda *a: _match_formula(*a, only="enc"), "the decoder stack is left out: count the encoder's layers and the decoder's"),
    Variant(lambda *a: _match_formula(*a, only="dec"), "the encoder stack is left out: count the encoder's layers and the decoder's"),
    Variant(lambda *a: _match_formula(*a, ff4=True), "the d_ff argument is ignored; use the FFN width you are given, not 4·d_model"),
    Variant(lambda *a: _match_formula(*a, attn=2), "an attention layer has four d×d matrices, W_Q, W_K, W_V and W_O: 4·d²"),
    Variant(lambda *a: _match_formula(*a, cross="kv"), "cross-attention has four d×d matrices too (W_Q, W_K, W_V, W_O), not only W_K and W_V: "
            "a decoder layer of the encoder-decoder is 8·d² + 2·d·d_ff"),
    Variant(lambda *a: _match_formula(*a, cross="layer"), "cross-attention adds one attention (4·d²), not a whole second layer with its own FFN: "
            "a decoder layer of the encoder-decoder is 8·d² + 2·d·d_ff"),
    Variant(lambda *a: _match_formula(*a, bias=True), "biases are counted; this count leaves biases and norms aside: 4·d² + 2·d·d_ff per layer, "
            "8·d² + 2·d·d_ff for a decoder layer with cross-attention"),
    Variant(lambda *a: _match_formula(*a, norms=True), "the norms are counted; this count leaves biases and norms aside: 4·d² + 2·d·d_ff per layer, "
            "8·d² + 2·d·d_ff for a decoder layer with cross-attention"),
    Variant(lambda *a: _match_formula(*a, norms=True, bias=True), "biases and norms are counted; this count leaves them aside: "
            "4·d² + 2·d·d_ff per layer, 8·d² + 2·d·d_ff for a decoder layer with cross-attention"),
    Variant(lambda *a: _match_formula(*a, ffn=3), "the FFN here is the plain GELU/ReLU one, two matrices (2·d·d_ff); three (3·d·d_ff) is "
            "SwiGLU's gated FFN"),
    Variant(lambda *a: _match_formula(*a, swap=True), "n_enc and n_dec are swapped: the n_dec decoder layers carry the cross-attention, "
            "n_enc · (4·d² + 2·d·d_ff) + n_dec · (8·d² + 2·d·d_ff)"),
    Variant(lambda *a: float(math.floor(_match_formula(*a))), "the ratio is rounded down (// or int()); return the exact ratio as a float "
            "and round only when building a model"),
    Variant(lambda *a: _match_formula(*a, attn=3, cross_attn=4), "self-attention has four d×d matrices, W_Q, W_K, W_V and W_O: 4·d², not 3·d²"),
]


@register("matched_decoder_layers")
def check_matched_decoder_layers(fn: Callable) -> bool:
    """Check ``fn(n_enc, n_dec, d_model, d_ff) -> float``: decoder-only layers matching an encoder-decoder's parameters."""
    cases = [_Case("3 + 5 layers, d=96, d_ff=320", (3, 5, 96, 320)), _Case("6 + 4 layers, d=96, d_ff=320", (6, 4, 96, 320)),
             _Case("4 + 1 layers, d=128, d_ff=128", (4, 1, 128, 128)), _Case("2 + 2 layers, d=64, d_ff=256", (2, 2, 64, 256)),
             _Case("6 + 6 layers, d=512, d_ff=2048", (6, 6, 512, 2048)), _Case("1 + 4 layers, d=32, d_ff=64", (1, 4, 32, 64))]

    def rounded(got, expected, case):
        if isinstance(got, (int, float)) and float(got) == round(expected):
            return f"matched_decoder_layers returns a rounded number on the case '{case.name}'; return the exact ratio as a float ({expected:.4f} here) and round only when building a model."
        return None

    def shape_check(got, expected, case):
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return f"matched_decoder_layers should return one number; got a {type(got).__name__} on the case '{case.name}'."
        return None

    labels = {0: "n_enc", 1: "n_dec", 2: "d_model", 3: "d_ff"}
    return _run("matched_decoder_layers", fn, cases, reference_matched_decoder_layers, _MATCH_VARIANTS, shape_check,
                arg_names=("n_enc", "n_dec", "d_model", "d_ff"), pre_check=rounded, output="number",
                probes=[constant_argument_probe("matched_decoder_layers", reference_matched_decoder_layers, labels),
                        number_hint_probe("matched_decoder_layers", "(n_enc · (4·d² + 2·d·d_ff) + n_dec · (8·d² + 2·d·d_ff)) / "
                                                                    "(4·d² + 2·d·d_ff), both parameter totals divided")])
