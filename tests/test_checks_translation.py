"""Tests for course_lib.learner.checks.translation (lesson 05): every check passes a correct answer, catches each
classic mistake with the right one-sentence hint, reports unfinished work without raising, and
its hand-written BLEU agrees with sacrebleu."""
from __future__ import annotations

import math
from collections import Counter

import pytest
import sacrebleu
import torch

from course_lib.learner.checks import translation as C
from course_lib.tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_ID, pad_batch


# ---------------------------------------------------------------------------------------------
# correct answers, written the way a learner would (and as the solutions notebook does), with
# switches for the classic mistakes
# ---------------------------------------------------------------------------------------------
def encdec(batch, *, shift=True, bos=True, eos=True):
    src = pad_batch([s for s, _ in batch])
    tgt_out = pad_batch([t + [EOS_ID] if eos else list(t) for _, t in batch])
    first = BOS_ID if bos else PAD_ID
    tgt_in = torch.cat([torch.full_like(tgt_out[:, :1], first), tgt_out[:, :-1]], dim=1) if shift else tgt_out.clone()
    return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}


def decoder(batch, *, mask_from="target", eos_in_mask=True, sep=True, prefix_extra=1):
    seqs = [s + ([SEP_ID] if sep else []) + t + [EOS_ID] for s, t in batch]
    tokens = pad_batch(seqs)
    loss_mask = torch.zeros_like(tokens, dtype=torch.bool)
    for i, (s, t) in enumerate(batch):
        start = {"target": len(s) + int(sep), "source": 0, "sep": len(s)}[mask_from]
        loss_mask[i, start:len(seqs[i]) - (0 if eos_in_mask else 1)] = True
    return {"tokens": tokens, "loss_mask": loss_mask, "prefix_len": torch.tensor([len(s) + prefix_extra for s, _ in batch])}


def beam(scores, logp, *, add=True, op="div"):
    B, K = scores.shape
    V = logp.shape[-1]
    total = scores.reshape(-1, 1) + logp if add else logp
    new, flat = total.reshape(B, K * V).topk(K, dim=-1)
    b = flat // V if op == "div" else flat % K
    return new, b, flat % V


def bleu(hyps, refs, max_n=4, *, bp=True, mean="geometric", clip=True):
    match, total = [0] * max_n, [0] * max_n
    c = r = 0
    for h, ref in zip(hyps, refs):
        h, ref = h.split(), ref.split()
        c, r = c + len(h), r + len(ref)
        for n in range(1, max_n + 1):
            hc = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            rc = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
            match[n - 1] += sum(min(k, rc[g]) if clip else (k if g in rc else 0) for g, k in hc.items())
            total[n - 1] += sum(hc.values())
    p = [m / t if t else 0.0 for m, t in zip(match, total)]
    if mean == "geometric" and min(p) == 0:
        return 0.0
    score = math.exp(sum(math.log(x) for x in p) / max_n) if mean == "geometric" else sum(p) / max_n
    if bp and c <= r:
        score *= math.exp(1 - r / c)
    return 100 * score


def not_done(*args, **kwargs):
    raise NotImplementedError("exercise not done yet")


# ---------------------------------------------------------------------------------------------
CHECKS = [
    (C.check_collate_encdec, encdec, "collate_encdec"),
    (C.check_collate_decoder, decoder, "collate_decoder"),
    (C.check_beam_step, beam, "beam_step"),
    (C.check_bleu, bleu, "corpus_bleu"),
]


@pytest.mark.parametrize("check, good, name", CHECKS, ids=[c[2] for c in CHECKS])
def test_correct_answer_passes_with_one_green_line(check, good, name, capsys):
    assert check(good) is True
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"✅ {name}: all ")


@pytest.mark.parametrize("check, good, name", CHECKS, ids=[c[2] for c in CHECKS])
def test_not_implemented_prints_pending_and_returns_false(check, good, name, capsys):
    assert check(not_done) is False
    out = capsys.readouterr().out
    assert out.startswith(f"⏳ {name}: not implemented yet")


@pytest.mark.parametrize("check, good, name", CHECKS, ids=[c[2] for c in CHECKS])
def test_other_errors_become_one_sentence(check, good, name):
    def broken(*args, **kwargs):
        raise KeyError("oops")

    with pytest.raises(AssertionError, match=r"raised KeyError.*fix the cell above") as err:
        check(broken)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("check, good, name", CHECKS, ids=[c[2] for c in CHECKS])
def test_returning_none_is_explained(check, good, name):
    with pytest.raises(AssertionError, match="return"):
        check(lambda *a, **k: None)


