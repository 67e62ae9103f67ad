"""Translating with a trained model (greedy or beam search), typed input, and evaluation."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ...generation import beam_search, generate
from ...metrics import corpus_bleu, corpus_chrf, exact_match
from ...tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_ID, WordTokenizer, detokenize, pad_batch
from .data import TranslationData, _translator


# ----------------------------------------------------------------------------------------------
# Decoding and evaluation
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def translate_ids(model: nn.Module, family: str, sources: Sequence[list[int]], *, beam_size: int = 1,
                  batch_size: int = 256, max_new_tokens: int | None = None, length_penalty: float = 1.0) -> list[list[int]]:
    """Translate token-id sources; returns target ids without BOS/EOS/padding.

    Decoder-only prompts (``source <sep>``) must share a length within a batch, so sources are
    grouped by length; encoder-decoder sources are simply padded. A source longer than
    :func:`longest_source` allows is refused (the model would read positions it never had).
    """
    f = _translator(family)
    if not isinstance(beam_size, int) or isinstance(beam_size, bool) or beam_size < 1:
        raise ValueError(f"beam_size must be a whole number >= 1 (1 = greedy); got {beam_size!r}.")
    limit, max_len = longest_source(model, family), getattr(model, "module", model).cfg.max_len
    for i, src in enumerate(sources):
        if not 1 <= len(src) <= limit:
            what = "is empty" if not src else f"has {len(src)} tokens, more than the {limit} a {family} model with max_len={max_len} can translate"
            raise ValueError(f"source {i} {what}; give sentences of 1 to {limit} tokens (split longer text into sentences).")
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[list[int]] = [[] for _ in sources]
    groups: list[list[int]] = []
    for i in order:  # consecutive chunks; decoder-only chunks also split at every length change
        if groups and len(groups[-1]) < batch_size and (f.cross_attention or len(sources[groups[-1][0]]) == len(sources[i])):
            groups[-1].append(i)
        else:
            groups.append([i])
    for idx in groups:
        longest = max(len(sources[i]) for i in idx)
        # as long as asked (or twice the source, plus some), but never past the model's last position
        room = max_len if f.cross_attention else max_len - longest
        n_new = min(max_new_tokens or 2 * longest + 10, room)
        if f.cross_attention:
            inputs = pad_batch([sources[i] for i in idx]).to(device)
        else:
            inputs = torch.tensor([sources[i] + [SEP_ID] for i in idx], device=device)
        kw = dict(eos_id=EOS_ID, pad_id=PAD_ID, bos_id=BOS_ID, prefix_lm=f.prefix_lm)
        if beam_size > 1:
            out = beam_search(model, inputs, n_new, beam_size=beam_size, length_penalty=length_penalty, **kw)
        else:
            out = generate(model, inputs, n_new, **kw)
        for row, i in zip(out.tolist(), idx):
            results[i] = [t for t in row[: row.index(EOS_ID)] if t != PAD_ID] if EOS_ID in row else [t for t in row if t != PAD_ID]
    return results


def translate(model: nn.Module, family: str, tokenizer: WordTokenizer, sentences: Sequence[str], **kw) -> list[str]:
    """English sentences -> French sentences."""
    _check_sentences(sentences)
    ids = translate_ids(model, family, [tokenizer.encode(s) for s in sentences], **kw)
    return [tokenizer.decode(t) for t in ids]


def _check_sentences(sentences) -> None:
    if isinstance(sentences, str):  # iterating over it would translate it letter by letter
        raise TypeError(f"sentences must be a list of strings; got one string ({_shorten(sentences)!r}): wrap it as [text].")


def longest_source(model: nn.Module, family: str) -> int:
    """The longest source (in tokens) :func:`translate_ids` accepts: an encoder-decoder reads up to
    ``max_len`` source tokens; a decoder-only prompt needs room for ``source <sep>`` and a translation
    as long as the source within its ``max_len`` positions."""
    max_len = getattr(model, "module", model).cfg.max_len
    return max_len if _translator(family).cross_attention else (max_len - 1) // 2


SENTENCE_END = (".", "!", "?")


def split_sentences(text: str) -> list[str]:
    """Typed text -> its sentences: one per line, and a line split after each ``.``, ``!`` or ``?``
    that a space follows (the models were trained on one sentence at a time)."""
    return [s for line in text.splitlines() for s in re.split(r"(?<=[.!?])\s+", line.strip()) if s]


def _is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def prepare_source(text: str, tokenizer: WordTokenizer, source_words=None) -> tuple[str, list[str]]:
    """Bring a sentence someone typed into the form the training sources have.

    Lowercased and tokenized like the data; a sentence without final punctuation gets the full
    stop every training sentence ends with (without it the model, which never saw a sentence end
    without one, can repeat words or run on). Words outside ``source_words`` (default: the
    tokenizer's vocabulary) are left out, since the model never saw them, and returned so the
    caller can say so; unknown punctuation is dropped silently.
    Returns ``(text as the model will read it, [unknown words, in order, once each])``.
    """
    known = set(source_words) if source_words is not None else set(tokenizer.stoi)
    tokens = tokenizer.tokenize(text)
    unknown = list(dict.fromkeys(t for t in tokens if t not in known and _is_word(t)))
    kept = [t for t in tokens if t in known]
    if any(_is_word(t) for t in kept) and kept[-1] not in SENTENCE_END:
        end = next((p for p in SENTENCE_END if p in known), None)
        if end is not None:
            kept.append(end)
    return detokenize(kept), unknown


@dataclass
class TypedTranslation:
    """One typed sentence: what the model read, what it wrote, and the words it could not use."""

    text: str  # as typed
    source: str  # normalised, unknown words left out (what the model reads)
    unknown: list[str]  # words outside the vocabulary
    translation: str | None  # None when too little is left, or the sentence is too long (see translate_typed)
    too_long: bool = False  # longer than the model can read (see longest_source): left untranslated


def translate_typed(model: nn.Module, family: str, tokenizer: WordTokenizer, sentences: Sequence[str],
                    source_words=None, **kw) -> list[TypedTranslation]:
    """Translate sentences as a person types them (any case, with or without the final full stop,
    possibly with words the toy vocabulary lacks): see :func:`prepare_source`. A sentence is left
    untranslated (``translation=None``) when no known word remains, or only one next to unknown words,
    or when it is longer than :func:`longest_source` (then ``too_long`` is True)."""
    _check_sentences(sentences)
    prepared = [prepare_source(s, tokenizer, source_words) for s in sentences]
    limit = longest_source(model, family)
    too_long = {i for i, (src, _) in enumerate(prepared) if len(tokenizer.encode(src)) > limit}

    def enough(src: str, unknown: list[str]) -> bool:  # with words missing, one known word alone says nothing
        n_known = sum(_is_word(t) for t in tokenizer.tokenize(src))
        return n_known >= (2 if unknown else 1)

    todo = [i for i, (src, unknown) in enumerate(prepared) if enough(src, unknown) and i not in too_long]
    outs = translate(model, family, tokenizer, [prepared[i][0] for i in todo], **kw) if todo else []
    done = dict(zip(todo, outs))
    return [TypedTranslation(text, src, unknown, done.get(i), i in too_long)
            for i, (text, (src, unknown)) in enumerate(zip(sentences, prepared))]


def evaluate(model: nn.Module, family: str, data: TranslationData, split: str = "test", *,
             limit: int | None = None, **kw) -> dict[str, float]:
    """BLEU and chrF (sacrebleu) and exact match (%) of the model's translations of ``split``."""
    if split not in data.splits:
        raise ValueError(f"split must be one of {sorted(data.splits)}; got {split!r}.")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit is how many sentences to score, a whole number >= 1 (or None for all); got {limit!r}.")
    pairs = data.splits[split][:limit]
    hyps = translate(model, family, data.tokenizer, [en for en, _ in pairs], **kw)
    refs = [data.tokenizer.decode(data.tokenizer.encode(fr)) for _, fr in pairs]  # normalised like hyps
    return {"bleu": corpus_bleu(hyps, refs), "chrf": corpus_chrf(hyps, refs), "exact": 100.0 * exact_match(hyps, refs)}


def _shorten(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
