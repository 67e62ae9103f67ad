"""What every set of learner-style implementations shares: the registry they register into, the
n-gram counter the BLEU implementations use, and the regexes a hint must match to name a mistake
that is the same in every check (dtype, device, gradients, in-place changes, an ignored argument)."""
from __future__ import annotations

from collections import Counter

NINF = float("-inf")
SPECIAL_IDS = (0, 1, 2, 3, 4, 5)  # PAD, BOS, EOS, UNK, MASK, SEP

DTYPE = r"dtype|float32|float64|double|int64|long|bool"
DEVICE = r"device"
GRAD = r"gradient|graph|autograd|backward|detach|requires_grad"
INPLACE = r"in place|modif|caller|copy|clone"


def ignored(arg: str) -> str:
    """The regex of a hint that says the argument ``arg`` is not used."""
    return (rf"\b{arg}\b[^.;]*(is ignored|are ignored|were ignored|never used|not used|unused|hard-coded)"
            rf"|(ignor|hard-cod)[^.;]*\b{arg}\b|(pass|use) (the )?`?{arg}\b")


def ngrams(tokens, n: int) -> Counter:
    """Counter of the n-grams (tuples) of a token list, as the exercise gives it."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def registry():
    """``WRONG, CORRECT, wrong, correct = registry()``::

        @wrong("scaled_dot_product_attention", r"√d_k|scale")   # check name, regex the hint must match
        def no_scale(q, k, v, mask=None): ...

    ``WRONG`` holds ``(check name, function, hint regex)``; ``CORRECT`` holds ``(check name, function)``."""
    wrong_impls: list[tuple[str, object, str]] = []
    correct_impls: list[tuple[str, object]] = []

    def wrong(check: str, pattern: str):
        def deco(fn):
            wrong_impls.append((check, fn, pattern))
            return fn
        return deco

    def correct(check: str):
        def deco(fn):
            correct_impls.append((check, fn))
            return fn
        return deco

    return wrong_impls, correct_impls, wrong, correct
