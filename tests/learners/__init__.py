"""Learner-style implementations of every exercise, to test the checks against: each module is one
set, most written blind from the exercise text before the check code was read, and kept as
regression tests. ``WRONG``: ``(check name, function, regex the hint must match to name the mistake)``;
``CORRECT``: ``(check name, function)``; ``SETS`` maps a set's name to its pair of lists.

* :mod:`.first` — the first set (lessons 01–05), with known mistakes of every kind;
* :mod:`.blind1` … :mod:`.blind5` — blind rounds on lessons 01–05;
* :mod:`.blind6` — the blind round of issue 26, for every check (lessons 01–07): what flows into the
  next cell (dtype, device, gradients), ignored arguments, cases too small to tell, classic mistakes.
"""
from __future__ import annotations

from . import blind1, blind2, blind3, blind4, blind5, blind6, first

SETS = {m.__name__.rsplit(".", 1)[-1]: (m.WRONG, m.CORRECT) for m in (first, blind1, blind2, blind3, blind4, blind5, blind6)}
WRONG = [w for wrong, _ in SETS.values() for w in wrong]
CORRECT = [c for _, correct in SETS.values() for c in correct]
