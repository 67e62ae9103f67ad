"""A generated English->French fragment: real words, real rules, no download.

The toy translator needs data where **word-by-word substitution fails** and cross-attention must
learn reordering and agreement, yet which is small enough to train on a CPU in minutes. This module
generates such a fragment from a seed. Every sentence is a clause (or clauses joined by "and"/"et")
built from small lexicon tables, and the French side obeys these rules of real French:

* nouns have gender; articles agree in gender and number: le/la/les, un/une/des;
* elision before a vowel or mute h: l'homme, j'aime, n'ouvre, d'un; "de + le" -> du, "de + les" -> des;
  "ce" -> "cet" and "ma/sa" -> "mon/son" before a vowel (cet oiseau, mon école);
* most adjectives follow the noun and agree (les voitures rouges, les filles heureuses); a few common
  ones precede it (petit, grand, bon, beau, jeune, vieux, nouveau) with irregular forms
  (belle/beaux/bel, vieille/vieil, nouvelle/nouvel): "the small white dogs" -> "les petits chiens blancs";
* verbs are conjugated for person and number in the present tense: regular -er verbs (with the
  spelling changes of manger and acheter) and irregulars (être, avoir, voir, prendre, vouloir,
  lire, écrire, ouvrir, entendre, attendre, dormir, courir, rire);
* negation wraps the verb, "ne ... pas" (n' before a vowel), and turns an indefinite direct object
  into "de": "he does not have a dog" -> "il n'a pas de chien";
* "des" + pre-nominal adjective -> "de" (written French): "I see small dogs" -> "je vois de petits chiens";
* numbers one..ten (un/une, deux..dix) with plural nouns;
* prepositional phrases: in/on/under/near/with -> dans/sur/sous/près de/avec;
* English "look for", "listen to", "wait for" become single verbs with a direct object
  (chercher, écouter, attendre); English generic plurals after "like" are definite in French
  (so "like" only takes definite objects here, to keep one translation per sentence).

Choices that keep the mapping one-to-one (so exact match is a fair metric): English "you" is always
"tu" and "you all" is always "vous"; "they" is "ils"; pronoun subjects of unknown gender are
masculine ("i am happy" -> "je suis heureux"). Everything is lowercase; the only punctuation is the
final period, attached to the last word ("... rouge.") exactly as :func:`course_lib.tokenizer.normalize`
writes it.

Public API: :func:`generate_pair`, :func:`make_splits`, :func:`load_tsv`, :func:`save_tsv`,
:func:`dictionary_baseline` (and :func:`fragment_lexicon`), plus the lexicon tables and
:class:`Clause` / :class:`NounPhrase` / :func:`realize` for building a sentence by hand (tests and
notebooks use them for hand-checked examples). The metrics that score a translation are in
:mod:`course_lib.metrics`.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..tokenizer import detokenize, tokenize

# =============================================================================================
# Lexicon. Tags say which words make sense together ("the red apple", not "the red song").
# =============================================================================================
HUMAN, ANIMAL, FOOD, OBJECT, READABLE, WRITABLE, OPENABLE, FURNITURE, VEHICLE, BUILDING, PLACE, PLANT, SONG, CONTAINER = (
    "human", "animal", "food", "object", "readable", "writable", "openable", "furniture", "vehicle",
    "building", "place", "plant", "song", "container",
)
ANIMATE = frozenset({HUMAN, ANIMAL})
PHYSICAL = frozenset({HUMAN, ANIMAL, FOOD, OBJECT, FURNITURE, VEHICLE, BUILDING, PLACE, PLANT})
THINGS = frozenset({FOOD, OBJECT, FURNITURE, VEHICLE, BUILDING, PLANT})


@dataclass(frozen=True)
class Noun:
    en: str
    en_pl: str
    fr: str
    fr_pl: str
    gender: str  # "m" or "f"
    tags: frozenset


def _n(en, fr, gender, *tags, en_pl=None, fr_pl=None) -> Noun:
    """Regular plurals add -s; irregular ones (men, oiseaux, chevaux, souris...) are spelled out."""
    return Noun(en, en_pl or en + "s", fr, fr_pl or fr + "s", gender, frozenset(tags))


NOUNS: tuple[Noun, ...] = (
    # people
    _n("man", "homme", "m", HUMAN, en_pl="men"),
    _n("woman", "femme", "f", HUMAN, en_pl="women"),
    _n("boy", "garçon", "m", HUMAN),
    _n("girl", "fille", "f", HUMAN),
    _n("child", "enfant", "m", HUMAN, en_pl="children"),
    _n("friend", "ami", "m", HUMAN),
    _n("student", "étudiant", "m", HUMAN),
    _n("teacher", "professeur", "m", HUMAN),
    # animals
    _n("dog", "chien", "m", ANIMAL),
    _n("cat", "chat", "m", ANIMAL),
    _n("bird", "oiseau", "m", ANIMAL, fr_pl="oiseaux"),
    _n("horse", "cheval", "m", ANIMAL, fr_pl="chevaux"),
    _n("mouse", "souris", "f", ANIMAL, en_pl="mice", fr_pl="souris"),
    # food
    _n("apple", "pomme", "f", FOOD),
    _n("cake", "gâteau", "m", FOOD, fr_pl="gâteaux"),
    _n("orange", "orange", "f", FOOD),
    # small objects
    _n("book", "livre", "m", OBJECT, READABLE, WRITABLE, OPENABLE),
    _n("letter", "lettre", "f", OBJECT, READABLE, WRITABLE, OPENABLE),
    _n("newspaper", "journal", "m", OBJECT, READABLE, fr_pl="journaux"),
    _n("key", "clé", "f", OBJECT),
    _n("bottle", "bouteille", "f", OBJECT, OPENABLE, CONTAINER),
    _n("box", "boîte", "f", OBJECT, OPENABLE, CONTAINER, en_pl="boxes"),
    _n("flower", "fleur", "f", PLANT),
    _n("tree", "arbre", "m", PLANT),
    # furniture
    _n("table", "table", "f", FURNITURE),
    _n("chair", "chaise", "f", FURNITURE),
    _n("window", "fenêtre", "f", FURNITURE, OPENABLE),
    _n("door", "porte", "f", FURNITURE, OPENABLE),
    # vehicles
    _n("car", "voiture", "f", VEHICLE, CONTAINER),
    _n("boat", "bateau", "m", VEHICLE, fr_pl="bateaux"),
    _n("plane", "avion", "m", VEHICLE),
    # buildings and places
    _n("house", "maison", "f", BUILDING, CONTAINER),
    _n("school", "école", "f", BUILDING, CONTAINER),
    _n("hotel", "hôtel", "m", BUILDING, CONTAINER),
    _n("garden", "jardin", "m", PLACE),
    _n("park", "parc", "m", PLACE),
    _n("kitchen", "cuisine", "f", PLACE, CONTAINER),
    _n("street", "rue", "f", PLACE),
    _n("city", "ville", "f", PLACE, en_pl="cities"),
    # not physical
    _n("song", "chanson", "f", SONG, WRITABLE),
)


@dataclass(frozen=True)
class Adj:
    en: str
    forms: tuple[str, str, str, str]  # masc sg, fem sg, masc pl, fem pl
    pre: bool  # True: before the noun in French (petit, beau...); False: after it (noir, heureux...)
    tags: frozenset
    before_vowel: str | None = None  # masc sg form before a vowel: bel, vieil, nouvel

    def form(self, gender: str, plural: bool) -> str:
        return self.forms[(gender == "f") + 2 * plural]


def _a(en, ms, tags, *, fs=None, mp=None, fp=None, pre=False, before_vowel=None) -> Adj:
    """Regular agreement: +e for feminine (unless it already ends in -e), +s for plural (unless -s/-x)."""
    fs = fs or (ms if ms.endswith("e") else ms + "e")
    mp = mp or (ms if ms.endswith(("s", "x")) else ms + "s")
    fp = fp or fs + "s"
    return Adj(en, (ms, fs, mp, fp), pre, frozenset(tags), before_vowel)


_COLOURABLE = THINGS | {ANIMAL}
ADJECTIVES: tuple[Adj, ...] = (
    # before the noun (the BAGS adjectives: beauty, age, goodness, size)
    _a("small", "petit", PHYSICAL, pre=True),
    _a("big", "grand", PHYSICAL, pre=True),
    _a("good", "bon", {HUMAN, ANIMAL, FOOD, OBJECT, SONG}, fs="bonne", pre=True),
    _a("beautiful", "beau", PHYSICAL | {SONG}, fs="belle", mp="beaux", pre=True, before_vowel="bel"),
    _a("young", "jeune", ANIMATE, pre=True),
    _a("old", "vieux", PHYSICAL, fs="vieille", pre=True, before_vowel="vieil"),
    _a("new", "nouveau", THINGS | {SONG}, fs="nouvelle", mp="nouveaux", pre=True, before_vowel="nouvel"),
    # after the noun
    _a("black", "noir", _COLOURABLE),
    _a("white", "blanc", _COLOURABLE, fs="blanche"),
    _a("red", "rouge", _COLOURABLE),
    _a("green", "vert", _COLOURABLE),
    _a("grey", "gris", _COLOURABLE, fs="grise"),
    _a("happy", "heureux", ANIMATE, fs="heureuse"),
    _a("sad", "triste", ANIMATE | {SONG}),
    _a("tired", "fatigué", ANIMATE),
    _a("kind", "gentil", ANIMATE, fs="gentille"),
    _a("clever", "intelligent", ANIMATE),
    _a("fast", "rapide", {ANIMAL, VEHICLE}),
    _a("empty", "vide", {CONTAINER}),
)


def _er(stem: str) -> tuple[str, ...]:
    """Regular -er verb, present tense: je/tu/il/nous/vous/ils."""
    return (stem + "e", stem + "es", stem + "e", stem + "ons", stem + "ez", stem + "ent")


@dataclass(frozen=True)
class Verb:
    en: str  # base form, possibly with a particle: "look for"
    en_3s: str  # he/she/it form: "looks for"
    fr: tuple[str, ...]  # je, tu, il/elle, nous, vous, ils/elles
    subj: frozenset  # tags a subject noun must have
    obj: frozenset | None  # tags an object noun may have; None = intransitive
    definite_only: bool = False  # "aimer": generic objects are definite in French


def _v(en, en_3s, fr, subj=ANIMATE, obj=None, definite_only=False) -> Verb:
    return Verb(en, en_3s, tuple(fr), frozenset(subj), None if obj is None else frozenset(obj), definite_only)


VERBS: tuple[Verb, ...] = (
    # transitive
    _v("see", "sees", ["vois", "vois", "voit", "voyons", "voyez", "voient"], obj=PHYSICAL),
    _v("have", "has", ["ai", "as", "a", "avons", "avez", "ont"], {HUMAN}, THINGS | {ANIMAL}),
    _v("take", "takes", ["prends", "prends", "prend", "prenons", "prenez", "prennent"], {HUMAN}, {FOOD, OBJECT, VEHICLE}),
    _v("like", "likes", _er("aim"), obj=PHYSICAL | {SONG}, definite_only=True),
    _v("eat", "eats", ["mange", "manges", "mange", "mangeons", "mangez", "mangent"], obj={FOOD}),
    _v("find", "finds", _er("trouv"), obj={ANIMAL, FOOD, OBJECT}),
    _v("look for", "looks for", _er("cherch"), obj={HUMAN, ANIMAL, FOOD, OBJECT}),
    _v("buy", "buys", ["achète", "achètes", "achète", "achetons", "achetez", "achètent"], {HUMAN}, THINGS - {PLANT}),
    _v("want", "wants", ["veux", "veux", "veut", "voulons", "voulez", "veulent"], obj=THINGS | {ANIMAL}),
    _v("help", "helps", _er("aid"), {HUMAN}, {HUMAN}),
    _v("hear", "hears", ["entends", "entends", "entend", "entendons", "entendez", "entendent"], obj=ANIMATE | {SONG, VEHICLE}),
    _v("read", "reads", ["lis", "lis", "lit", "lisons", "lisez", "lisent"], {HUMAN}, {READABLE}),
    _v("write", "writes", ["écris", "écris", "écrit", "écrivons", "écrivez", "écrivent"], {HUMAN}, {WRITABLE}),
    _v("open", "opens", ["ouvre", "ouvres", "ouvre", "ouvrons", "ouvrez", "ouvrent"], {HUMAN}, {OPENABLE}),
    _v("listen to", "listens to", _er("écout"), obj=ANIMATE | {SONG}),
    _v("wait for", "waits for", ["attends", "attends", "attend", "attendons", "attendez", "attendent"], obj=ANIMATE | {VEHICLE}),
    # intransitive
    _v("sleep", "sleeps", ["dors", "dors", "dort", "dormons", "dormez", "dorment"]),
    _v("run", "runs", ["cours", "cours", "court", "courons", "courez", "courent"]),
    _v("sing", "sings", _er("chant"), {HUMAN}),
    _v("play", "plays", _er("jou")),
    _v("laugh", "laughs", ["ris", "ris", "rit", "rions", "riez", "rient"], {HUMAN}),
)
BE_EN = ("am", "are", "is", "are", "are", "are")
BE_FR = ("suis", "es", "est", "sommes", "êtes", "sont")

# Pronoun subjects: English, French, person index 0..5 (je tu il nous vous ils), gender.
PRONOUNS: dict[str, tuple[str, int, str]] = {
    "i": ("je", 0, "m"),
    "you": ("tu", 1, "m"),
    "he": ("il", 2, "m"),
    "she": ("elle", 2, "f"),
    "we": ("nous", 3, "m"),
    "you all": ("vous", 4, "m"),
    "they": ("ils", 5, "m"),
}

NUMBERS_EN = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
NUMBERS_FR = (None, "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix")  # 1 = un/une

# Determiners: English singular / plural, French (masc sg, fem sg, plural). "a" in the plural is
# the bare English plural ("I see dogs"), French "des".
DETERMINERS: dict[str, tuple[str, str, tuple[str, str, str]]] = {
    "the": ("the", "the", ("le", "la", "les")),
    "a": ("a", "", ("un", "une", "des")),
    "this": ("this", "these", ("ce", "cette", "ces")),
    "my": ("my", "my", ("mon", "ma", "mes")),
    "his": ("his", "his", ("son", "sa", "ses")),  # French agrees with the *possessed* noun:
    "her": ("her", "her", ("son", "sa", "ses")),  # "her dog" -> "son chien"
    "our": ("our", "our", ("notre", "notre", "nos")),
    "their": ("their", "their", ("leur", "leur", "leurs")),
    "": ("", "", ("", "", "")),  # no determiner: "two dogs" -> "deux chiens"
}

# Prepositions: French words, and the nouns that make a sensible place for them (None = people
# and animals: "with my dog"). "near" is "près de", which contracts: près du parc, près des arbres.
PREPOSITIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "in": (("dans",), ("garden", "park", "kitchen", "street", "city", "house", "school", "hotel", "car",
                       "boat", "plane")),
    "on": (("sur",), ("table", "chair", "boat", "box", "car")),
    "under": (("sous",), ("table", "chair", "tree", "car")),
    "near": (("près", "de"), ("house", "school", "hotel", "garden", "park", "city", "tree", "door", "window",
                              "table")),
    "with": (("avec",), None),
}

_VOWELS = set("aeiouyàâäéèêëîïôöûùü")
_H_ASPIRE = {"huit"}  # h aspiré: "les huit", "de huit" (no elision); other h- words here have a mute h


def _starts_with_vowel(word: str) -> bool:
    return word[:1] in _VOWELS or (word[:1] == "h" and word not in _H_ASPIRE)


# =============================================================================================
# Building a clause and realising it in both languages
# =============================================================================================
@dataclass(frozen=True)
class NounPhrase:
    noun: Noun
    plural: bool = False
    det: str = "the"  # a key of DETERMINERS
    number: int | None = None  # 1..10; 1 only without determiner ("one dog"), 2..10 plural
    pre: Adj | None = None  # an English adjective before the noun (order: pre, then post)
    post: Adj | None = None

    @property
    def person(self) -> int:
        return 5 if self.plural else 2


@dataclass(frozen=True)
class Clause:
    subject: str | NounPhrase  # a PRONOUNS key or a noun phrase
    verb: Verb | None  # None = "to be" (then pred_adj or pp)
    obj: NounPhrase | None = None
    pred_adj: Adj | None = None  # "the cat is black"
    pp: tuple[str, NounPhrase] | None = None  # ("in", the garden)
    negated: bool = False


def _np_en(np: NounPhrase) -> list[str]:
    sg, pl, _ = DETERMINERS[np.det]
    words = [pl if np.plural else sg]
    if np.number is not None:
        words.append(NUMBERS_EN[np.number - 1])
    if np.pre:
        words.append(np.pre.en)
    if np.post:
        words.append(np.post.en)
    words.append(np.noun.en_pl if np.plural else np.noun.en)
    words = [w for w in words if w]
    if words[0] == "a" and words[1][:1] in "aeiou":  # English has its own "elision": an apple, an old man
        words[0] = "an"
    return words


def _np_fr(np: NounPhrase, negated_object: bool = False) -> list[str]:
    g, pl, n = np.noun.gender, np.plural, np.noun
    noun = n.fr_pl if pl else n.fr
    det = DETERMINERS[np.det][2][2 if pl else (g == "f")]
    if np.det == "a" and np.number is None:
        if negated_object:
            det = "de"  # "je n'ai pas de chien", "je ne vois pas de chats"
        elif pl and np.pre:
            det = "de"  # "de petits chiens" (written French; "des petits chiens" is colloquial)
    words = [det]
    if np.number is not None:
        words.append(("une" if g == "f" else "un") if np.number == 1 else NUMBERS_FR[np.number - 1])
    if np.pre:
        form = np.pre.form(g, pl)
        if g == "m" and not pl and np.pre.before_vowel and _starts_with_vowel(noun):
            form = np.pre.before_vowel  # "le vieil homme", "un bel oiseau"
        words.append(form)
    words.append(noun)
    if np.post:
        words.append(np.post.form(g, pl))
    return [w for w in words if w]


def _surface_fr(words: list[str]) -> list[str]:
    """Contractions, then elisions: both depend on the *next* word, so they run on the whole clause."""
    # 1. "de" + article: près du parc, près des arbres; de + des/de -> de (près d'arbres, près de petits chiens).
    #    "de le" only contracts before a consonant: "près de l'hôtel".
    merged: list[str] = [] if "de" in words else words
    i = len(words) if merged is words else 0
    while i < len(words):
        w, nxt = words[i], words[i + 1] if i + 1 < len(words) else ""
        after = words[i + 2] if i + 2 < len(words) else ""
        if w == "de" and nxt == "le" and not _starts_with_vowel(after):
            merged.append("du")
            i += 2
        elif w == "de" and nxt in ("les", "des", "de"):
            merged.append("des" if nxt == "les" else "de")
            i += 2
        else:
            merged.append(w)
            i += 1
    # 2. Elision and vowel forms: l'homme, j'aime, n'ouvre, d'un; cet oiseau; mon école, son église.
    out = []
    for w, nxt in zip(merged, merged[1:] + [""]):
        if nxt and _starts_with_vowel(nxt):
            if w in ("le", "la", "je", "ne", "de"):
                w = w[0] + "'"
            elif w == "ce":
                w = "cet"
            elif w == "ma":
                w = "mon"
            elif w == "sa":
                w = "son"
        out.append(w)
    return out


def _subject_info(subject: str | NounPhrase) -> tuple[list[str], list[str], int, str, bool]:
    """English words, French words, person 0..5, gender, plural."""
    if isinstance(subject, NounPhrase):
        return _np_en(subject), _np_fr(subject), subject.person, subject.noun.gender, subject.plural
    fr, person, gender = PRONOUNS[subject]
    return subject.split(), [fr], person, gender, person >= 3


def _clause_words(c: Clause) -> tuple[list[str], list[str]]:
    en, fr, person, gender, plural = _subject_info(c.subject)
    if c.verb is None:  # to be
        en += [BE_EN[person]] + (["not"] if c.negated else [])
        fr += (["ne"] if c.negated else []) + [BE_FR[person]] + (["pas"] if c.negated else [])
        if c.pred_adj is not None:
            en.append(c.pred_adj.en)
            fr.append(c.pred_adj.form(gender, plural))  # "les filles sont heureuses"
    else:
        v = c.verb
        if c.negated:
            en += ["does" if person == 2 else "do", "not"] + v.en.split()
            fr += ["ne", v.fr[person], "pas"]
        else:
            en += (v.en_3s if person == 2 else v.en).split()
            fr.append(v.fr[person])
        if c.obj is not None:
            en += _np_en(c.obj)
            fr += _np_fr(c.obj, negated_object=c.negated)
    if c.pp is not None:
        prep, np = c.pp
        en += [prep] + _np_en(np)
        fr += list(PREPOSITIONS[prep][0]) + _np_fr(np)
    return en, _surface_fr(fr)


def _realize_words(clauses: Sequence[Clause]) -> tuple[list[str], list[str]]:
    en: list[str] = []
    fr: list[str] = []
    for k, c in enumerate(clauses):
        e, f = _clause_words(c)
        if k:
            en.append("and")
            fr.append("et")
        en += e
        fr += f
    return en, fr


def _join(words: list[str]) -> str:
    # Same result as tokenizer.detokenize(words + ["."]) for fragment words, several times faster.
    return " ".join(words).replace("' ", "'") + "."


def realize(clauses: Clause | Sequence[Clause]) -> tuple[str, str]:
    """One clause, or several joined by "and"/"et", as an (English, French) sentence pair."""
    en, fr = _realize_words([clauses] if isinstance(clauses, Clause) else clauses)
    return _join(en), _join(fr)


# =============================================================================================
# Random sampling
# =============================================================================================
# Precomputed lookups so that sampling is a few rng calls per word (60k pairs in ~a second).
_NOUN_BY_EN = {n.en: n for n in NOUNS}
_NOUNS_WITH: dict[frozenset, tuple[Noun, ...]] = {}
_ADJ_FOR: dict[tuple[Noun, bool], tuple[Adj, ...]] = {
    (n, pre): tuple(a for a in ADJECTIVES if a.pre == pre and a.tags & n.tags) for n in NOUNS for pre in (False, True)
}
_PRED_ADJ_FOR_HUMAN = tuple(a for a in ADJECTIVES if HUMAN in a.tags)
_TRANSITIVE = tuple(v for v in VERBS if v.obj is not None)
_INTRANSITIVE = tuple(v for v in VERBS if v.obj is None)
_PRONOUN_KEYS = tuple(PRONOUNS)
_POSSESSIVES = ("my", "his", "her", "our", "their")
_PREP_KEYS = tuple(PREPOSITIONS)
_MOVABLE = ANIMATE | {FOOD, OBJECT}  # things that can sensibly "be in the garden"


def _nouns_with(tags: frozenset) -> tuple[Noun, ...]:
    if tags not in _NOUNS_WITH:
        _NOUNS_WITH[tags] = tuple(n for n in NOUNS if n.tags & tags)
    return _NOUNS_WITH[tags]


_PREP_NOUNS = {
    prep: _nouns_with(ANIMATE) if names is None else tuple(_NOUN_BY_EN[x] for x in names)
    for prep, (_, names) in PREPOSITIONS.items()
}


def _sample_np(rng: random.Random, nouns: Sequence[Noun], *, allow_bare: bool = True, definite_only: bool = False,
               allow_number: bool = True, allow_one: bool = True) -> NounPhrase:
    noun = rng.choice(nouns)
    plural = rng.random() < 0.45
    number = None
    r = rng.random()
    if definite_only:  # "like": the / this / possessive
        det = "the" if r < 0.6 else ("this" if r < 0.75 else rng.choice(_POSSESSIVES))
    elif r < 0.40 or (r >= 0.83 and not allow_number):
        det = "the"
    elif r < 0.58:
        det = "a"  # in the plural: bare English plural, French "des"
        if plural and not allow_bare:
            det = "the"
    elif r < 0.68:
        det = "this"
    elif r < 0.83:
        det = rng.choice(_POSSESSIVES)
    else:  # a number, with or without a determiner: "two dogs", "the two dogs", "my three cats"
        det = "" if rng.random() < 0.6 else rng.choice(("the", "this", "my", "our"))
        number = rng.randint(1, 10) if (det == "" and allow_one) else rng.randint(2, 10)
        plural = number > 1
    pre_choices = _ADJ_FOR[noun, True]
    post_choices = _ADJ_FOR[noun, False]
    pre = rng.choice(pre_choices) if pre_choices and rng.random() < 0.25 else None
    post = rng.choice(post_choices) if post_choices and rng.random() < 0.30 else None
    return NounPhrase(noun, plural, det, number, pre, post)


def _sample_clause(rng: random.Random) -> Clause:
    negated = rng.random() < 0.3
    r = rng.random()
    kind = "transitive" if r < 0.6 else ("intransitive" if r < 0.8 else "be")
    verb = None if kind == "be" else rng.choice(_TRANSITIVE if kind == "transitive" else _INTRANSITIVE)
    be_where = kind == "be" and rng.random() < 0.4  # "the cat is in the garden" (else "the cat is black")
    subj_tags = verb.subj if verb is not None else (_MOVABLE if be_where else PHYSICAL)
    if rng.random() < 0.35:  # pronouns are people, and every verb and predicate accepts people
        subject: str | NounPhrase = rng.choice(_PRONOUN_KEYS)
    else:
        # No bare plural subjects: "dogs sleep" is generic, French says "les chiens dorment";
        # avoiding it keeps one translation per sentence.
        subject = _sample_np(rng, _nouns_with(subj_tags), allow_bare=False)
    obj = pred_adj = pp = None
    if verb is not None and verb.obj is not None:
        # "one" under negation ("il ne voit pas un chien") reads as contrastive; avoid it.
        obj = _sample_np(rng, _nouns_with(verb.obj), definite_only=verb.definite_only,
                         allow_number=not verb.definite_only, allow_one=not negated)
    if kind == "be" and not be_where:
        if isinstance(subject, NounPhrase):
            pred_adj = rng.choice(_ADJ_FOR[subject.noun, False] + _ADJ_FOR[subject.noun, True])
        else:
            pred_adj = rng.choice(_PRED_ADJ_FOR_HUMAN)
    elif be_where or rng.random() < 0.3:
        animate_subject = not isinstance(subject, NounPhrase) or bool(subject.noun.tags & ANIMATE)
        prep = rng.choice(_PREP_KEYS if animate_subject else _PREP_KEYS[:-1])  # "with" needs a living subject
        pp = (prep, _sample_np(rng, _PREP_NOUNS[prep], allow_number=False))
    return Clause(subject, verb, obj, pred_adj, pp, negated)


def _n_tokens(sentence: str) -> int:
    return len(tokenize(sentence))


TRAIN_MAX_WORDS = 16  # cap on English tokens (period included) for train/valid/test
P_COORDINATED = 0.1  # share of train sentences with two clauses joined by "and", so "and"/"et" is known


def generate_pair(rng: random.Random, max_words: int | None = None) -> tuple[str, str]:
    """One (English, French) pair. ``max_words`` caps the English length in tokens (period included)
    by rejection sampling, so the pairs are drawn from the capped distribution."""
    while True:
        clauses = [_sample_clause(rng)]
        if rng.random() < P_COORDINATED:
            clauses.append(_sample_clause(rng))
        en, fr = _realize_words(clauses)
        # English words are single tokens (no apostrophes), so tokens = words + the period.
        if max_words is None or len(en) + 1 <= max_words:
            return _join(en), _join(fr)


def _generate_long(rng: random.Random, min_words: int, max_words: int) -> tuple[str, str]:
    """Chain clauses with "and" until the English side has at least ``min_words`` tokens."""
    while True:
        clauses = [_sample_clause(rng)]
        en, fr = _realize_words(clauses)
        while len(en) + 1 < min_words:
            clauses.append(_sample_clause(rng))
            en, fr = _realize_words(clauses)
        if len(en) + 1 <= max_words:
            return _join(en), _join(fr)


def make_splits(seed: int = 0, n_train: int = 60000, n_valid: int = 1000, n_test: int = 1000,
                n_long: int = 500) -> dict[str, list[tuple[str, str]]]:
    """Deterministic splits. train/valid/test: one pool of distinct English sentences (capped at
    ``TRAIN_MAX_WORDS`` tokens), shuffled, then cut, so all three share a length distribution and no
    English sentence is in two splits. long: every English sentence is strictly longer than the
    longest training one (clauses joined by "and"), for length-generalisation experiments."""
    rng = random.Random(seed)
    total = n_train + n_valid + n_test
    seen: set[str] = set()
    pool: list[tuple[str, str]] = []
    while len(pool) < total:
        pair = generate_pair(rng, TRAIN_MAX_WORDS)
        if pair[0] not in seen:
            seen.add(pair[0])
            pool.append(pair)
    rng.shuffle(pool)  # dedup keeps first occurrences; shuffling removes any order effect
    splits = {
        "valid": pool[:n_valid],
        "test": pool[n_valid:n_valid + n_test],
        "train": pool[n_valid + n_test:],
    }
    train_max = max((_n_tokens(en) for en, _ in splits["train"]), default=0)
    long: list[tuple[str, str]] = []
    while len(long) < n_long:
        pair = _generate_long(rng, train_max + 1, 2 * max(train_max, TRAIN_MAX_WORDS))
        if pair[0] not in seen:
            seen.add(pair[0])
            long.append(pair)
    if not all(_n_tokens(en) > train_max for en, _ in long):  # not `assert`: must hold under python -O too
        raise AssertionError("the long split must be longer than every training sentence")
    splits["long"] = long
    return {k: splits[k] for k in ("train", "valid", "test", "long")}


# =============================================================================================
# Real data: the common "English<TAB>French[<TAB>attribution...]" format (e.g. Tatoeba/manythings)
# =============================================================================================
def load_tsv(path: str | Path, max_pairs: int | None = None) -> list[tuple[str, str]]:
    """Read (English, French) pairs; extra columns are ignored, blank or one-column lines skipped."""
    pairs: list[tuple[str, str]] = []
    with open(path, encoding="utf-8-sig") as f:  # -sig: tolerate a byte-order mark
        for line in f:
            if max_pairs is not None and len(pairs) >= max_pairs:
                break
            cols = line.rstrip("\r\n").split("\t")
            if len(cols) < 2:
                continue
            en, fr = cols[0].strip(), cols[1].strip()
            if not en or not fr:
                continue
            pairs.append((en, fr))
    return pairs


def save_tsv(pairs: Iterable[tuple[str, str]], path: str | Path) -> None:
    """Write pairs as "English<TAB>French" lines (UTF-8); :func:`load_tsv` reads them back."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for en, fr in pairs:
            if any(ch in s for s in (en, fr) for ch in "\t\n\r"):
                raise ValueError(f"A sentence contains a tab or newline and cannot be saved as TSV: {(en, fr)!r}")
            f.write(f"{en}\t{fr}\n")


