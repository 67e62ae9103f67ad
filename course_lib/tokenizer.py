"""A word-level tokenizer shared by every model in the course.

Why word-level and not BPE or characters? The course's translation data is a generated
English->French fragment (:mod:`course_lib.lessons.en_fr`) with a closed vocabulary of a few hundred
words per side. Over a closed vocabulary, word-level tokens give

* **short sequences** (a sentence is ~5-20 tokens), so toy models train in minutes on a CPU, and
* **readable attention maps**: every row and column of a plot is a real word, so you can see
  "noirs" attend to "black" and "chiens" to "dogs".

Subword tokenizers earn their keep on open vocabularies; here they would only make the maps harder
to read. Words never seen when the vocabulary was built map to ``<unk>`` (``UNK_ID``), which is also
what happens with a learner's own tab-separated data containing rare words.

Tokenization rules (:meth:`WordTokenizer.tokenize`): lowercase; punctuation such as ``. , ? !`` is
its own token; French elision (``l' n' d' j' c' m' s' t' qu'``) is split off the word, so
``"l'homme" -> ["l'", "homme"]``. :func:`detokenize` inverts this: elided tokens rejoin the next
word without a space and punctuation attaches to the previous word, so for the generated fragment
``decode(encode(s)) == s``. For other text it returns the *normalized* form (see :func:`normalize`).

Special tokens are fixed for the whole course (every model, mask and loss relies on these ids).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, SEP_ID = 0, 1, 2, 3, 4, 5
PAD, BOS, EOS, UNK, MASK, SEP = "<pad>", "<bos>", "<eos>", "<unk>", "<mask>", "<sep>"
SPECIALS: list[str] = [PAD, BOS, EOS, UNK, MASK, SEP]  # index in this list == id

# One token per match, tried left to right:
#  1. an elided French article/pronoun at the start of a word: l' n' d' j' c' m' s' t' qu'
#  2. a word: letters/digits, possibly with inner apostrophes or hyphens ("don't", "aujourd'hui", "peut-être")
#  3. any other single non-space character (punctuation)
_TOKEN_RE = re.compile(r"(?<![^\W_])(?:qu|[cdjlmnst])'|[^\W_]+(?:['-][^\W_]+)*|\S")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'", "\u2018": "'"})
_OPENING = {"(", "[", "{", "\u00ab", "\u00bf", "\u00a1"}  # attach to the *next* token


def tokenize(text: str) -> list[str]:
    """Lowercase and split ``text`` into word, elision and punctuation tokens."""
    if not text.isascii():  # typographic apostrophes -> "'" (skipped for plain ASCII: it is the slow part)
        text = text.translate(_APOSTROPHES)
    return _TOKEN_RE.findall(text.lower())


def _is_punct(tok: str) -> bool:
    return not (tok.isalnum() or any(ch.isalnum() for ch in tok))  # isalnum(): the fast common case


def detokenize(tokens: Sequence[str]) -> str:
    """Join tokens back into text: ``l'`` + ``homme`` -> ``l'homme``; ``rouge`` + ``.`` -> ``rouge.``"""
    out: list[str] = []
    glue_next = True  # no space before the first token
    for tok in tokens:
        if out and not glue_next and not (_is_punct(tok) and tok not in _OPENING):
            out.append(" ")
        out.append(tok)
        glue_next = tok.endswith("'") or tok in _OPENING
    return "".join(out)


def normalize(text: str) -> str:
    """The canonical form ``decode(encode(text))`` returns when no word is unknown."""
    return detokenize(tokenize(text))


def pad_batch(list_of_id_lists: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> Tensor:
    """Right-pad id lists into a ``LongTensor (B, T)`` with ``T`` = the longest list."""
    batch = len(list_of_id_lists)
    t = max((len(ids) for ids in list_of_id_lists), default=0)
    out = torch.full((batch, t), pad_id, dtype=torch.long)
    for i, ids in enumerate(list_of_id_lists):
        if len(ids):
            out[i, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
    return out


class WordTokenizer:
    """Maps words to ids and back. Build one per language with :meth:`from_texts`.

    >>> tok = WordTokenizer.from_texts(["l'homme voit le chien."])
    >>> tok.decode(tok.encode("l'homme voit le chien.", add_bos=True, add_eos=True))
    "l'homme voit le chien."
    """

    def __init__(self, itos: Sequence[str]):
        itos = list(itos)
        if itos[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"The vocabulary must start with the course's special tokens {SPECIALS}; got {itos[:6]}.")
        if len(set(itos)) != len(itos):
            dupes = sorted(w for w, c in Counter(itos).items() if c > 1)
            raise ValueError(f"Duplicate tokens in the vocabulary: {dupes[:10]}.")
        self.itos: list[str] = itos
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(itos)}

    # ---- building -------------------------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: Iterable[str], min_freq: int = 1) -> WordTokenizer:
        """Vocabulary = specials, then words with count >= ``min_freq`` by frequency desc, then alphabetically."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenize(text))
        for special in SPECIALS:  # a literal "<pad>" in the data must not get a second id
            counts.pop(special, None)
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + words)

    # ---- the mapping ----------------------------------------------------------------------
    tokenize = staticmethod(tokenize)
    pad_batch = staticmethod(pad_batch)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Text -> ids. Unknown words become ``UNK_ID``."""
        ids = [self.stoi.get(tok, UNK_ID) for tok in tokenize(text)]
        if add_bos:
            ids.insert(0, BOS_ID)
        if add_eos:
            ids.append(EOS_ID)
        return ids

    def decode(self, ids: Iterable[int] | Tensor, skip_special: bool = True) -> str:
        """Ids -> text. ``skip_special`` drops pad/bos/eos/mask/sep but keeps ``<unk>`` visible,
        so an unknown word is never silently deleted from a translation."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        toks = []
        for i in ids:
            i = int(i)
            if skip_special and i < len(SPECIALS) and i != UNK_ID:
                continue
            toks.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return detokenize(toks)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size})"

    # ---- saving ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-able description: ``json.dump(tok.to_dict(), f)``."""
        return {"kind": "word", "version": 1, "itos": list(self.itos)}

    @classmethod
    def from_dict(cls, d: dict) -> WordTokenizer:
        if d.get("kind", "word") != "word":
            raise ValueError(f"Not a word-level tokenizer description (kind={d.get('kind')!r}).")
        return cls(d["itos"])
