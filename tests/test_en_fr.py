"""The generated English->French fragment: determinism, splits, French grammar, baseline, TSV I/O."""
from __future__ import annotations

import random
import re
import statistics

import pytest

from course_lib import en_fr, metrics
from course_lib.lessons.en_fr import ADJECTIVES, NOUNS, VERBS, Clause, NounPhrase, realize
from course_lib.tokenizer import tokenize

N = {n.en: n for n in NOUNS}
A = {a.en: a for a in ADJECTIVES}
V = {v.en: v for v in VERBS}


@pytest.fixture(scope="module")
def splits():
    return en_fr.make_splits(seed=0)  # the course's default splits (a few seconds)


def _all_pairs(splits):
    return [p for name in ("train", "valid", "test", "long") for p in splits[name]]


@pytest.fixture(scope="module")
def tokenized(splits):
    """(en, fr, English tokens, French tokens) for every pair, tokenized once."""
    return [(en, fr, tokenize(en), tokenize(fr)) for en, fr in _all_pairs(splits)]


# ---- determinism, sizes, disjointness, lengths ------------------------------------------------
def test_same_seed_same_splits_different_seed_different():
    small = dict(n_train=2000, n_valid=100, n_test=100, n_long=50)
    a, b, c = en_fr.make_splits(0, **small), en_fr.make_splits(0, **small), en_fr.make_splits(1, **small)
    assert a == b
    for name in a:
        assert a[name] != c[name], name


def test_generate_pair_is_deterministic_and_respects_max_words():
    r1, r2 = random.Random(5), random.Random(5)
    pairs1 = [en_fr.generate_pair(r1, max_words=7) for _ in range(200)]
    pairs2 = [en_fr.generate_pair(r2, max_words=7) for _ in range(200)]
    assert pairs1 == pairs2
    assert max(len(tokenize(en)) for en, _ in pairs1) <= 7


def test_sizes_and_keys(splits):
    assert list(splits) == ["train", "valid", "test", "long"]
    assert [len(splits[k]) for k in splits] == [60000, 1000, 1000, 500]
    for name, pairs in splits.items():
        for en, fr in pairs:
            assert en and fr and "\t" not in en + fr, name


def test_splits_are_disjoint_on_the_english_side(splits):
    seen: dict[str, str] = {}
    for name, pairs in splits.items():
        ens = [en for en, _ in pairs]
        assert len(set(ens)) == len(ens), f"duplicate inside {name}"
        for en in ens:
            assert en not in seen, f"{en!r} is in both {seen[en]} and {name}"
            seen[en] = name


def test_long_split_is_longer_than_every_training_sentence(splits):
    train_max = max(len(tokenize(en)) for en, _ in splits["train"])
    assert min(len(tokenize(en)) for en, _ in splits["long"]) > train_max
    assert train_max <= en_fr.TRAIN_MAX_WORDS


def test_train_valid_test_share_a_length_distribution(splits):
    means = {k: statistics.mean(len(tokenize(en)) for en, _ in splits[k]) for k in ("train", "valid", "test")}
    assert max(means.values()) - min(means.values()) < 0.5, means
    # "and" joins clauses in training too, so the long split only adds length, not a new word.
    assert sum(" and " in en for en, _ in splits["train"]) > 1000


def test_vocabulary_is_a_closed_fragment_of_a_few_hundred_words(tokenized):
    en_types = {w for _, _, en_toks, _ in tokenized for w in en_toks}
    fr_types = {w for _, _, _, fr_toks in tokenized for w in fr_toks}
    assert 120 <= len(en_types) <= 320 and 150 <= len(fr_types) <= 360, (len(en_types), len(fr_types))


# ---- hand-checked sentences -------------------------------------------------------------------
@pytest.mark.parametrize(
    "clause, expected",
    [
        (Clause(NounPhrase(N["dog"], True, "the", None, A["small"], A["white"]), V["see"],
                NounPhrase(N["car"], False, "the", None, None, A["red"]), negated=True),
         ("the small white dogs do not see the red car.", "les petits chiens blancs ne voient pas la voiture rouge.")),
        (Clause("he", V["have"], NounPhrase(N["dog"], False, "a"), negated=True),
         ("he does not have a dog.", "il n'a pas de chien.")),
        (Clause("i", V["like"], NounPhrase(N["school"], False, "my"), pp=("near", NounPhrase(N["park"]))),
         ("i like my school near the park.", "j'aime mon école près du parc.")),
        (Clause(NounPhrase(N["man"], False, "this", None, A["old"]), None, pp=("near", NounPhrase(N["hotel"]))),
         ("this old man is near the hotel.", "ce vieil homme est près de l'hôtel.")),
        (Clause(NounPhrase(N["bird"], False, "a", None, A["beautiful"]), V["sleep"],
                pp=("near", NounPhrase(N["tree"], True, "a"))),
         ("a beautiful bird sleeps near trees.", "un bel oiseau dort près d'arbres.")),
        (Clause(NounPhrase(N["girl"], True, "her"), None, pred_adj=A["happy"]),
         ("her girls are happy.", "ses filles sont heureuses.")),
        (Clause("we", V["eat"], NounPhrase(N["cake"], True, "a", None, A["good"])),
         ("we eat good cakes.", "nous mangeons de bons gâteaux.")),
        (Clause(NounPhrase(N["woman"], True, "", 3, None, A["happy"]), V["buy"], NounPhrase(N["apple"], False, "a")),
         ("three happy women buy an apple.", "trois femmes heureuses achètent une pomme.")),
        (Clause("you all", V["open"], NounPhrase(N["window"], False, "this", None, A["new"], A["green"]), negated=True),
         ("you all do not open this new green window.", "vous n'ouvrez pas cette nouvelle fenêtre verte.")),
        (Clause(NounPhrase(N["friend"], False, "", 1), V["wait for"], NounPhrase(N["mouse"], True, "the", 8)),
         ("one friend waits for the eight mice.", "un ami attend les huit souris.")),
    ],
)
def test_hand_checked_translations(clause, expected):
    assert realize(clause) == expected


