"""course_lib.lessons.grammar: the referee lesson 02 uses to score generated English."""
import random

import pytest

from course_lib import en_fr
from course_lib.lessons.grammar import Ungrammatical, grammatical, parse, reason


def test_every_generated_sentence_parses():
    rng = random.Random(0)
    sentences = [en_fr.generate_pair(rng)[0] for _ in range(3000)]
    sentences += [en for en, _ in en_fr.make_splits(seed=1, n_train=200, n_valid=10, n_test=10, n_long=50)["long"]]
    rejected = [(s, reason(s)) for s in sentences if not grammatical(s)]
    assert not rejected, rejected[:5]


@pytest.mark.parametrize("text, expected", [
    ("the dogs see the cat.", ("dog", "see")),
    ("she does not sleep.", ("she", "sleep")),
    ("i am happy.", ("i", "be")),
    ("you all are in the garden.", ("you", "be")),
    ("these three small children look for the cat.", ("child", "look for")),
    ("the man reads a book and the women eat two apples.", ("man", "read")),
])
def test_parse_returns_subject_and_verb_of_the_first_clause(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("text, why", [
    ("the dogs sees the cat.", "agreement: 'dog sees'"),
    ("i is happy.", "agreement: 'i is'"),
    ("he do not sleep.", "agreement: 'he do'"),
    ("she does not sleeps.", "agreement: 'she … sleeps'"),
    ("the red song is sad.", "meaning: 'red song'"),
    ("she reads a big apple.", "meaning: 'read … apple'"),
    ("these dog sleep.", "number: 'these … dog'"),
    ("one dogs sleep.", "number: '1 … dogs'"),
    ("the mice chairs in the box.", "expected a verb, got 'chairs'"),
    ("the dogs look the cat.", "expected for…, got 'the'"),
])
def test_reason_names_the_first_problem(text, why):
    assert reason(text) == why
    assert not grammatical(text)
    with pytest.raises(Ungrammatical, match="."):
        parse(text)


@pytest.mark.parametrize("text", ["", "the dog", "the dog sees", "she is", "the dog sleeps", "the dog sleeps. .",
                                  "the zebra sleeps.", "<mask> sleeps."])
def test_truncated_or_unknown_input_is_rejected_not_crashing(text):
    assert reason(text) is not None
