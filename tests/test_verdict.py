"""The verdict rule (course_lib.lessons.ledger.judge / judge_similar / judge_exact) and two-part claims in the ledger.

The rule is checked against independent references (a permutation test for two groups, a t statistic computed
with torch for paired runs) and against its own promises: symmetry in both directions, the floor and ceiling,
too few seeds, NaN refused, and parts saved, reloaded and shown separately.
"""
from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch

from course_lib import ledger
from course_lib.lessons.ledger import (
    CLAIM_LESSONS, CLAIMS, MIN_SEEDS, VERDICT_RULE, VERDICTS, Verdict, claim_verdict, claims_by_lesson,
    combine_parts, judge, judge_exact, judge_similar, load_ledger, record_claim, render_claim_map, render_ledger,
)

SUP, CON, NONE, CANNOT, NUANCED = ("supported", "contradicted at toy scale", "no clear difference",
                                   "cannot be shown at toy scale", "nuanced")
FLIP = {SUP: CON, CON: SUP, NONE: NONE, CANNOT: CANNOT}


def _draws(n_cases=300, seed=0):
    """Random pairs of run lists: sizes 3-5, some far apart, some overlapping, some tied."""
    rng = random.Random(seed)
    for _ in range(n_cases):
        na, nb = rng.randint(3, 5), rng.randint(3, 5)
        shift = rng.choice([0.0, 0.5, 3.0, -3.0])
        a = [round(rng.gauss(shift, 1.0), rng.choice([1, 3])) for _ in range(na)]
        b = [round(rng.gauss(0.0, 1.0), rng.choice([1, 3])) for _ in range(nb)]
        yield a, b


# --------------------------------------------------------------------------- rule 3: direction, symmetric


def test_two_groups_match_a_permutation_test():
    """Independent reference: 'clear' (ranges do not overlap) is exactly 'the observed split is the most extreme
    of all C(na+nb, na) ways to split the pooled runs', i.e. the one-sided permutation p-value of the rank-sum
    statistic is its minimum."""
    for a, b in _draws():
        if len(set(a + b)) < len(a + b):
            continue  # ties: the rank statistic needs distinct values
        pooled = a + b
        observed = sum(sorted(pooled).index(x) for x in a)
        splits = list(itertools.combinations(range(len(pooled)), len(a)))
        ranks = [sum(sorted(range(len(pooled)), key=lambda i: pooled[i]).index(i) for i in s) for s in splits]
        p_high = sum(r >= observed for r in ranks) / len(splits)
        p_low = sum(r <= observed for r in ranks) / len(splits)
        v = judge(a, b, higher_is_better=True, what="m").verdict
        assert (v == SUP) == (p_high == 1 / len(splits)), (a, b, v)
        assert (v == CON) == (p_low == 1 / len(splits)), (a, b, v)


@pytest.mark.parametrize("paired", [False, True])
def test_the_same_test_decides_both_directions(paired):
    """Swapping the sides, or flipping which way is better, turns supported into contradicted and back;
    'no clear difference' and 'cannot be shown' stay."""
    seen = set()
    for a, b in _draws():
        if paired:
            b = (b * 2)[: len(a)]
        kw = dict(what="m", paired=paired)
        v = judge(a, b, higher_is_better=True, **kw).verdict
        seen.add(v)
        assert judge(b, a, higher_is_better=True, **kw).verdict == FLIP[v]
        assert judge(a, b, higher_is_better=False, **kw).verdict == FLIP[v]
        assert judge(b, a, higher_is_better=False, **kw).verdict == v
        assert judge([-x for x in a], [-x for x in b], higher_is_better=False, **kw).verdict == v
    assert {SUP, CON, NONE} <= seen  # the draws exercise every outcome


def test_per_run_effects_are_symmetric_around_no_effect():
    for a, _ in _draws():
        v = judge([1 + x for x in a], null=1.0, higher_is_better=True, what="ratio").verdict
        mirrored = [1 - x for x in a]  # reflected through the null
        assert judge(mirrored, null=1.0, higher_is_better=True, what="ratio").verdict == FLIP[v]
        assert judge(mirrored, null=1.0, higher_is_better=False, what="ratio").verdict == v


