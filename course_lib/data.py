"""Small generated datasets and the batching every lesson shares.

Two kinds of data, both deterministic from a seed and built in well under a second:

* **Symbol tasks** for sequence-to-sequence models: :func:`reverse_task`, :func:`sort_task` and
  :func:`copy_task` return ``(src, tgt)`` pairs of token-id lists. Content ids start at
  :data:`FIRST_ID` = 6, because ids 0..5 are the course's special tokens
  (PAD 0, BOS 1, EOS 2, UNK 3, MASK 4, SEP 5, see :mod:`course_lib.tokenizer`).
* **Text** for causal language models: :func:`sentences_to_ids` turns sentences into id lists with
  a :class:`~course_lib.tokenizer.WordTokenizer`; :func:`lm_collate` pads them into a batch.

Batching (teacher forcing). For a target ``y = [y_1, ..., y_n]`` the decoder reads
``tgt_in = [BOS, y_1, ..., y_n]`` and is scored against ``tgt_out = [y_1, ..., y_n, EOS]``:
position ``t`` of ``tgt_in`` holds everything *before* ``tgt_out[t]``. :func:`collate_pairs`
builds both, right-padded with PAD (which the losses ignore)::

    >>> b = collate_pairs([([7, 8, 9], [9, 8, 7]), ([6, 7], [7, 6])])
    >>> b["tgt_in"].tolist()
    [[1, 9, 8, 7], [1, 7, 6, 0]]
    >>> b["tgt_out"].tolist()
    [[9, 8, 7, 2], [7, 6, 2, 0]]
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Callable

from torch import Tensor
from torch.utils.data import Dataset

from .tokenizer import BOS_ID, EOS_ID, PAD_ID, SPECIALS, pad_batch

#: First id that is not a special token: symbol tasks use ids FIRST_ID, FIRST_ID + 1, ...
FIRST_ID = len(SPECIALS)

Pair = tuple[list[int], list[int]]

__all__ = [
    "FIRST_ID",
    "task_symbols",
    "task_vocab_size",
    "make_pairs",
    "reverse_task",
    "sort_task",
    "copy_task",
    "SeqPairDataset",
    "collate_pairs",
    "sentences_to_ids",
    "lm_collate",
    "trim_at_eos",

]


# ---------------------------------------------------------------------------------------------
# Symbol tasks
# ---------------------------------------------------------------------------------------------
def task_symbols(vocab: int | Sequence[int] = 16) -> list[int]:
    """The content ids of a symbol task: ``vocab`` an int ``n`` -> ``[6, ..., 6 + n - 1]``;
    a sequence of ids is checked (all ``>= FIRST_ID``, no duplicates) and returned as a list."""
    if isinstance(vocab, int):
        if vocab < 1:
            raise ValueError(f"vocab must be a positive number of symbols; got {vocab}.")
        return list(range(FIRST_ID, FIRST_ID + vocab))
    ids = [int(i) for i in vocab]
    if not ids:
        raise ValueError("vocab is empty: give a number of symbols or a list of ids.")
    if min(ids) < FIRST_ID:
        raise ValueError(
            f"symbol ids must be >= {FIRST_ID}: ids 0..5 are the special tokens PAD, BOS, EOS, UNK, MASK, SEP; got {min(ids)}."
        )
    if len(set(ids)) != len(ids):
        raise ValueError("vocab contains duplicate ids.")
    return ids


def task_vocab_size(vocab: int | Sequence[int] = 16) -> int:
    """The ``vocab_size`` a model needs for a symbol task (specials included): max id + 1."""
    return max(task_symbols(vocab)) + 1


def make_pairs(
    n: int,
    seed: int,
    transform: Callable[[list[int]], list[int]],
    *,
    vocab: int | Sequence[int] = 16,
    min_len: int = 3,
    max_len: int = 10,
) -> list[Pair]:
    """``n`` pairs ``(src, transform(src))``; ``src`` has a length drawn uniformly from
    ``[min_len, max_len]`` and symbols drawn uniformly (with repetition) from ``vocab``.
    The same ``seed`` always gives the same pairs (a private ``random.Random``; global RNGs untouched)."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len; got min_len={min_len}, max_len={max_len}.")
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}.")
    symbols = task_symbols(vocab)
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        src = [rng.choice(symbols) for _ in range(rng.randint(min_len, max_len))]
        pairs.append((src, list(transform(list(src)))))
    return pairs


