"""Metrics for generated text: corpus BLEU and chrF (with sacrebleu, and the signature that makes a
score reproducible), exact match on strings, and exact match on token ids.

* BLEU — Papineni et al., "BLEU: a Method for Automatic Evaluation of Machine Translation" (ACL 2002):
  clipped n-gram precisions (n = 1..4), geometric mean, times a brevity penalty.
* chrF — Popović, "chrF: character n-gram F-score for automatic MT evaluation" (WMT 2015): kinder to
  a near-miss agreement error ("petite" for "petit") than word-level BLEU.
* exact match — the share of outputs equal to their reference; the strictest metric, the one a toy
  task with one right answer per input can afford.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from .data import trim_at_eos
from .tokenizer import EOS_ID, PAD_ID


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str], tokenize: str = "13a") -> float:
    """Corpus BLEU (0-100) with sacrebleu, one reference per hypothesis."""
    import sacrebleu

    _check_lengths(hyps, refs)
    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)], tokenize=tokenize).score)


def bleu_details(hyps: Sequence[str], refs: Sequence[str], tokenize: str = "13a") -> dict:
    """Corpus BLEU with its parts: ``bleu``, the clipped n-gram ``precisions`` (1- to 4-grams, in %),
    the brevity penalty ``bp``, and sacrebleu's ``signature`` (the settings that make a BLEU number
    reproducible: references, casing, tokenizer, smoothing, version)."""
    from sacrebleu.metrics import BLEU

    _check_lengths(hyps, refs)
    metric = BLEU(tokenize=tokenize)
    score = metric.corpus_score(list(hyps), [list(refs)])
    return {"bleu": float(score.score), "precisions": [float(p) for p in score.precisions], "bp": float(score.bp),
            "signature": str(metric.get_signature())}


def chrf_signature() -> str:
    """sacrebleu's signature of the chrF settings :func:`corpus_chrf` uses."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    metric.corpus_score(["a"], [["a"]])  # the signature lists nrefs only after a corpus has been scored
    return str(metric.get_signature())


def corpus_chrf(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus chrF (0-100) with sacrebleu: character n-grams, kinder to near-miss agreement errors."""
    import sacrebleu

    _check_lengths(hyps, refs)
    return float(sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score)


def exact_match(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Fraction of hypotheses equal to their reference after whitespace normalisation."""
    _check_lengths(hyps, refs)
    if not refs:
        return 0.0
    return sum(" ".join(h.split()) == " ".join(r.split()) for h, r in zip(hyps, refs)) / len(refs)


def _check_lengths(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references.")


def exact_match_ids(generated: Tensor | Sequence[Sequence[int]], targets: Sequence[Sequence[int]] | Tensor,
                    eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> float:
    """Share of rows whose generated tokens (up to EOS) equal the target exactly.

    ``targets`` are the plain target id lists (or a padded ``tgt_out`` batch ending in EOS)."""
    gen = [trim_at_eos(g, eos_id, pad_id) for g in generated]
    ref = [trim_at_eos(t, eos_id, pad_id) for t in targets]
    if len(gen) != len(ref):
        raise ValueError(f"{len(gen)} generated rows but {len(ref)} targets.")
    if not ref:
        raise ValueError("exact_match_ids got no rows.")
    return sum(g == r for g, r in zip(gen, ref)) / len(ref)