def test_paired_runs_match_a_t_statistic():
    """Independent reference: clear <=> |mean| > 2 sd <=> |t| > 2 sqrt(n), with t from torch."""
    for a, b in _draws():
        b = (b * 2)[: len(a)]
        d = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
        sd = d.std(unbiased=True)
        t = d.mean() / (sd / math.sqrt(len(d))) if sd > 0 else math.copysign(math.inf, d.mean()) if d.mean() else 0.0
        v = judge(a, b, higher_is_better=True, what="m", paired=True).verdict
        if abs(float(t)) > 2 * math.sqrt(len(d)) + 1e-9:
            assert v == (SUP if t > 0 else CON), (a, b, t)
        elif abs(float(t)) < 2 * math.sqrt(len(d)) - 1e-9:
            assert v == NONE, (a, b, t)


def test_paired_and_independent_can_disagree_for_the_right_reason():
    """A consistent small gain per seed over a large seed-to-seed spread: paired runs see it, independent groups
    (which overlap) do not."""
    causal = [40.0, 55.0, 70.0]
    bi = [42.0, 57.5, 71.5]
    assert judge(bi, causal, higher_is_better=True, what="acc").verdict == NONE
    v = judge(bi, causal, higher_is_better=True, what="acc", paired=True, names=("BiAttn", "causal"))
    assert v.verdict == SUP and "BiAttn" in v.reason and v.numbers["effects"] == [2.0, 2.5, 1.5]


def test_reasons_say_what_was_compared():
    v = judge([95.1, 96.0, 95.5], [80.2, 83.0, 81.1], higher_is_better=True, what="BLEU",
              names=("encoder-decoder", "decoder-only"))
    assert v.verdict == SUP
    assert v.reason.startswith("BLEU: encoder-decoder 95.5 (95.1-96) vs decoder-only 81.4 (80.2-83) over 3 + 3 runs")
    assert "every run of encoder-decoder is better than every run of decoder-only" in v.reason
    assert str(v) == f"{SUP}: {v.reason}" and "\n" not in v.reason and len(v.reason) < 240


def test_a_diverged_run_ranks_last():
    v = judge([3.1, 3.0, 3.2], [math.inf, 3.9, 4.4], higher_is_better=False, what="validation loss",
              names=("with QK-norm", "without"))
    assert v.verdict == SUP and "inf" in v.reason


def test_groups_closer_than_the_resolution_do_not_count():
    """Lesson 05's step counts, checked every 50 steps: 650-700 vs 750-850 are one check apart."""
    ed, dec = [650, 650, 700], [750, 850, 750]
    assert judge(ed, dec, higher_is_better=False, what="steps").verdict == SUP
    v = judge(ed, dec, higher_is_better=False, what="steps to BLEU 95", resolution=50)
    assert v.verdict == NONE and "resolution (50)" in v.reason
    assert judge(dec, ed, higher_is_better=False, what="steps", resolution=50).verdict == NONE
    assert judge([600, 620, 640], dec, higher_is_better=False, what="steps", resolution=50).verdict == SUP


# --------------------------------------------------------------------------- rule 4: size


def test_a_clear_effect_smaller_than_claimed_is_nuanced():
    a, b = [50.0, 51.0, 50.5], [48.0, 48.5, 47.9]
    assert judge(a, b, higher_is_better=True, what="acc", min_effect=2.0).verdict == SUP
    v = judge(a, b, higher_is_better=True, what="acc", min_effect=10.0)
    assert v.verdict == NUANCED and "10" in v.reason
    assert judge([1.1, 1.12, 1.09], null=1.0, higher_is_better=True, what="r", min_effect=0.5).verdict == NUANCED
    # a size does not soften a contradiction
    assert judge(b, a, higher_is_better=True, what="acc", min_effect=10.0).verdict == CON


# --------------------------------------------------------------------------- rule 2: floor and ceiling


