"""The one check behind the table-driven tests of bad input (``tests/test_bad_inputs_*.py``).

Each table row is ``Bad(label, call, error, phrase)``: calling ``call()`` must raise ``error`` with a
message that contains ``phrase`` (case-insensitive), is one line, never advises ``weights_only=False``,
and is raised by a ``raise`` in course_lib itself: the input is checked where it enters, not left to
fail deep inside PyTorch, json or Python.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

LIB = Path(__file__).resolve().parents[1] / "course_lib"


@dataclass(frozen=True)
class Bad:
    label: str
    call: Callable[[], Any]
    error: type[BaseException]
    phrase: str


def rows(table: list[Bad]) -> list:
    """``table`` as pytest parameters, each named by its label."""
    return [pytest.param(row, id=row.label) for row in table]


def assert_refused(row: Bad) -> str:
    """Run ``row.call`` and check its error as the module docstring says; returns the message."""
    with pytest.raises(row.error) as info:
        row.call()
    message = str(info.value)
    assert row.phrase.lower() in message.lower(), f"{row.label}: {message!r} does not mention {row.phrase!r}"
    assert "\n" not in message.strip(), f"{row.label}: not one line: {message!r}"
    assert "weights_only=False" not in message
    raised_in = Path(str(info.traceback[-1].path)).resolve()
    assert LIB in raised_in.parents, f"{row.label}: raised in {raised_in}, not by course_lib's own checks: {message!r}"
    return message
