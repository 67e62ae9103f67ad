"""Registration of learner-style implementations for the checks' tests (one copy for every file).

    WRONG, CORRECT, wrong, correct = registry()

    @wrong("scaled_dot_product_attention", r"√d_k|scale")   # check name, regex the hint must match
    def no_scale(q, k, v, mask=None): ...

``WRONG`` holds ``(check name, function, hint regex)``; ``CORRECT`` holds ``(check name, function)``.
"""
from __future__ import annotations


def registry():
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
