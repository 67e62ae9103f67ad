"""The course's word-level tokenizer: fixed special ids, tokenization rules, round trips, saving, padding."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import en_fr
from course_lib import tokenizer as tk
from course_lib.tokenizer import (
    BOS_ID, EOS_ID, MASK_ID, PAD_ID, SEP_ID, SPECIALS, UNK_ID, WordTokenizer, detokenize, normalize, pad_batch, tokenize,
)


@pytest.fixture(scope="module")
def splits():
    return en_fr.make_splits(seed=0)


@pytest.fixture(scope="module")
def tokenizers(splits):
    en = WordTokenizer.from_texts(e for e, _ in splits["train"])
    fr = WordTokenizer.from_texts(f for _, f in splits["train"])
    return en, fr


def test_special_ids_are_fixed():
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, SEP_ID) == (0, 1, 2, 3, 4, 5)
    assert SPECIALS == ["<pad>", "<bos>", "<eos>", "<unk>", "<mask>", "<sep>"]
    tok = WordTokenizer.from_texts(["le chien <pad> dort."])
    assert tok.itos[:6] == SPECIALS
    assert [tok.stoi[s] for s in SPECIALS] == [0, 1, 2, 3, 4, 5]


def test_vocabulary_order_is_frequency_then_alphabet():
    tok = WordTokenizer.from_texts(["b a c a", "c b a d", "e"])
    assert tok.itos[6:] == ["a", "b", "c", "d", "e"]  # a:3, b:2, c:2, d:1, e:1
    assert len(tok) == tok.vocab_size == 11
    assert WordTokenizer.from_texts(["b a c a", "c b a d", "e"], min_freq=2).itos[6:] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("L'homme n'aime pas l'enfant.", ["l'", "homme", "n'", "aime", "pas", "l'", "enfant", "."]),
        ("J'ai deux chats, et toi ?", ["j'", "ai", "deux", "chats", ",", "et", "toi", "?"]),
        ("près d'un arbre!", ["près", "d'", "un", "arbre", "!"]),
        ("L\u2019école", ["l'", "école"]),  # typographic apostrophe
        ("Don't stop, aujourd'hui.", ["don't", "stop", ",", "aujourd'hui", "."]),
        ("the small white dogs do not see the red car .",
         ["the", "small", "white", "dogs", "do", "not", "see", "the", "red", "car", "."]),
    ],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens
    assert WordTokenizer.tokenize(text) == tokens


def test_detokenize_rejoins_elision_and_punctuation():
    assert detokenize(["l'", "homme", "n'", "aime", "pas", "la", "voiture", "rouge", "."]) == "l'homme n'aime pas la voiture rouge."
    assert normalize("The dog sleeps , he said .") == "the dog sleeps, he said."


def test_round_trip_on_every_test_and_long_sentence(splits, tokenizers):
    en_tok, fr_tok = tokenizers
    for name in ("test", "long"):
        for en, fr in splits[name]:
            assert en_tok.decode(en_tok.encode(en, add_bos=True, add_eos=True)) == en
            assert fr_tok.decode(fr_tok.encode(fr, add_bos=True, add_eos=True)) == fr
            assert UNK_ID not in en_tok.encode(en) and UNK_ID not in fr_tok.encode(fr)


def test_unknown_words_map_to_unk(tokenizers):
    en_tok, _ = tokenizers
    ids = en_tok.encode("the zebra sleeps.")
    assert ids[1] == UNK_ID and ids.count(UNK_ID) == 1
    assert en_tok.decode(ids) == "the <unk> sleeps."  # unknowns stay visible after decoding


def test_encode_decode_specials():
    tok = WordTokenizer.from_texts(["le chien dort."])
    ids = tok.encode("le chien dort.", add_bos=True, add_eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and len(ids) == 6
    padded = ids + [PAD_ID, PAD_ID]
    assert tok.decode(padded) == "le chien dort."
    assert tok.decode(torch.tensor(padded)) == "le chien dort."
    assert tok.decode(padded, skip_special=False) == "<bos> le chien dort. <eos> <pad> <pad>"


def test_save_load_round_trip(tmp_path, tokenizers):
    _, fr_tok = tokenizers
    path = tmp_path / "fr_vocab.json"
    path.write_text(json.dumps(fr_tok.to_dict(), ensure_ascii=False), encoding="utf-8")
    loaded = WordTokenizer.from_dict(json.loads(path.read_text(encoding="utf-8")))
    assert loaded.itos == fr_tok.itos
    sentence = "les petits chiens blancs ne voient pas la voiture rouge."
    assert loaded.encode(sentence) == fr_tok.encode(sentence)
    with pytest.raises(ValueError):
        WordTokenizer.from_dict({"kind": "word", "itos": ["a", "b"]})  # specials missing
    with pytest.raises(ValueError):
        WordTokenizer(SPECIALS + ["a", "a"])


def test_pad_batch():
    batch = pad_batch([[1, 7, 8, 2], [1, 9, 2]])
    assert batch.dtype == torch.long and batch.shape == (2, 4)
    assert batch.tolist() == [[1, 7, 8, 2], [1, 9, 2, PAD_ID]]
    assert pad_batch([[5], []], pad_id=-1).tolist() == [[5], [-1]]
    assert pad_batch([]).shape == (0, 0)
    assert WordTokenizer.pad_batch([[3]]).tolist() == [[3]]


_word = st.text(alphabet="abcdeéèçxyz", min_size=1, max_size=6)
_token = st.one_of(_word, st.sampled_from(["l'", "n'", "j'", "d'"]).flatmap(lambda e: _word.map(lambda w: e + w)),
                   st.sampled_from([".", ",", "?", "!"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(_token, min_size=1, max_size=12))
def test_decode_encode_is_normalize_and_normalize_is_idempotent(words):
    text = " ".join(words)
    tok = WordTokenizer.from_texts([text])
    assert tok.decode(tok.encode(text)) == normalize(text)
    assert normalize(normalize(text)) == normalize(text)
    assert tk.tokenize(normalize(text)) == tk.tokenize(text)
