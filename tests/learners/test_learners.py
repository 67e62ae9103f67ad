"""The checks against many learner-style implementations written independently of the check code
(:mod:`tests.learners`): every wrong one is caught with ONE sentence, every correct one is accepted,
and the hints name the actual mistake. Each implementation runs once per session.

Numbers per set: ``python -m pytest -q -s -n0 tests/learners/test_learners.py -k summary``."""
from __future__ import annotations

import contextlib
import functools
import io
import re

import pytest
import torch

from course_lib import checks as C

from . import CORRECT, SETS, WRONG

CHECK_OF = dict(C._core._CHECKS)


def verdict_of(check: str, fn) -> tuple[str, str]:
    """('pass' | 'fail' | 'pending' | 'crash', message) of one check on one function."""
    torch.manual_seed(0)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            ok = CHECK_OF[check](fn)
    except AssertionError as e:
        return "fail", str(e)
    except Exception as e:  # noqa: BLE001 - a check must never crash
        return "crash", f"{type(e).__name__}: {e}"
    return ("pass" if ok else "pending"), buf.getvalue()


@functools.lru_cache(maxsize=None)
def verdict(kind: str, i: int) -> tuple[str, str]:
    check, fn = (WRONG[i][0], WRONG[i][1]) if kind == "wrong" else CORRECT[i]
    return verdict_of(check, fn)


def named(check: str, message: str, pattern: str) -> bool:
    """Does the hint match the mistake's regex? The case names and the check's own name do not count."""
    text = re.sub(r"case '[^']*'", "case ''", message.replace(check, "", 1))
    return re.search(pattern, text, re.I) is not None


def _name(entry) -> str:
    return f"{entry[0]}-{getattr(entry[1], '__name__', 'lambda')}"


@pytest.mark.parametrize("i", range(len(CORRECT)), ids=[f"{i}-{_name(e)}" for i, e in enumerate(CORRECT)])
def test_correct_alternative_is_accepted(i):
    status, msg = verdict("correct", i)
    assert status == "pass", msg


@pytest.mark.parametrize("i", range(len(WRONG)), ids=[f"{i}-{_name(e)}" for i, e in enumerate(WRONG)])
def test_wrong_implementation_is_caught_in_one_sentence(i):
    status, msg = verdict("wrong", i)
    assert status == "fail", f"not caught ({status}): {msg}"
    assert "\n" not in msg and "Traceback" not in msg and len(msg) < 600, msg
    assert "e+308" not in msg and "1.8e" not in msg, msg


def summary() -> dict[str, dict[str, int]]:
    """Per set and in total: wrong, caught, named (the hint matches the mistake), correct, accepted."""
    out = {}
    offset_w = offset_c = 0
    for name, (wrong, correct) in [*SETS.items()]:
        w = range(offset_w, offset_w + len(wrong))
        c = range(offset_c, offset_c + len(correct))
        out[name] = {
            "wrong": len(wrong),
            "caught": sum(verdict("wrong", i)[0] == "fail" for i in w),
            "named": sum(verdict("wrong", i)[0] == "fail" and named(WRONG[i][0], verdict("wrong", i)[1], WRONG[i][2]) for i in w),
            "correct": len(correct),
            "accepted": sum(verdict("correct", i)[0] == "pass" for i in c),
        }
        offset_w, offset_c = offset_w + len(wrong), offset_c + len(correct)
    out["all"] = {k: sum(s[k] for s in out.values()) for k in ("wrong", "caught", "named", "correct", "accepted")}
    return out


def test_summary_numbers_meet_the_targets():
    s = summary()
    for name, n in s.items():
        print(f"\n{name:7s}: caught {n['caught']}/{n['wrong']} wrong ({n['caught'] / n['wrong']:.1%}), "
              f"accepted {n['accepted']}/{n['correct']} correct, named {n['named']}/{n['caught']} caught "
              f"({n['named'] / max(n['caught'], 1):.1%})", end="")
    print()
    for i, (check, fn, pattern) in enumerate(WRONG):
        status, msg = verdict("wrong", i)
        if status == "fail" and not named(check, msg, pattern):
            print(f"  off target: {check} {getattr(fn, '__name__', '?')} /{pattern}/ -> {msg}")
    total = s["all"]
    assert total["wrong"] >= 450 and total["correct"] >= 150
    assert total["caught"] / total["wrong"] >= 0.95
    assert total["accepted"] == total["correct"]
    assert total["named"] / total["caught"] >= 0.9
    six = s["blind6"]  # issue 26's blind round, for every check
    assert six["caught"] / six["wrong"] >= 0.95 and six["named"] / six["caught"] >= 0.9 and six["accepted"] == six["correct"]