def test_ceiling_and_floor_make_it_cannot_be_shown():
    top = judge([99.6, 100.0, 99.8], [99.1, 99.9, 100.0], higher_is_better=True, what="BLEU", ceiling=99.0)
    assert top.verdict == CANNOT and "ceiling" in top.reason and "saturates" in top.reason
    bottom = judge([2.5, 3.3, 1.7], [2.5, 1.7, 3.3], higher_is_better=True, what="exact match %", floor=5.0)
    assert bottom.verdict == CANNOT and "floor" in bottom.reason
    # one side off the limit: a real comparison again, in either direction
    assert judge([60.0, 62.0, 65.0], [2.5, 1.7, 3.3], higher_is_better=True, what="x", floor=5.0).verdict == SUP
    assert judge([98.0, 97.5, 97.9], [99.6, 100.0, 99.8], higher_is_better=True, what="x", ceiling=99.0).verdict == CON


def test_floor_and_ceiling_follow_the_measure_direction():
    """For a loss, the floor (nothing learned) is a high value and the ceiling a low one."""
    lost = judge([5.2, 5.3, 5.25], [5.21, 5.3, 5.22], higher_is_better=False, what="loss", floor=5.0, ceiling=0.01)
    assert lost.verdict == CANNOT and "floor" in lost.reason
    solved = judge([0.001, 0.002, 0.001], [0.003, 0.001, 0.002], higher_is_better=False, what="loss", floor=5.0,
                   ceiling=0.01)
    assert solved.verdict == CANNOT and "ceiling" in solved.reason


def test_paired_runs_check_the_floor_on_the_levels():
    v = judge([2.5, 3.3, 1.7], [2.4, 3.2, 1.6], higher_is_better=True, what="exact match %", paired=True, floor=5.0)
    assert v.verdict == CANNOT  # a perfectly consistent +0.1 at the floor still shows nothing


# --------------------------------------------------------------------------- rule 1: repeats


@pytest.mark.parametrize("a,b", [([1.0], [0.0, 0.1, 0.2]), ([5.0, 6.0], [0.0, 0.1, 0.2]), ([5.0, 6.0, 7.0], [0.0])])
def test_too_few_runs_cannot_be_shown(a, b):
    v = judge(a, b, higher_is_better=True, what="BLEU", names=("A", "B"))
    assert v.verdict == CANNOT and "at least 3" in v.reason
    assert f"{min(len(a), len(b))} run" in v.reason


def test_min_seeds_can_be_raised_not_lowered():
    assert judge([5.0, 6, 7], [0.0, 0.1, 0.2], higher_is_better=True, what="m", min_seeds=4).verdict == CANNOT
    with pytest.raises(ValueError, match="at least 3"):
        judge([5.0, 6], [0.0, 0.1], higher_is_better=True, what="m", min_seeds=2)
    assert judge([2.0, 2.1], null=1.0, higher_is_better=True, what="r").verdict == CANNOT
    assert judge_similar([1.0, 1.01], (0.8, 1.25), what="r").verdict == CANNOT
    assert MIN_SEEDS == 3


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call", [
    lambda: judge([1.0, float("nan"), 2.0], [0.0, 0.0, 0.0], higher_is_better=True, what="m"),
    lambda: judge([1.0, 2.0, 3.0], [0.0, float("nan"), 0.0], higher_is_better=True, what="m"),
    lambda: judge([1.0, 2.0, float("nan")], null=0.0, higher_is_better=True, what="m"),
    lambda: judge_similar([1.0, float("nan"), 1.0], (0.8, 1.2), what="m"),
    lambda: judge_exact(float("nan"), (0.8, 1.2), what="m"),
])
def test_nan_is_refused_with_the_fix(call):
    with pytest.raises(ValueError, match="NaN.*math.inf"):
        call()


