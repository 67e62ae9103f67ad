"""Tests for course_lib.data: generated tasks, batching (teacher-forcing shift), helpers."""
from __future__ import annotations

import random

import pytest
import torch

from course_lib.data import (
    FIRST_ID,
    SeqPairDataset,
    collate_pairs,
    copy_task,
    lm_collate,
    make_pairs,
    reverse_task,
    sentences_to_ids,
    sort_task,
    task_symbols,
    task_vocab_size,
    trim_at_eos,
)
from course_lib.losses import shift_right
from course_lib.metrics import exact_match_ids


# ---------------------------------------------------------------- tasks
def test_reverse_task_reverses_and_respects_lengths_and_ids():
    pairs = reverse_task(500, seed=1, vocab=10, min_len=2, max_len=7)
    assert len(pairs) == 500
    for src, tgt in pairs:
        assert tgt == list(reversed(src))
        assert 2 <= len(src) <= 7
        assert all(FIRST_ID <= i < FIRST_ID + 10 for i in src)
    lengths = {len(s) for s, _ in pairs}
    assert lengths == set(range(2, 8)), "every length in [min_len, max_len] should occur in 500 draws"
    assert {i for s, _ in pairs for i in s} == set(range(FIRST_ID, FIRST_ID + 10))


def test_sort_and_copy_tasks():
    for src, tgt in sort_task(200, seed=2):
        assert tgt == sorted(src)
    for src, tgt in copy_task(200, seed=2):
        assert tgt == src
    # the same seed draws the same sources whatever the transform
    assert [s for s, _ in sort_task(50, seed=3)] == [s for s, _ in reverse_task(50, seed=3)]


def test_tasks_are_deterministic_and_leave_global_rng_alone():
    random.seed(123)
    torch.manual_seed(123)
    before_py, before_torch = random.random(), torch.rand(1)
    random.seed(123)
    torch.manual_seed(123)
    a = reverse_task(100, seed=7)
    assert (random.random(), torch.rand(1)) == (before_py, before_torch)
    b = reverse_task(100, seed=7)
    c = reverse_task(100, seed=8)
    assert a == b
    assert a != c


def test_explicit_vocab_and_errors():
    pairs = reverse_task(50, seed=0, vocab=[10, 20, 30], min_len=1, max_len=3)
    assert {i for s, _ in pairs for i in s} <= {10, 20, 30}
    assert task_symbols(4) == [6, 7, 8, 9]
    assert task_vocab_size(16) == 22
    assert task_vocab_size([6, 40]) == 41
    with pytest.raises(ValueError, match="special"):
        reverse_task(5, vocab=[2, 7])
    with pytest.raises(ValueError, match="min_len"):
        reverse_task(5, min_len=5, max_len=4)
    with pytest.raises(ValueError, match="duplicate"):
        task_symbols([7, 7])
    with pytest.raises(ValueError):
        make_pairs(-1, 0, list)


# ---------------------------------------------------------------- batching
def test_collate_pairs_against_hand_example():
    batch = [([7, 8, 9], [9, 8, 7]), ([6, 7], [7, 6]), ([10], [10])]
    b = collate_pairs(batch)
    assert set(b) == {"src", "tgt_in", "tgt_out"}
    assert b["src"].tolist() == [[7, 8, 9], [6, 7, 0], [10, 0, 0]]
    assert b["tgt_in"].tolist() == [[1, 9, 8, 7], [1, 7, 6, 0], [1, 10, 0, 0]]
    assert b["tgt_out"].tolist() == [[9, 8, 7, 2], [7, 6, 2, 0], [10, 2, 0, 0]]
    assert all(v.dtype == torch.long for v in b.values())


def test_collate_pairs_custom_ids_and_shift_right_agreement():
    pairs = reverse_task(64, seed=4, min_len=1, max_len=9)
    b = collate_pairs(pairs, pad_id=0, bos_id=1, eos_id=2)
    B, T = b["tgt_out"].shape
    assert b["tgt_in"].shape == (B, T)
    assert T == max(len(t) for _, t in pairs) + 1
    # teacher forcing: tgt_in is tgt_out shifted right by one, BOS in front (where not padding)
    real = b["tgt_out"] != 0
    assert torch.equal(shift_right(b["tgt_out"], 1)[real], b["tgt_in"][real])
    # exactly one EOS per row, right after the target
    for row, (_, tgt) in zip(b["tgt_out"], pairs):
        assert (row == 2).sum() == 1 and int(row[len(tgt)]) == 2
    c = collate_pairs([([7], [8, 9])], pad_id=99, bos_id=50, eos_id=51)
    assert c["tgt_in"].tolist() == [[50, 8, 9]] and c["tgt_out"].tolist() == [[8, 9, 51]]
    with pytest.raises(ValueError):
        collate_pairs([])


def test_dataset_and_lm_collate():
    ds = SeqPairDataset(reverse_task(10, seed=0))
    assert len(ds) == 10 and ds[3] == reverse_task(10, seed=0)[3]
    b = lm_collate([[1, 7, 8, 2], [1, 9, 2]])
    assert b["tokens"].tolist() == [[1, 7, 8, 2], [1, 9, 2, 0]]


def test_sentences_to_ids_with_tokenizer():
    from course_lib.tokenizer import WordTokenizer

    texts = ["the dog runs.", "the cat sleeps."]
    tok = WordTokenizer.from_texts(texts)
    ids = sentences_to_ids(texts, tok)
    assert ids[0][0] == 1 and ids[0][-1] == 2
    assert tok.decode(ids[1]) == "the cat sleeps."
    assert sentences_to_ids(texts, tok, add_bos=False, add_eos=False)[0] == ids[0][1:-1]


def test_trim_and_exact_match():
    assert trim_at_eos([9, 8, 2, 7, 0]) == [9, 8]
    assert trim_at_eos(torch.tensor([9, 8, 0, 0])) == [9, 8]
    gen = torch.tensor([[9, 8, 7, 2], [7, 6, 2, 0], [7, 7, 7, 7]])
    assert exact_match_ids(gen, [[9, 8, 7], [7, 6], [7, 7]]) == pytest.approx(1 / 3 * 2)
    tgt_out = collate_pairs([([7, 8, 9], [9, 8, 7]), ([6, 7], [7, 6]), ([7, 7], [7, 7])])["tgt_out"]
    assert exact_match_ids(gen, tgt_out) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        exact_match_ids(gen, [[1]])
