"""A referee for generated English: a parser for the grammar of the course's English fragment.

:mod:`course_lib.lessons.en_fr` *generates* sentences from a small grammar and lexicon; this module
*recognises* them. :func:`parse` accepts a sentence only if

* it has the fragment's shape: subject, verb, object or complement, an optional prepositional
  phrase, clauses joined by "and", a final full stop;
* the verb agrees with the subject (*the dog sees*, *I am*, *they do not sleep*);
* determiners and numbers agree with their noun (*these dogs*, *one dog*);
* the words make sense together the way the lexicon says (*the red apple*, not *the red song*;
  what is *read* is readable).

    >>> parse("the dogs see the cat.")
    ('dog', 'see')
    >>> grammatical("the dogs sees the cat.")
    False
    >>> reason("the red song is sad.")
    "meaning: 'red song'"

Lesson 02 uses it to score text sampled from an encoder and from a causal model, and the
(subject, verb) pairs it returns to label sentences for the embedding experiment.
"""
from __future__ import annotations

from ..tokenizer import tokenize
from . import en_fr

NOUN_OF = {n.en: (n, False) for n in en_fr.NOUNS} | {n.en_pl: (n, True) for n in en_fr.NOUNS}
ADJ_OF = {a.en: a for a in en_fr.ADJECTIVES}
VERB_OF: dict = {}  # first word of a verb form -> (verb, is it the he/she/it form?)
for _v in en_fr.VERBS:
    VERB_OF[_v.en.split()[0]] = (_v, False)
    VERB_OF[_v.en_3s.split()[0]] = (_v, True)
PERSON = {"i": "1s", "you": "pl", "he": "3s", "she": "3s", "we": "pl", "they": "pl"}
SINGULAR_DET, PLURAL_DET = frozenset({"a", "an", "this"}), frozenset({"these"})
ANY_DET = frozenset({"the", "my", "his", "her", "our", "their"})
NUMBER = {w: i + 1 for i, w in enumerate(en_fr.NUMBERS_EN)}
END = "<end>"


class Ungrammatical(ValueError):
    """Raised by :func:`parse`; the message names the first problem found, e.g. ``agreement: 'dog see'``."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.w = tokenize(text) + [END]
        self.pos = 0

    @property
    def next(self) -> str:
        return self.w[self.pos]

    def take(self, allowed=None) -> str:
        word = self.w[self.pos]
        if allowed is not None and word not in allowed:
            raise Ungrammatical(f"expected {'/'.join(sorted(allowed)[:3])}…, got '{word}'")
        if word != END:
            self.pos += 1
        return word

    def noun_phrase(self):  # [determiner] [number] adjective* noun
        det = self.take() if self.next in SINGULAR_DET | PLURAL_DET | ANY_DET else None
        num = NUMBER[self.take()] if self.next in NUMBER else None
        adjs = []
        while self.next in ADJ_OF:
            adjs.append(ADJ_OF[self.take()])
        noun, plural = NOUN_OF[self.take(NOUN_OF)]
        if plural and (det in SINGULAR_DET or num == 1) or not plural and (det in PLURAL_DET or (num or 0) > 1):
            raise Ungrammatical(f"number: '{det or num} … {noun.en_pl if plural else noun.en}'")
        for a in adjs:
            if not a.tags & noun.tags:
                raise Ungrammatical(f"meaning: '{a.en} {noun.en}'")
        return noun.en, noun.tags, "pl" if plural else "3s"

    def clause(self) -> tuple[str, str]:
        if self.next in PERSON:  # a pronoun subject ("you all" is plural "you")
            subject = self.take()
            tags, person = frozenset({en_fr.HUMAN}), PERSON[subject]
            if subject == "you" and self.next == "all":
                self.take()
        else:
            subject, tags, person = self.noun_phrase()
        word = self.take()
        if word in ("am", "is", "are"):  # to be: adjective or prepositional phrase
            if word != {"1s": "am", "3s": "is", "pl": "are"}[person]:
                raise Ungrammatical(f"agreement: '{subject} {word}'")
            if self.next == "not":
                self.take()
            if self.next in ADJ_OF:
                a = ADJ_OF[self.take()]
                if not a.tags & tags:
                    raise Ungrammatical(f"meaning: '{subject} … {a.en}'")
            else:
                self.take(en_fr.PREPOSITIONS)
                self.noun_phrase()
            verb = "be"
        else:
            negated = word in ("do", "does")
            if negated:
                if (word == "does") != (person == "3s"):
                    raise Ungrammatical(f"agreement: '{subject} {word}'")
                self.take({"not"})
                word = self.take()
            v, is_3s = VERB_OF.get(word, (None, None))
            if v is None:
                raise Ungrammatical(f"expected a verb, got '{word}'")
            if is_3s and negated or not negated and is_3s != (person == "3s"):
                raise Ungrammatical(f"agreement: '{subject} {'… ' if negated else ''}{word}'")
            for particle in v.en.split()[1:]:  # look *for*, listen *to*
                self.take({particle})
            if not tags & v.subj:
                raise Ungrammatical(f"meaning: '{subject} {v.en}'")
            if v.obj is not None:
                obj, obj_tags, _ = self.noun_phrase()
                if not obj_tags & v.obj:
                    raise Ungrammatical(f"meaning: '{v.en} … {obj}'")
            verb = v.en
        if self.next in en_fr.PREPOSITIONS:  # an optional prepositional phrase
            self.take()
            self.noun_phrase()
        return subject, verb

    def sentence(self) -> tuple[str, str]:
        first = self.clause()
        while self.next == "and":
            self.take()
            self.clause()
        self.take({"."})
        self.take({END})
        return first


def parse(text: str) -> tuple[str, str]:
    """``(subject, verb)`` of the first clause of a sentence of the fragment.

    The subject is the noun's singular form or the pronoun (``"dog"``, ``"she"``), the verb its
    base form (``"see"``, ``"look for"``, ``"be"``). Raises :class:`Ungrammatical` with the reason.
    """
    return _Parser(text).sentence()


def reason(text: str) -> str | None:
    """Why ``text`` is not a sentence of the fragment (one short phrase), or ``None`` if it is."""
    try:
        parse(text)
    except Ungrammatical as err:
        return str(err)
    return None


def grammatical(text: str) -> bool:
    """True when :func:`parse` accepts ``text``."""
    return reason(text) is None