@pytest.mark.parametrize("call,message", [
    (lambda: judge(2.0, [1.0, 1.0, 1.0], higher_is_better=True, what="m"), "one number per run"),
    (lambda: judge([], [1.0, 1.0, 1.0], higher_is_better=True, what="m"), "empty"),
    (lambda: judge(["a", 1, 2], [1.0, 1.0, 1.0], higher_is_better=True, what="m"), "list of numbers"),
    (lambda: judge([1.0, 2, 3], [1.0, 1.0], higher_is_better=True, what="m", paired=True), "one 'other' run per"),
    (lambda: judge([1.0, math.inf, 3], [1.0, 1, 1], higher_is_better=True, what="m", paired=True), "infinite"),
    (lambda: judge([1.0, 2, 3], higher_is_better=True, what="m", floor=0.0), "both sides"),
    (lambda: judge_similar([1.0, 1, 1], (1.2, 0.8), what="m"), "low < high"),
    (lambda: Verdict("probably", "x"), "verdict must be one of"),
])
def test_bad_input_is_refused_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- rule 5 and counts


def test_similar_claims():
    band = (0.8, 1.25)
    assert judge_similar([0.95, 1.05, 1.1], band, what="compute ratio").verdict == SUP
    v = judge_similar([2.6, 2.9, 2.4], band, what="compute ratio")
    assert v.verdict == CON and "every run outside" in v.reason
    assert judge_similar([math.inf, math.inf, 3.0], band, what="r").verdict == CON  # a target never reached: not similar
    assert judge_similar([math.inf, 2.6, 2.7], band, what="r").verdict == CON
    straddle = judge_similar([1.1, 1.2, 1.4], band, what="compute ratio")
    assert straddle.verdict == CANNOT and "2 of 3" in straddle.reason


def test_similar_claims_test_the_edge_like_no_effect():
    """Rule 5 asks of the band's edge what rule 3 asks of "no effect": runs just past it, by less than their
    spread, do not show the claim wrong (or right); the same test on both sides of the edge."""
    band = (2 / 3, 1.5)
    near = judge_similar([1.65, 1.62, 1.51], band, what="compute ratio")  # every run outside, mean - 2 sd = 1.45
    assert near.verdict == CANNOT and "1.45 to 1.74" in near.reason and "edge 1.5" in near.reason
    assert judge_similar([1.65, 1.62, 1.60], band, what="compute ratio").verdict == CON  # tight: clearly outside
    inside_near = judge_similar([1.35, 1.49, 1.2], band, what="compute ratio")  # every run inside, mean + 2 sd = 1.64
    assert inside_near.verdict == CANNOT and "every run inside it, but" in inside_near.reason
    assert judge_similar([1.35, 1.4, 1.3], band, what="compute ratio").verdict == SUP
    # below the band: the lower edge, the same test
    assert judge_similar([0.5, 0.52, 0.55], band, what="compute ratio").verdict == CON
    assert judge_similar([0.5, 0.65, 0.6], band, what="compute ratio").verdict == CANNOT
    # runs outside on both sides: not similar for any one run, but the measure is too scattered to judge
    wide = judge_similar([0.5, 2.9, 3.0], (0.8, 1.25), what="r")
    assert wide.verdict == CANNOT and "both sides" in wide.reason
    v = judge_similar([1.65, 1.62, 1.60], band, what="r")
    assert v.numbers["sd"] > 0 and abs(v.numbers["mean"] - 1.6233) < 1e-3


def test_counts_need_one_value():
    assert judge_exact(2.27, (1.6, 2.4), what="FLOPs ratio").verdict == SUP
    v = judge_exact(0.9, (0.0, 0.6), what="inference FLOPs ratio", part="a")
    assert v.verdict == CON and v.part == "a" and "no run-to-run spread" in v.reason and str(v).startswith("(a) ")


# --------------------------------------------------------------------------- rule 6: parts, saved and shown


def test_combine_parts():
    assert combine_parts([SUP, SUP]) == SUP
    assert combine_parts([SUP, CON]) == NUANCED
    assert combine_parts([CANNOT, SUP]) == NUANCED  # unlike lessons, a part that cannot be shown does not give way
    with pytest.raises(ValueError):
        combine_parts([])


def _two_parts():
    a = judge_exact(2.27, (1.6, 2.4), what="training FLOPs per sequence, decoder-only / encoder-decoder", part="a")
    b = judge_similar([2.6, 2.9, 2.4], (0.8, 1.25), what="FLOPs to a loss, decoder-only / encoder-decoder", part="b")
    return a, b