def reverse_task(n: int, seed: int = 0, vocab: int | Sequence[int] = 16, min_len: int = 3, max_len: int = 10) -> list[Pair]:
    """``(src, src reversed)`` pairs: ``[7, 8, 9] -> [9, 8, 7]``. Each output token comes from
    one input position (the mirror one), so cross-attention maps show an anti-diagonal."""
    return make_pairs(n, seed, lambda s: s[::-1], vocab=vocab, min_len=min_len, max_len=max_len)


def sort_task(n: int, seed: int = 0, vocab: int | Sequence[int] = 16, min_len: int = 3, max_len: int = 10) -> list[Pair]:
    """``(src, sorted(src))`` pairs: ``[9, 7, 8, 7] -> [7, 7, 8, 9]``."""
    return make_pairs(n, seed, sorted, vocab=vocab, min_len=min_len, max_len=max_len)


def copy_task(n: int, seed: int = 0, vocab: int | Sequence[int] = 16, min_len: int = 3, max_len: int = 10) -> list[Pair]:
    """``(src, src)`` pairs: the easiest sequence-to-sequence task (a diagonal attention map)."""
    return make_pairs(n, seed, list, vocab=vocab, min_len=min_len, max_len=max_len)


# ---------------------------------------------------------------------------------------------
# Datasets and batching
# ---------------------------------------------------------------------------------------------
class SeqPairDataset(Dataset):
    """A list of ``(src_ids, tgt_ids)`` pairs as a ``torch`` Dataset (``len`` and ``[i]``).

    Items are returned as given (lists of ints); :func:`collate_pairs` makes the tensors.
    """

    def __init__(self, pairs: Iterable[tuple[Sequence[int], Sequence[int]]]) -> None:
        self.pairs: list[Pair] = [(list(map(int, s)), list(map(int, t))) for s, t in pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> Pair:
        return self.pairs[i]

    def __repr__(self) -> str:
        return f"SeqPairDataset({len(self)} pairs)"


def collate_pairs(batch: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int = PAD_ID, bos_id: int = BOS_ID,
                  eos_id: int = EOS_ID) -> dict[str, Tensor]:
    """Pad a list of ``(src, tgt)`` id lists into a teacher-forcing batch.

    Returns ``dict(src (B, S), tgt_in (B, T), tgt_out (B, T))`` with ``T = max len(tgt) + 1``:

    * ``src``     = the source ids, right-padded with ``pad_id``;
    * ``tgt_in``  = ``[BOS] + tgt`` (the decoder's input: the target shifted right);
    * ``tgt_out`` = ``tgt + [EOS]`` (what the decoder must predict at each position).

    ``tgt_in == shift_right(tgt_out, bos_id)`` wherever ``tgt_out`` is not padding.
    """
    if len(batch) == 0:
        raise ValueError("collate_pairs got an empty batch.")
    srcs = [list(s) for s, _ in batch]
    tgts = [list(t) for _, t in batch]
    return {
        "src": pad_batch(srcs, pad_id),
        "tgt_in": pad_batch([[bos_id] + t for t in tgts], pad_id),
        "tgt_out": pad_batch([t + [eos_id] for t in tgts], pad_id),
    }


def sentences_to_ids(texts: Iterable[str], tokenizer, *, add_bos: bool = True, add_eos: bool = True) -> list[list[int]]:
    """Encode sentences with a :class:`~course_lib.tokenizer.WordTokenizer` (by default as
    ``[BOS] + words + [EOS]``, the form a causal LM is trained on)."""
    return [tokenizer.encode(t, add_bos=add_bos, add_eos=add_eos) for t in texts]


def lm_collate(batch: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> dict[str, Tensor]:
    """Right-pad id lists (e.g. from :func:`sentences_to_ids`) into ``dict(tokens (B, T))``.

    The shift happens inside :func:`course_lib.losses.clm_loss` (``logits[:, t]`` is scored
    against ``tokens[:, t+1]``); padded targets are ignored there. Right padding is safe for a
    causal model: a real token never attends to a pad that comes after it.
    """
    if len(batch) == 0:
        raise ValueError("lm_collate got an empty batch.")
    return {"tokens": pad_batch([list(s) for s in batch], pad_id)}


# ---------------------------------------------------------------------------------------------
# Reading generated output
# ---------------------------------------------------------------------------------------------
def trim_at_eos(ids: Iterable[int] | Tensor, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> list[int]:
    """The tokens before the first EOS (padding removed): what a generated sequence *says*."""
    if isinstance(ids, Tensor):
        ids = ids.tolist()
    out = []
    for i in ids:
        i = int(i)
        if i == eos_id:
            break
        if i != pad_id:
            out.append(i)
    return out
