"""The checks against many learner-style implementations written independently of the check code
(tests/learner_impls.py): every wrong one is caught with ONE sentence, every correct one is
accepted, and most hints name the actual mistake. Each implementation runs once per session.

Numbers: ``python -m pytest -q -s -p no:randomly tests/test_checks_learners.py -k summary``."""
from __future__ import annotations

import contextlib
import functools
import io
import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import learner_impls as L  # noqa: E402

from course_lib import checks as C  # noqa: E402

CHECK_OF = {name: fn for name, fn in C._core._CHECKS.items()}


@functools.lru_cache(maxsize=None)
def verdict(kind: str, i: int) -> tuple[str, str]:
    """('pass' | 'fail' | 'pending' | 'crash', message) for implementation i of WRONG/CORRECT."""
    check, fn = (L.WRONG[i][0], L.WRONG[i][1]) if kind == "wrong" else L.CORRECT[i]
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


def _name(entry) -> str:
    return f"{entry[0]}-{getattr(entry[1], '__name__', 'lambda')}"


@pytest.mark.parametrize("i", range(len(L.CORRECT)), ids=[f"{i}-{_name(e)}" for i, e in enumerate(L.CORRECT)])
def test_correct_alternative_is_accepted(i):
    status, msg = verdict("correct", i)
    assert status == "pass", msg


@pytest.mark.parametrize("i", range(len(L.WRONG)), ids=[f"{i}-{_name(e)}" for i, e in enumerate(L.WRONG)])
def test_wrong_implementation_is_caught_in_one_sentence(i):
    status, msg = verdict("wrong", i)
    assert status == "fail", f"not caught ({status}): {msg}"
    assert "\n" not in msg and "Traceback" not in msg and len(msg) < 600, msg
    assert "e+308" not in msg and "1.8e" not in msg, msg


def summary() -> dict:
    caught = sum(verdict("wrong", i)[0] == "fail" for i in range(len(L.WRONG)))
    on_target = sum(verdict("wrong", i)[0] == "fail" and re.search(L.WRONG[i][2], verdict("wrong", i)[1], re.I) is not None
                    for i in range(len(L.WRONG)))
    accepted = sum(verdict("correct", i)[0] == "pass" for i in range(len(L.CORRECT)))
    return {"wrong": len(L.WRONG), "caught": caught, "on_target": on_target, "correct": len(L.CORRECT), "accepted": accepted}


def test_summary_numbers_meet_the_targets():
    s = summary()
    off = [(L.WRONG[i][0], getattr(L.WRONG[i][1], "__name__", "?"), L.WRONG[i][2], verdict("wrong", i)[1])
           for i in range(len(L.WRONG)) if verdict("wrong", i)[0] == "fail" and not re.search(L.WRONG[i][2], verdict("wrong", i)[1], re.I)]
    print(f"\ncaught {s['caught']}/{s['wrong']} wrong ({s['caught'] / s['wrong']:.1%}), "
          f"accepted {s['accepted']}/{s['correct']} correct ({s['accepted'] / s['correct']:.1%}), "
          f"hints on target {s['on_target']}/{s['caught']} caught ({s['on_target'] / max(s['caught'], 1):.1%})")
    for mod in sorted({getattr(w[1], "__module__", "?") for w in L.WRONG}):
        idx = [i for i in range(len(L.WRONG)) if getattr(L.WRONG[i][1], "__module__", "?") == mod]
        hit = sum(verdict("wrong", i)[0] == "fail" and re.search(L.WRONG[i][2], verdict("wrong", i)[1], re.I) is not None for i in idx)
        print(f"  {mod}: {sum(verdict('wrong', i)[0] == 'fail' for i in idx)}/{len(idx)} caught, {hit} hints on target")
    for check, name, pat, msg in off:
        print(f"  off target: {check} {name} /{pat}/ -> {msg}")
    assert s["wrong"] >= 150 and s["correct"] >= 60
    assert s["caught"] / s["wrong"] >= 0.95
    assert s["accepted"] == s["correct"]
    assert s["on_target"] / s["caught"] >= 0.85