def test_two_part_claim_is_saved_and_reloaded_part_by_part(tmp_path):
    a, b = _two_parts()
    entry = record_claim(6, [a, b], "both parts measured", lesson="05_translator", section="9. Three families",
                         numbers={"x": 1.0}, save=True, folder=tmp_path)
    assert entry["verdict"] == NUANCED
    assert entry["parts"] == {"a": {"verdict": SUP, "reason": a.reason, "judged": a.numbers},
                              "b": {"verdict": CON, "reason": b.reason, "judged": b.numbers}}
    saved = load_ledger(tmp_path)[6][0]
    assert saved == entry and saved["parts"]["b"]["verdict"] == CON


def test_single_verdict_object_saves_its_reason(tmp_path):
    v = judge([3.1, 3.0, 3.2], [math.inf, 3.9, 4.4], higher_is_better=False, what="loss")
    entry = record_claim(11, v, "e", lesson="07_encoder_decoder_revisited", section="s", save=True, folder=tmp_path)
    assert entry["verdict"] == SUP and entry["reason"] == v.reason
    text = (tmp_path / "07_encoder_decoder_revisited.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))  # strict JSON
    assert load_ledger(tmp_path)[11][0]["judged"]["other"][0] == "inf"


@pytest.mark.parametrize("parts,message", [
    (lambda a, b: [a, Verdict(SUP, "x")], "distinct part labels"),
    (lambda a, b: [a, Verdict(SUP, "x", part="a")], "distinct part labels"),
    (lambda a, b: [a, "supported"], "list of Verdicts"),
    (lambda a, b: [], "list of Verdicts"),
])
def test_bad_parts_are_refused(parts, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        record_claim(6, parts(*_two_parts()), "e", lesson="05_translator", section="s", save=True, folder=tmp_path)


def test_a_tampered_part_file_is_refused(tmp_path):
    record_claim(6, list(_two_parts()), "e", lesson="05_translator", section="s", save=True, folder=tmp_path)
    file = tmp_path / "05_translator.json"
    data = json.loads(file.read_text())
    data["6"]["verdict"] = SUP  # no longer what its parts combine to
    file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="parts' combined verdict"):
        load_ledger(tmp_path)
    data["6"]["verdict"], data["6"]["parts"]["a"]["verdict"] = NUANCED, "fine"
    file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="part 'a'"):
        load_ledger(tmp_path)


def test_the_ledger_shows_every_part_of_every_lesson(tmp_path):
    a, b = _two_parts()
    record_claim(6, [a, b], "05's evidence", lesson="05_translator", section="9. s", save=True, folder=tmp_path)
    b7 = judge_similar([0.46, 0.5, 0.44], (0.8, 1.25), what="perplexity ratio", part="b")
    record_claim(6, [judge_exact(1.99, (1.6, 2.4), what="r", part="a"), b7], "07's evidence",
                 lesson="07_encoder_decoder_revisited", section="2. s", save=True, folder=tmp_path)
    record_claim(4, judge([1.0, 2, 3], [1.5, 2.5, 3.5], higher_is_better=True, what="BLEU"), "4's evidence",
                 lesson="05_translator", section="9. s", save=True, folder=tmp_path)
    led = load_ledger(tmp_path)
    assert claim_verdict(led[6]) == NUANCED and claim_verdict(led[4]) == NONE
    lines = render_ledger(led, notebooks=tmp_path).splitlines()
    six = [i for i, line in enumerate(lines) if line.startswith("| 6 |")][0]
    assert f"(a) {SUP}; (b) {CON}. combined over lessons 05, 07" in lines[six] and f"**{NUANCED}**" in lines[six]
    rows = lines[six + 1: six + 5]
    assert [r.split(" | ")[1] for r in rows] == ["↳ lesson 05 (a)", "↳ lesson 05 (b)", "↳ lesson 07 (a)",
                                                  "↳ lesson 07 (b)"]
    assert [r.split(" | ")[2] for r in rows] == [SUP, CON, SUP, CON]
    assert b7.reason.split(":")[0] in rows[3]
    four = [line for line in lines if line.startswith("| 4 |")][0]
    assert f"**{NONE}**" in four and "BLEU: the claimed side 2 (1-3) vs the other side 2.5 (1.5-3.5)" in four
    assert four.index("neither side wins.") < four.index("4's evidence")  # the rule's reason, then the lesson's sentence