# =============================================================================================
# Baseline and metrics
# =============================================================================================
def fragment_lexicon() -> dict[str, str]:
    """The hand-written bilingual dictionary of the fragment, one French form per English word form.

    Nouns keep the number the English form shows (dogs -> chiens); adjectives, articles and
    possessives take the masculine singular; a verb's base form takes the "ils" form (its most
    frequent person here) and the -s form the "il" form. Words French has no counterpart for
    ("do", "does", the particles of "look for", "listen to", "wait for", the "all" of "you all")
    map to "" (dropped); "not" -> "pas".
    """
    lex: dict[str, str] = {".": ".", "and": "et", "not": "pas", "do": "", "does": "", "all": "",
                           "for": "", "to": "", "an": "un", "am": BE_FR[0], "is": BE_FR[2], "are": BE_FR[5]}
    for n in NOUNS:
        lex[n.en], lex[n.en_pl] = n.fr, n.fr_pl
    for adj in ADJECTIVES:
        lex[adj.en] = adj.forms[0]
    for v in VERBS:
        lex[v.en.split()[0]], lex[v.en_3s.split()[0]] = v.fr[5], v.fr[2]
    for en, (fr, _, _) in PRONOUNS.items():
        if " " not in en:  # "you all" is substituted word by word: "you" -> "tu", "all" -> ""
            lex[en] = fr
    for key, (sg, pl, (ms, _, fr_pl)) in DETERMINERS.items():
        if sg:
            lex[sg] = ms
        if pl and pl != sg:
            lex[pl] = fr_pl
    lex["one"] = "un"
    for en, fr in zip(NUMBERS_EN[1:], NUMBERS_FR[1:]):
        lex[en] = fr
    for en, (fr, _) in PREPOSITIONS.items():
        lex[en] = " ".join(fr)
    return lex