def test_clauses_join_with_and():
    en, fr = realize([Clause("she", None, pred_adj=A["tired"]), Clause("they", V["run"])])
    assert (en, fr) == ("she is tired and they run.", "elle est fatiguée et ils courent.")


# ---- grammar spot checks over every generated sentence -----------------------------------------
EN_PLURALS = {n.en_pl for n in NOUNS}
EN_SINGULARS = {n.en: n for n in NOUNS}
NUMBER_WORDS = set(en_fr.NUMBERS_EN[1:])
POST_ADJ_EN = {a.en: a for a in ADJECTIVES if not a.pre}


def test_the_plus_plural_starts_with_les_and_singular_article_agrees(splits):
    checked = 0
    for en, fr in _all_pairs(splits):
        words = en.split()
        if words[0] != "the":
            continue
        if words[1] in EN_PLURALS or words[1] in NUMBER_WORDS:
            assert fr.startswith("les "), (en, fr)
            checked += 1
        elif words[1] in EN_SINGULARS:
            noun = EN_SINGULARS[words[1]]
            expected = "l'" if noun.fr[0] in "aeiouéèêh" else ("la " if noun.gender == "f" else "le ")
            assert fr.startswith(expected + noun.fr), (en, fr)
            checked += 1
    assert checked > 5000


def test_negation_wraps_the_verb(tokenized):
    for en, fr, en_toks, fr_toks in tokenized:
        n_not = en_toks.count("not")
        assert fr_toks.count("pas") == n_not, (en, fr)
        assert fr_toks.count("ne") + fr_toks.count("n'") == n_not, (en, fr)
        # "ne" comes right before the verb and "pas" right after it
        for i, tok in enumerate(fr_toks):
            if tok in ("ne", "n'"):
                assert fr_toks[i + 2] == "pas", (en, fr)


def test_post_nominal_adjectives_follow_the_noun_and_agree(tokenized):
    # unambiguous feminine plurals: not also a singular ("souris") or a masculine form
    fem_pl_fr = {n.fr_pl for n in NOUNS if n.gender == "f"} - {n.fr for n in NOUNS}
    masc_fr = {n.fr_pl for n in NOUNS if n.gender == "m"}
    adj_form_of = {form: a for a in ADJECTIVES if not a.pre for form in a.forms}
    plurals = {n.en_pl: n for n in NOUNS}
    n_fem_pl = 0
    for en, fr, en_toks, fr_toks in tokenized:
        for i, tok in enumerate(en_toks[:-1]):
            nxt = en_toks[i + 1]
            if tok in POST_ADJ_EN and (nxt in EN_SINGULARS or nxt in plurals):
                noun = EN_SINGULARS.get(nxt) or plurals[nxt]
                plural = nxt == noun.en_pl
                bigram = (noun.fr_pl if plural else noun.fr, POST_ADJ_EN[tok].form(noun.gender, plural))
                assert bigram in zip(fr_toks, fr_toks[1:]), (en, fr, bigram)
        for a, b in zip(fr_toks, fr_toks[1:]):
            if b in adj_form_of and a in fem_pl_fr and a not in masc_fr:
                assert b.endswith("es"), (fr, a, b)
                n_fem_pl += 1
    assert n_fem_pl > 500


def test_elision_and_contraction_are_applied(splits):
    no_elision = re.compile(r"\b(le|la|je|ne|de|ce|ma|sa) (?!huit\b)[aeiouéèêîôh]")
    no_contraction = re.compile(r"\bde (le|les|des) ")
    for _, fr in _all_pairs(splits):
        assert not no_elision.search(fr), fr
        assert not no_contraction.search(fr), fr
    french = " ".join(fr for _, fr in _all_pairs(splits))
    for form in ("l'homme", "j'ai", "n'", "d'", "du ", "cet ", "mon école", "vieil ", "bel "):
        assert form in french, form


