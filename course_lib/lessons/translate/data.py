"""Lesson 05's data: the fragment's splits tokenized, and batches in each family's format."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ...data import collate_pairs
from ...families import SHORT_NAMES, Family, build
from ...runtime import pick
from ...tokenizer import EOS_ID, SEP_ID, WordTokenizer, pad_batch
from ..en_fr import load_tsv, make_splits

FAMILIES = tuple(SHORT_NAMES)  # ("encdec", "decoder", "prefixlm")
build_model = build  # lesson 05's name for families.build


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
@dataclass
class TranslationData:
    """Sentence pairs by split and one joint word vocabulary for both languages."""

    tokenizer: WordTokenizer
    splits: dict[str, list[tuple[str, str]]]

    def ids(self, split: str) -> list[tuple[list[int], list[int]]]:
        """``[(source ids, target ids), ...]`` without special tokens."""
        enc = self.tokenizer.encode
        return [(enc(en), enc(fr)) for en, fr in self.splits[split]]

    def source_words(self) -> list[str]:
        """Every token of the training sources (the English the model has seen), sorted."""
        tokenize = self.tokenizer.tokenize
        return sorted({t for en, _ in self.splits["train"] for t in tokenize(en)})


def load_data(seed: int = 0, n_train: int | None = None, tsv: str | None = None) -> TranslationData:
    """The generated fragment (default) or a user's ``English<TAB>French`` file.

    A TSV file is shuffled with ``seed`` and cut like the generated data: its longest 5% of
    pairs (by English length; at least the longest ones, if many tie) become the ``long`` split,
    the rest is split 90/5/5 into train/valid/test.
    """
    if tsv is None:
        n_train = n_train if n_train is not None else pick(60_000, 60_000)
        splits = make_splits(seed=seed, n_train=n_train)
    else:
        if not os.path.isfile(tsv):
            raise FileNotFoundError(f"there is no file {tsv!r}; give a text file with one English<TAB>French pair per line.")
        pairs = load_tsv(tsv)
        if len(pairs) < 20:
            raise ValueError(f"{tsv} has only {len(pairs)} usable sentence pairs; need at least 20.")
        random.Random(seed).shuffle(pairs)
        tok_len = lambda p: len(WordTokenizer.tokenize(p[0]))
        lengths = sorted(tok_len(p) for p in pairs)
        cut = lengths[int(0.95 * (len(pairs) - 1))]
        if cut == lengths[-1]:  # ties at the maximum: the longest pairs alone form `long`
            cut = max((n for n in lengths if n < cut), default=cut)
        short, long = [p for p in pairs if tok_len(p) <= cut], [p for p in pairs if tok_len(p) > cut]
        n_hold = max(1, len(short) // 20)
        splits = {"train": short[2 * n_hold:], "valid": short[:n_hold], "test": short[n_hold:2 * n_hold], "long": long}
        if n_train is not None:
            splits["train"] = splits["train"][:n_train]
    tokenizer = WordTokenizer.from_texts(t for pair in splits["train"] for t in pair)
    return TranslationData(tokenizer, splits)


def collate_encdec(batch: Sequence[tuple[list[int], list[int]]]) -> dict[str, Tensor]:
    """Teacher forcing: ``src (B, S)`` = the source ids; ``tgt_out (B, T)`` = target + EOS (what to
    predict); ``tgt_in (B, T)`` = BOS + target (the target shifted right), all right-padded.
    Lesson 04's :func:`course_lib.data.collate_pairs`, under the name lesson 05 gives it."""
    return collate_pairs(batch)


def collate_decoder(batch: Sequence[tuple[list[int], list[int]]]) -> dict[str, Tensor]:
    """``tokens (B, L)`` = source <sep> target <eos> (right-padded); ``loss_mask`` marks the tokens
    to predict (target and EOS); ``prefix_len (B,)`` = len(source) + 1 for the prefix-LM."""
    seqs = [s + [SEP_ID] + t + [EOS_ID] for s, t in batch]
    tokens = pad_batch(seqs)
    loss_mask = torch.zeros_like(tokens, dtype=torch.bool)
    for i, (s, t) in enumerate(batch):
        loss_mask[i, len(s) + 1 : len(s) + 2 + len(t)] = True
    prefix_len = torch.tensor([len(s) + 1 for s, _ in batch])
    return {"tokens": tokens, "loss_mask": loss_mask, "prefix_len": prefix_len}


def collate_for(family: str):
    return collate_encdec if _translator(family).cross_attention else collate_decoder


def _translator(family: str) -> Family:
    """The :class:`Family` of ``family`` (any of its names), which must be able to translate."""
    f = Family(family)
    if not f.generates:
        raise ValueError(f"an {f} model cannot translate (it does not generate); use one of {FAMILIES}.")
    return f