MISTAKES = [
    # encoder-decoder batch
    (C.check_collate_encdec, lambda b: encdec(b, shift=False), "not shifted right"),
    (C.check_collate_encdec, lambda b: encdec(b, bos=False), "starts with PAD instead of BOS"),
    (C.check_collate_encdec, lambda b: {**encdec(b), "tgt_in": pad_batch([t for _, t in b])}, "BOS is missing"),
    (C.check_collate_encdec, lambda b: encdec(b, eos=False), "EOS is missing from tgt_out"),
    (C.check_collate_encdec, lambda b: {**encdec(b), "src": pad_batch([s + [EOS_ID] for s, _ in b])}, "src has an EOS"),
    (C.check_collate_encdec, lambda b: {k: v for k, v in encdec(b).items() if k != "tgt_out"}, "without the key"),
    # decoder-only batch
    (C.check_collate_decoder, lambda b: decoder(b, mask_from="source"), "loss mask covers the source"),
    (C.check_collate_decoder, lambda b: decoder(b, mask_from="sep"), "includes <sep>"),
    (C.check_collate_decoder, lambda b: decoder(b, eos_in_mask=False), "EOS is not in the loss mask"),
    (C.check_collate_decoder, lambda b: decoder(b, sep=False), "<sep> (id 5) is missing"),
    (C.check_collate_decoder, lambda b: decoder(b, prefix_extra=0), "prefix_len is one short"),
    (C.check_collate_decoder, lambda b: {**decoder(b), "loss_mask": decoder(b)["loss_mask"].long()}, "torch.bool"),
    # beam step
    (C.check_beam_step, lambda s, lp: beam(s, lp, add=False), "previous scores are not added"),
    (C.check_beam_step, lambda s, lp: beam(s, lp, op="mod"), "% instead of //"),
    (C.check_beam_step, lambda s, lp: tuple(x.flip(-1) for x in beam(s, lp)), "best first"),
    # BLEU
    (C.check_bleu, lambda h, r, max_n=4: bleu(h, r, max_n, bp=False), "brevity penalty is missing"),
    (C.check_bleu, lambda h, r, max_n=4: bleu(h, r, max_n, mean="arithmetic"), "averaged arithmetically"),
    (C.check_bleu, lambda h, r, max_n=4: bleu(h, r, max_n, clip=False), "not clipped"),
    (C.check_bleu, lambda h, r, max_n=4: bleu(h, r, max_n) / 100, "0-100 scale"),
    (C.check_bleu, lambda h, r, max_n=4: sum(bleu([a], [b], max_n) for a, b in zip(h, r)) / len(h), "sentence scores are averaged"),
]


@pytest.mark.parametrize("check, wrong, hint", MISTAKES, ids=[m[2] for m in MISTAKES])
def test_classic_mistake_is_named(check, wrong, hint):
    with pytest.raises(AssertionError) as err:
        check(wrong)
    message = str(err.value)
    assert hint in message, message
    assert "\n" not in message and message.count(". ") <= 1, message  # one sentence


def test_both_correct_forms_of_tgt_in_pass(capsys):
    # BOS + target padded with PAD (the library) and shift_right(tgt_out) (EOS where tgt_out is PAD)
    padded = lambda b: {**encdec(b), "tgt_in": pad_batch([[BOS_ID] + t for _, t in b])}
    assert C.check_collate_encdec(padded) and C.check_collate_encdec(encdec)


def test_reference_bleu_matches_sacrebleu():
    cases = [c.args for c in C._bleu_cases() if not c.kwargs]
    for hyps, refs in cases:
        ours = C.reference_corpus_bleu(hyps, refs)
        theirs = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", smooth_method="none").score
        assert ours == pytest.approx(theirs, abs=1e-9)


def test_reference_beam_step_matches_library_beam_search_scores():
    # two steps of beam search by hand agree with exhaustive search over a tiny tree
    torch.manual_seed(0)
    V, K = 4, 3
    lp1 = torch.randn(1, V).log_softmax(-1)
    lp2 = torch.randn(V, V).log_softmax(-1)  # next-token log-probs given the first token
    scores = torch.tensor([[0.0, float("-inf"), float("-inf")]])
    s1, b1, t1 = C.reference_beam_step(scores, lp1.repeat(K, 1))
    s2, b2, t2 = C.reference_beam_step(s1, lp2[t1[0]])
    every = (lp1[0][:, None] + lp2).flatten().topk(K).values
    torch.testing.assert_close(s2[0], every)


def test_use_or_reference_picks_the_right_function(capsys):
    assert C.use_or_reference(encdec, "ref", "collate_encdec") is encdec
    assert C.use_or_reference(not_done, "ref", "collate_encdec") == "ref"
    assert C.use_or_reference(lambda b: encdec(b, shift=False), "ref", "collate_encdec") == "ref"
    out = capsys.readouterr().out
    assert "using yours" in out and out.count("course_lib's version") == 2
    assert "not implemented yet" in out and "does not pass its check" in out