def test_a_single_lesson_with_parts_keeps_its_evidence_in_the_claim_row(tmp_path):
    record_claim(6, list(_two_parts()), "05's evidence", lesson="05_translator", section="9. s", save=True,
                 folder=tmp_path)
    lines = render_ledger(load_ledger(tmp_path), notebooks=tmp_path).splitlines()
    six = [i for i, line in enumerate(lines) if line.startswith("| 6 |")][0]
    assert lines[six].split(" | ")[3] == f"(a) {SUP}; (b) {CON}. 05's evidence"
    assert lines[six + 1].split(" | ")[1] == "↳ lesson 05 (a)"


# --------------------------------------------------------------------------- documentation and the claim map


def test_the_rule_is_in_the_module_docstring_once():
    assert ledger.__doc__.count(VERDICT_RULE) == 1
    for verdict in (SUP, CON, NONE, CANNOT, NUANCED):
        assert verdict in VERDICT_RULE and verdict in VERDICTS


def test_claim_map_renders_claim_lessons_both_ways():
    by_claim = render_claim_map("claim").splitlines()
    assert len(by_claim) == 2 + len(CLAIMS)
    assert by_claim[6 + 1] == f"| 6 | {CLAIMS[6]} | 05, 07 |"
    by_lesson = render_claim_map("lesson")
    assert "| 07 | 6, 7, 8, 9, 10, 11 |" in by_lesson and "| 04 | 3, 12 |" in by_lesson
    pairs = {(c, n) for n, cs in claims_by_lesson().items() for c in cs}
    assert pairs == {(c, n) for c, ns in CLAIM_LESSONS.items() for n in ns}
    with pytest.raises(ValueError):
        render_claim_map("notebook")


def test_claim_lessons_agree_with_what_the_lessons_saved():
    """CLAIM_LESSONS (the one map) lists exactly the lessons whose saved results test each claim."""
    saved = {(c, e["lesson"][:2]) for c, entries in load_ledger().items() for e in entries}
    planned = {(c, n) for c, ns in CLAIM_LESSONS.items() for n in ns}
    assert saved <= planned, f"saved but not in CLAIM_LESSONS: {sorted(saved - planned)}"
    lessons_with_results = {n for _, n in saved}
    missing = {(c, n) for c, n in planned - saved if n in lessons_with_results}
    assert not missing, f"in CLAIM_LESSONS but the lesson saved no verdict for it: {sorted(missing)}"


def test_paired_reason_reads_in_order():
    v = judge([39.0, 24.0, 38.0], [48.7, 38.7, 47.7], higher_is_better=True, paired=True, names=("BiAttn", "causal"),
              what="exact match (%)")
    assert v.verdict == CON
    assert v.reason.startswith("exact match (%): BiAttn 33.7 (24-39) vs causal 45 (38.7-48.7); BiAttn minus causal per run: "
                               "-11.4 (-14.7 to -9.7) over 3 runs")


def test_too_few_runs_of_one_group_reads_cleanly():
    v = judge([2.0], null=1.0, higher_is_better=True, what="ratio")
    assert v.reason == "ratio: only 1 run; the rule needs at least 3 per side to tell an effect from run-to-run noise."


def test_the_reason_names_the_claimed_direction_in_the_given_word():
    """A claim that one side takes longer reads "slower", in both outcomes; the verdict is the rule's either way."""
    long, short = [0.9, 1.0, 1.1], [0.1, 0.2, 0.15]
    v = judge(long, short, higher_is_better=True, what="time (s)", names=("P=1024", "P=16"), better="slower")
    assert v.verdict == "supported" and "every run of P=1024 is slower than every run of P=16" in v.reason
    w = judge(short, long, higher_is_better=True, what="time (s)", names=("P=16", "P=1024"), better="slower")
    assert w.verdict == "contradicted at toy scale" and "every run of P=1024 is slower than every run of P=16" in w.reason
    assert "is better than" in judge(long, short, higher_is_better=True, what="x").reason  # the default word