def dictionary_baseline(pairs_train: Sequence[tuple[str, str]], use_fragment_lexicon: bool = False) -> Callable[[str], str]:
    """A word-by-word substitution translator: the baseline a real model must beat.

    Each English token is replaced by one French string, in place: no reordering, no agreement,
    no "ne ... pas" around the verb. The dictionary is learned from ``pairs_train``: for each English
    word, the French word most strongly associated with it by the Dice coefficient over sentences,
    ``2·c(e,f) / (c(e) + c(f))`` (raw co-occurrence counts would map every word to "le" or ".");
    punctuation only maps to punctuation; unknown words are copied. Learned from data, it works on
    a learner's own TSV file too, and on the fragment it picks the most useful single form
    ("the" -> "les", "white" -> "blanches"), which makes it a slightly *stronger* baseline than the
    hand-written :func:`fragment_lexicon`; ``use_fragment_lexicon=True`` uses that instead for every
    word it covers. The translator's ``.lexicon`` attribute holds the dictionary.
    """
    fixed = fragment_lexicon() if use_fragment_lexicon else {}
    c_en: Counter[str] = Counter()
    c_fr: Counter[str] = Counter()
    c_pair: dict[str, Counter[str]] = defaultdict(Counter)
    for en, fr in pairs_train:
        e_types = {w for w in tokenize(en) if w not in fixed}  # only learn what the lexicon lacks
        f_types = set(tokenize(fr))
        c_en.update(e_types)
        c_fr.update(f_types)
        for e in e_types:
            c_pair[e].update(f_types)
    lexicon: dict[str, str] = {}
    for e, counts in c_pair.items():
        candidates = [f for f in counts if _is_word(f) == _is_word(e)]
        if candidates:
            lexicon[e] = max(candidates, key=lambda f: (2 * counts[f] / (c_en[e] + c_fr[f]), f))
    lexicon.update(fixed)

    def translate(sentence: str) -> str:
        out = [lexicon.get(w, w) for w in tokenize(sentence)]
        return detokenize([w for phrase in out for w in phrase.split()])

    translate.lexicon = lexicon  # type: ignore[attr-defined]  # inspectable in a notebook
    return translate


def _is_word(tok: str) -> bool:
    return any(ch.isalnum() for ch in tok)
