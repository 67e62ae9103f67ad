"""tools/verdict_experiments.py judges saved numbers the way the proposed lesson 07 cells do (its --rejudge path)."""
import importlib.util
import json
from pathlib import Path

import pytest

from course_lib import ledger

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("verdict_experiments", ROOT / "tools" / "verdict_experiments.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

ABLATION = {"lr": 0.1, "steps": 100, "seeds": [0, 1, 2],
            "valid_loss": {"full recipe": [2.65, 2.69, 2.72], "without QK-norm": [2.9, 3.35, 3.02],
                           "without V-norm": [2.83, 2.73, 2.94], "without output norm": ["inf", 2.64, 2.72]},
            "max_logit": {"full recipe": [15.2, 12.5, 15.4], "without QK-norm": [589.0, 716.0, 989.0],
                          "without V-norm": [14.6, 10.4, 8.6], "without output norm": [7.7, 10.6, 9.5]}}
RAW = {  # the shapes the measuring run saves (JSON: string keys, "inf" for a diverged run)
    "6": {"ppl": {"decoder": [14.3, 14.4, 15.0], "encdec": [15.1, 15.5, 15.7], "decoder_half_batch": [17.5, 18.5, 16.8]},
          "summary": {"flops_ratio_equal_steps": 1.99, "compute_to_match": [1.65, 1.62, 1.51]}, "seconds": 8.0},
    "8": {"degradation": {"decoder": [1.31, 1.56, 1.43], "encdec": [1.10, 1.21, 1.11]}, "seconds": 24.0},
    "10": {"exact": {"decoder": [48.7, 38.7, 47.7], "prefixlm": [39.0, 24.0, 38.0]},
           "token_acc": {"decoder": [83.5, 81.2, 85.0], "prefixlm": [79.9, 71.9, 80.4]}, "steps": 150, "seconds": 400.0},
    "11": {"0.1": ABLATION, "0.3": ABLATION | {"lr": 0.3}, "seconds": 600.0},
}


@pytest.mark.parametrize("claim,expected", [
    (6, ["supported", "cannot be shown at toy scale"]),  # 1.51-1.65 against an edge of 1.5: within its spread (rule 5)
    (8, ["supported"]),
    (10, ["contradicted at toy scale"]),
    (11, ["supported", "supported", "supported", "no clear difference"]),
])
def test_verdicts_from_saved_numbers(claim, expected, tmp_path):
    raw = json.loads(json.dumps(RAW))
    vs, evidence, section = tool.verdicts(claim, raw[str(claim)])
    assert [v.verdict for v in vs] == expected and evidence and section
    entry = ledger.record_claim(claim, vs if len(vs) > 1 else vs[0], evidence, lesson=tool.LESSON, section=section,
                                save=True, folder=tmp_path)
    assert ledger.load_ledger(tmp_path)[claim] == [entry]
    if claim == 11:
        assert [v.part for v in vs] == ["QK-norm: logits", "QK-norm: loss", "V-norm: loss", "output norm: loss"]
        assert "At lr 0.3" in evidence