@pytest.mark.parametrize(
    "en_subject, fr_subject, endings",
    [("we", "nous", ("ons", "sommes")), ("you all", "vous", ("ez", "êtes")), ("they", "ils", ("ent", "ont")),
     ("i", "je", ("e", "s", "x", "ai", "suis")), ("you", "tu", ("es", "s", "x", "as"))],
)
def test_verbs_agree_with_pronoun_subjects(splits, en_subject, fr_subject, endings):
    checked = 0
    for en, fr in splits["train"]:
        if not en.startswith(en_subject + " ") or (en_subject == "you" and en.startswith("you all")):
            continue
        toks = tokenize(fr)
        assert toks[0] in (fr_subject, fr_subject[0] + "'"), (en, fr)
        verb = toks[2] if toks[1] in ("ne", "n'") else toks[1]
        assert verb.endswith(endings), (en, fr, verb)
        checked += 1
    assert checked > 500


def test_numbers_take_plural_nouns(splits):
    num_fr = dict(zip(en_fr.NUMBERS_EN[1:], en_fr.NUMBERS_FR[1:]))
    for en, fr in splits["test"]:
        en_toks, fr_toks = tokenize(en), tokenize(fr)
        for i, tok in enumerate(en_toks):
            if tok in num_fr:
                assert num_fr[tok] in fr_toks, (en, fr)
                following = next(t for t in en_toks[i + 1:] if t in EN_PLURALS or t in EN_SINGULARS)
                assert following in EN_PLURALS, (en, fr)


# ---- baseline and metrics ---------------------------------------------------------------------
def test_dictionary_baseline_scores_poorly_but_not_zero(splits):
    refs = [fr for _, fr in splits["test"]]
    for use_lexicon in (False, True):
        translate = en_fr.dictionary_baseline(splits["train"], use_fragment_lexicon=use_lexicon)
        hyps = [translate(en) for en, _ in splits["test"]]
        bleu, chrf = metrics.corpus_bleu(hyps, refs), metrics.corpus_chrf(hyps, refs)
        em = metrics.exact_match(hyps, refs)
        print(f"dictionary baseline (fragment lexicon={use_lexicon}): BLEU {bleu:.2f}  chrF {chrf:.2f}  exact {em:.3f}")
        assert 0 < bleu <= 40
        assert 0 < chrf < 90
        assert em < 0.2


def test_baseline_is_word_by_word():
    translate = en_fr.dictionary_baseline(
        [("the dog sleeps.", "le chien dort."), ("the cat eats.", "le chat mange."), ("a dog eats.", "un chien mange.")]
    )
    assert translate("the cat sleeps.") == "le chat dort."
    assert translate("the zebra sleeps.") == "le zebra dort."  # unknown words are copied
    lex_translate = en_fr.dictionary_baseline([], use_fragment_lexicon=True)
    # no agreement, no reordering, no ne ... pas: exactly what a model must learn
    assert lex_translate("the small white dogs do not see the red car.") == "le petit blanc chiens pas voient le rouge voiture."


def test_metrics():
    refs = ["le chien dort.", "la voiture rouge."]
    assert metrics.corpus_bleu(refs, refs) == pytest.approx(100.0)
    assert metrics.corpus_chrf(refs, refs) == pytest.approx(100.0)
    assert metrics.exact_match(["le  chien dort. ", "la voiture"], refs) == 0.5
    assert metrics.corpus_bleu(["un chat mange."] * 2, refs) < 20
    with pytest.raises(ValueError):
        metrics.exact_match(["a"], refs)


# ---- TSV files ----------------------------------------------------------------------------------
def test_load_tsv_reads_the_common_format(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_text(
        "Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #1158250 (Wittydev)\n"
        "\n"
        "this line has no tab\n"
        "I'm happy.\tJe suis heureux.\n"
        "  Who?  \t  Qui ?  \n"
        "\tmissing English\n"
        "Thanks.\tMerci.\r\n",
        encoding="utf-8",
    )
    pairs = en_fr.load_tsv(path)
    assert pairs == [("Go.", "Va !"), ("I'm happy.", "Je suis heureux."), ("Who?", "Qui ?"), ("Thanks.", "Merci.")]
    assert en_fr.load_tsv(path, max_pairs=2) == pairs[:2]
    assert en_fr.load_tsv(path, max_pairs=0) == []


def test_save_and_load_round_trip(tmp_path, splits):
    path = tmp_path / "pairs.tsv"
    en_fr.save_tsv(splits["test"], path)
    assert en_fr.load_tsv(path) == splits["test"]
    with pytest.raises(ValueError):
        en_fr.save_tsv([("a\tb", "c")], tmp_path / "bad.tsv")


def test_bleu_details_parts_and_signature():
    hyps, refs = ["le chat mange .", "la voiture"], ["le chat mange .", "la voiture rouge"]
    d = metrics.bleu_details(hyps, refs)
    assert d["bleu"] == pytest.approx(metrics.corpus_bleu(hyps, refs))
    assert d["precisions"] == [100.0, 100.0, 100.0, 100.0]  # every hypothesis n-gram is in its reference ...
    assert d["bp"] == pytest.approx(d["bleu"] / 100)  # ... so only the brevity penalty (6 vs 7 tokens) lowers BLEU
    assert d["signature"].startswith("nrefs:1|case:mixed|") and "tok:13a" in d["signature"]
    assert "nrefs:1" in metrics.chrf_signature()
