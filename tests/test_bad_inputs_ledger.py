"""The claims ledger with bad input: standard JSON only, files only inside its results folder, claim
numbers 1-12 only, and a corrupt results file named (table: call -> error)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bad_inputs import Bad, assert_refused

from course_lib import ledger


def record(folder: Path, claim=4, verdict="nuanced", evidence="e", **kw):
    kw = {"lesson": "05_translator", "section": "s", "save": True, "folder": folder, **kw}
    return ledger.record_claim(claim, verdict, evidence, **kw)


RECORD = [  # (label, keyword arguments of record(), error, phrase)
    ("numbers with a tensor", dict(numbers={"t": torch.ones(1)}), TypeError, "numbers['t'] is a Tensor"),
    ("numbers not a dict", dict(numbers=[1, 2]), TypeError, "numbers must be a dict"),
    ("evidence not text", dict(evidence=3.5), TypeError, "evidence must be text"),
    ("section not text", dict(section=None), TypeError, "section must be text"),
    ("lesson '../x'", dict(lesson="../x"), ValueError, "lesson must be a notebook's name without folders"),
    ("lesson 'a/b'", dict(lesson="a/b"), ValueError, "'a/b'"),
    ("lesson an absolute path", dict(lesson="/tmp/evil"), ValueError, "/tmp/evil"),
    ("lesson empty", dict(lesson=""), ValueError, "lesson"),
    *[(f"claim={c!r}", dict(claim=c), ValueError, "claim must be a whole number from 1 to 12")
      for c in (4.0, True, 0, 13, "4", None, -1)],
    ("verdict misspelt", dict(verdict="supportd"), ValueError, "'supported'"),
]


@pytest.mark.parametrize("label, kw, error, phrase", RECORD, ids=[r[0] for r in RECORD])
def test_record_refused(tmp_path, label, kw, error, phrase):
    assert_refused(Bad(label, lambda: record(tmp_path / "results", **kw), error, phrase))
    assert not any(p.suffix == ".json" for p in tmp_path.rglob("*"))  # nothing written, anywhere


CORRUPT = [  # (label, file text, phrase)
    ("not JSON", "{oops", "is not valid JSON"),
    ("empty", "", "is not valid JSON"),
    ("a list", "[1]", "holds a list"),
    ("NaN inside", '{"4": {"claim": 4, "verdict": "nuanced", "evidence": NaN, "lesson": "07_x", "section": "s"}}', "NaN"),
    ("an unknown verdict", '{"4": {"claim": 4, "verdict": "maybe", "evidence": "", "lesson": "07_x", "section": "s"}}', "'maybe'"),
]


@pytest.mark.parametrize("label, text, phrase", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_results_file_is_named(tmp_path, label, text, phrase):
    (tmp_path / "07_x.json").write_text(text)
    message = assert_refused(Bad(label, lambda: ledger.load_ledger(tmp_path), ValueError, phrase))
    assert "07_x.json" in message


def test_recording_into_a_corrupt_file_names_it_and_keeps_it(tmp_path):
    (tmp_path / "05_translator.json").write_text("{not json")
    assert_refused(Bad("record", lambda: record(tmp_path), ValueError, "05_translator.json' is not valid JSON"))
    assert (tmp_path / "05_translator.json").read_text() == "{not json"
    (tmp_path / "file").write_text("x")
    assert_refused(Bad("folder is a file", lambda: record(tmp_path / "file"), ValueError, "is a file"))


def test_valid_entries_are_written_as_standard_json(tmp_path):
    numbers = {"bleu": 95.5, "missing": None, "diverged_loss": float("nan"), "runs": [1.0, float("inf"), -float("inf")]}
    entry = record(tmp_path, claim=np.int64(4), numbers=numbers)
    assert entry["claim"] == 4 and type(entry["claim"]) is int
    text = (tmp_path / "05_translator.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} written"))  # no NaN / Infinity tokens
    saved = {"bleu": 95.5, "missing": None, "diverged_loss": None, "runs": [1.0, "inf", "-inf"]}
    assert entry["numbers"] == saved and ledger.load_ledger(tmp_path)[4][0]["numbers"] == saved
