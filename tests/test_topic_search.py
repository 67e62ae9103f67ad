"""course_lib.lessons.topic_search: appendix A3's sentences, questions and bag-of-words baseline."""
import math
from collections import Counter

import pytest
import torch

from course_lib.lessons.topic_search import (
    QUERIES, SENTENCES, STOP_WORDS, TOPIC_SENTENCES, TOPICS, bag_of_words, content_vocabulary, words,
)


def test_six_topics_of_six_sentences_and_every_question_names_one():
    assert [len(group) for group in TOPIC_SENTENCES.values()] == [6] * 6
    assert len(set(SENTENCES)) == len(SENTENCES) == len(TOPICS) == 36
    assert all(s in TOPIC_SENTENCES[t] for s, t in zip(SENTENCES, TOPICS))
    assert set(QUERIES.values()) <= set(TOPIC_SENTENCES)


def test_questions_share_few_words_with_their_topic():
    """What A3 says of its questions: few or no shared words with the sentences they are about."""
    for question, topic in QUERIES.items():
        shared = set(words(question)) & {w for s in TOPIC_SENTENCES[topic] for w in words(s)} - STOP_WORDS
        assert len(shared) <= 1, (question, shared)
    assert any(not set(content_vocabulary([q])) & set(content_vocabulary(SENTENCES)) for q in QUERIES)


def _cosine_by_hand(a: str, b: str) -> float:
    ca, cb = (Counter(w for w in t.lower().replace(".", "").replace(",", "").split() if w not in STOP_WORDS) for t in (a, b))
    dot = sum(ca[w] * cb[w] for w in ca)
    return dot / math.sqrt(sum(v * v for v in ca.values()) * sum(v * v for v in cb.values()))


def test_bag_of_words_cosine_matches_a_hand_computed_one():
    texts = ["The dog sees the cat, the cat sees the dog.", "A cat sleeps and a cat eats.", "The dog barks at dogs."]
    bow = bag_of_words(texts, content_vocabulary(texts))
    torch.testing.assert_close(bow.norm(dim=-1), torch.ones(3))
    for i in range(3):
        for j in range(3):
            assert (bow[i] @ bow[j]).item() == pytest.approx(_cosine_by_hand(texts[i], texts[j]), abs=1e-6)


def test_words_outside_the_vocabulary_and_stop_words_are_not_counted():
    assert "the" not in content_vocabulary(["The cat and the dog."])
    bow = bag_of_words(["the and of", "cat zebra"], ["cat", "dog"])
    assert bow[0].abs().sum() == 0  # nothing known: a row of zeros, a tie with everything
    torch.testing.assert_close(bow[1], torch.tensor([1.0, 0.0]))


def test_empty_vocabulary_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="content_vocabulary"):
        bag_of_words(["a cat"], [])
