"""Quiz questions whose answers could be misread are refused when they are written (table), and
answers by letter, text or index are graded unambiguously."""
from __future__ import annotations


import pytest

from bad_inputs import Bad, assert_refused, rows

from course_lib.learner.quiz import MultipleChoice as MC
from course_lib.learner.quiz import check, check_quiz, grade_choice

TABLE = [
    Bad("option 'b' at (a)", lambda: MC("q?", ["b", "a", "c"], answer="a"), ValueError, "reads as the answer letter of option (b)"),
    Bad("option '(c)' at (a)", lambda: MC("q?", ["(c)", "x", "y"], answer=1), ValueError, "option (a)"),
    Bad("duplicate options", lambda: MC("q?", ["yes", "no", "yes"], answer=0), ValueError, "options (a) and (c) are both 'yes'"),
    Bad("duplicates up to case and spaces", lambda: MC("q?", ["Yes", " yes "], answer=0), ValueError, "both"),
    Bad("an empty option", lambda: MC("q?", ["x", "  "], answer=0), ValueError, "option (b) is empty"),
    Bad("options as one string", lambda: MC("q?", "abc", answer="a"), TypeError, "not one string"),
    Bad("question not text", lambda: MC(None, ["x", "y"], answer=0), TypeError, "question must be text"),
    Bad("answer index out of range", lambda: MC("q?", ["x", "y"], answer=5), ValueError, "answer 5"),
    Bad("answer True", lambda: MC("q?", ["x", "y"], answer=True), ValueError, "answer True"),
    Bad("one option", lambda: MC("q?", ["x"], answer=0), ValueError, "at least 2 options"),
    Bad("explanations of the wrong length", lambda: MC("q?", ["x", "y"], answer=0, explanations=["a"]), ValueError, "explanations"),
    Bad("check of an unknown id", lambda: check("no-such-question", "a"), KeyError, "no-such-question"),
    Bad("check_quiz of a list", lambda: check_quiz(["a", "b"]), TypeError, "dict of question id"),
]


@pytest.mark.parametrize("row", rows(TABLE))
def test_refused(row):
    assert_refused(row)


def test_letters_and_texts_are_unambiguous():
    q = MC("Which?", ["a", "b", "c"], answer="b")  # options that are their own letters
    assert q.answer == 1 and grade_choice(q, "b")[0] and grade_choice(q, "(B)")[0]
    q = MC("Which?", ["x", "y", "z"], answer="z")  # 'x', 'z': letters beyond the options read as text
    assert q.answer == 2 and grade_choice(q, "Z")[0] and not grade_choice(q, "x")[0]
    q = MC("Which?", ["causal", "bidirectional"], answer="Bidirectional ")
    assert q.answer == 1 and grade_choice(q, 1)[0] and grade_choice(q, "b)")[0]
    for chosen in ("q", 1.5, None, 7):
        ok, message = grade_choice(q, chosen)
        assert not ok and "answer with a letter from a to b" in message
