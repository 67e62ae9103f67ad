"""The claims ledger validates verdicts and round-trips them through JSON files."""
import json

import pytest

from course_lib.lessons.ledger import CLAIMS, VERDICTS, load_ledger, record_claim


def test_twelve_claims_and_five_verdicts():
    assert sorted(CLAIMS) == list(range(1, 13))
    assert len(VERDICTS) == 5 and VERDICTS[3] == "cannot be shown at toy scale"


def test_record_and_load_round_trip(tmp_path):
    record_claim(4, "nuanced", "x", lesson="05_translator", section="s", numbers={"a": 1.5},
                 save=True, folder=tmp_path)
    record_claim(6, "supported", "y", lesson="05_translator", section="s", save=True, folder=tmp_path)
    record_claim(4, "supported", "z", lesson="05_translator", section="s", save=True, folder=tmp_path)  # overwrites
    data = json.loads((tmp_path / "05_translator.json").read_text())
    assert list(data) == ["4", "6"] and data["4"]["verdict"] == "supported"
    ledger = load_ledger(tmp_path)
    assert ledger[4][0]["numbers"] == {} and ledger[6][0]["evidence"] == "y" and ledger[1] == []


def test_fast_mode_does_not_write(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    record_claim(1, "supported", "x", lesson="02", section="s", folder=tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("claim,verdict", [(0, "supported"), (13, "supported"), (1, "true"), (1, "Supported")])
def test_bad_claim_or_verdict_is_refused(claim, verdict, tmp_path):
    with pytest.raises(ValueError):
        record_claim(claim, verdict, "x", lesson="l", section="s", save=True, folder=tmp_path)


def test_numbers_must_be_serialisable(tmp_path):
    with pytest.raises(TypeError):
        record_claim(1, "supported", "x", lesson="l", section="s", numbers={"a": object()}, save=True, folder=tmp_path)
