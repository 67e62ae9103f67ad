"""Lesson 08's claims ledger and closing quiz.

* the library side (combining verdicts, rendering the table, refusing bad files), on fixture JSON;
* the committed results in ``results/claims/``: valid, and linked to real lesson sections;
* the committed outputs of ``notebooks/08_claims_and_choices.ipynb``: the ledger table it shows is
  parsed back and compared with ``load_ledger()`` (re-execute the notebook after a lesson saves new
  results: ``python tools/sync_notebooks.py execute notebooks/08_claims_and_choices.ipynb``);
* the COMPLETENESS test: every one of the 12 claims has a saved verdict. It fails until every lesson
  has been run in full mode and its ``results/claims/<lesson>.json`` committed;
* the closing quiz: every question grades its answer right and every other option wrong, with a reason.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from course_lib import quiz
from course_lib.lessons.ledger import (
    CLAIM_LESSONS, CLAIMS, VERDICTS, combine_verdicts, load_ledger, record_claim, render_ledger, resolve_section,
    results_dir,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "08_claims_and_choices.ipynb"
HEADER = "| # | claim | verdict | evidence (measured) | where |"
NOT_MEASURED = "*not yet measured*"


# --------------------------------------------------------------------------- an independent parser


def _cells(line: str) -> list[str]:
    """The cells of one Markdown table row (``\\|`` is a literal pipe)."""
    inner = line.strip()
    assert inner.startswith("|") and inner.endswith("|"), f"not a table row: {line!r}"
    parts = re.split(r"(?<!\\)\|", inner[1:-1])
    return [p.strip().replace("\\|", "|") for p in parts]


def parse_ledger_table(markdown: str) -> dict[int, dict]:
    """``{claim: {"verdict", "evidence", "where", "lessons": [{"lesson", "part", "verdict", "evidence", "where"}]}}``
    (``part``: "" for a lesson's row, "a", "b"... for one row per part of a two-part claim)."""
    lines = markdown.strip().splitlines()
    assert lines[0] == HEADER, f"the ledger table starts with {HEADER!r}, got {lines[0]!r}"
    rows: dict[int, dict] = {}
    current = None
    for line in lines[2:]:
        number, claim, verdict, evidence, where = _cells(line)
        if number:
            current = rows.setdefault(int(number), {"statement": claim, "verdict": verdict.strip("*"),
                                                    "raw_verdict": verdict, "evidence": evidence,
                                                    "where": where, "lessons": []})
        else:
            m = re.fullmatch(r"↳ lesson (\d\d)(?: \((.+)\))?", claim)
            assert m and current is not None, f"a sub-row must follow a claim row: {line!r}"
            current["lessons"].append({"lesson": m.group(1), "part": m.group(2) or "", "verdict": verdict,
                                       "evidence": evidence, "where": where})
    return rows


def _headings(lesson: str, folder: Path = ROOT / "notebooks") -> list[str]:
    path = folder / f"{lesson}.ipynb"
    if not path.exists():
        return []
    nb = nbformat.read(path, as_version=4)
    return [line.lstrip("#").strip() for c in nb.cells if c.cell_type == "markdown"
            for line in c.source.splitlines() if line.startswith("#")]


def _link_ok(where: str, entry: dict, headings: list[str]) -> bool:
    """The link names the lesson and opens the heading its section resolves to (or the section as saved)."""
    target = resolve_section(entry["section"], headings) or " ".join(entry["section"].split())
    m = re.fullmatch(r"\[(\d\d) · (.+)\]\(([\w.-]+\.ipynb)#(\S+)\)", where)
    return bool(m) and m.group(1) == entry["lesson"][:2] and m.group(2) == target \
        and m.group(3) == f"{entry['lesson']}.ipynb" and m.group(4) == target.replace(" ", "-")


def ledger_problems(parsed: dict[int, dict], ledger: dict[int, list[dict]], notebooks: Path = ROOT / "notebooks") -> list[str]:
    """Every way the parsed table disagrees with the saved results (empty list: they agree)."""
    problems = []
    if sorted(parsed) != sorted(CLAIMS):
        problems.append(f"the table shows claims {sorted(parsed)}, expected 1..12")
    for claim in CLAIMS:
        row = parsed.get(claim)
        if row is None:
            continue
        entries = sorted(ledger[claim], key=lambda e: e["lesson"])
        if row["statement"] != CLAIMS[claim]:
            problems.append(f"claim {claim}: statement differs from course_lib.lessons.ledger.CLAIMS")
        if not entries:
            lessons = CLAIM_LESSONS[claim]
            if row["raw_verdict"] != NOT_MEASURED or not row["evidence"].startswith("run lesson") \
                    or not all(n in row["evidence"] for n in lessons) or "full mode" not in row["evidence"]:
                problems.append(f"claim {claim}: no saved verdict, but the table shows {row['raw_verdict']!r} / {row['evidence']!r}")
            continue
        expected = _expected_claim_verdict(entries)
        if row["raw_verdict"] != f"**{expected}**":
            problems.append(f"claim {claim}: table says {row['raw_verdict']!r}, saved results give {expected!r}")
        shown = [{"lesson": e["lesson"][:2], "part": label, "verdict": p["verdict"],
                  "evidence": " ".join((p["reason"] if label else _shown_evidence(e)).split()), "entry": e}
                 for e in entries for label, p in (e.get("parts") or {"": e}).items()]
        if len(shown) == 1:
            table = [{"lesson": shown[0]["lesson"], "part": "", "verdict": row["verdict"], "evidence": row["evidence"],
                      "where": row["where"]}]
        else:
            table = row["lessons"]
            if len(table) != len(shown):
                problems.append(f"claim {claim}: {len(table)} lesson rows shown, {len(shown)} saved")
                continue
        for s, t in zip(shown, table):
            if (s["lesson"], s["part"], s["verdict"], s["evidence"]) != (t["lesson"], t["part"], t["verdict"], t["evidence"]):
                problems.append(f"claim {claim}, lesson {s['lesson']}{' (' + s['part'] + ')' if s['part'] else ''}: "
                                f"table shows {t['verdict']!r}: {t['evidence']!r}; saved {s['verdict']!r}: {s['evidence']!r}")
            if not _link_ok(t["where"], s["entry"], _headings(s["entry"]["lesson"], notebooks)):
                problems.append(f"claim {claim}, lesson {s['lesson']}: link {t['where']!r} does not point to its section")
    return problems


def _shown_evidence(entry: dict) -> str:
    """An entry saved from a Verdict shows the rule's reason, then the lesson's sentence."""
    return f"{entry['reason']} {entry['evidence']}" if entry.get("reason") else entry["evidence"]


def _expected_claim_verdict(entries: list[dict]) -> str:
    """Written out independently of ledger.claim_verdict: per part, lessons combine by combine_verdicts (a
    'cannot be shown' gives way); then parts that agree keep their verdict and parts that differ give 'nuanced'."""
    per_part: dict[str, list[str]] = {}
    for e in entries:
        for label, p in (e.get("parts") or {"": e}).items():
            per_part.setdefault(label, []).append(p["verdict"])
    combined = {combine_verdicts(vs) for vs in per_part.values()}
    return combined.pop() if len(combined) == 1 else "nuanced"


def _notebook_ledger_markdown(path: Path = NOTEBOOK) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            text = out.get("data", {}).get("text/markdown", "")
            if text.startswith(HEADER):
                found.append(text)
    return found


# --------------------------------------------------------------------------- fixtures


def _save(folder, claim, verdict, evidence, lesson, section="2. An experiment"):
    return record_claim(claim, verdict, evidence, lesson=lesson, section=section, numbers={"x": 1.0},
                        save=True, folder=folder)


@pytest.fixture
def partial(tmp_path):
    """A results folder in the middle of the course: some claims saved, claim 6 by two lessons, 8 missing."""
    _save(tmp_path, 1, "supported", "MLM accuracy 0.91 vs 0.12 | with a pipe", "02_encoder_mlm", "3. Fill the blanks")
    _save(tmp_path, 4, "nuanced", "ED reached BLEU 95 after 6.9e11 FLOPs vs 1.6e12.", "05_translator", "5. Three families compared")
    _save(tmp_path, 6, "supported", "decoder-only 2.27x training FLOPs per sequence.", "05_translator", "5. Three families compared")
    _save(tmp_path, 6, "contradicted at toy scale", "perplexity per FLOP: decoder-only ahead by 12%.", "07_encoder_decoder_revisited")
    _save(tmp_path, 11, "cannot be shown at toy scale", "no divergence at any learning rate.", "07_encoder_decoder_revisited")
    _save(tmp_path, 11, "supported", "QK-norm keeps max logit at 6.1 vs 48.", "06_latency_and_cost")
    return tmp_path


# --------------------------------------------------------------------------- library: combine, render, refuse


@pytest.mark.parametrize("verdicts,combined", [
    ([], None),
    (["supported"], "supported"),
    (["nuanced", "nuanced"], "nuanced"),
    (["supported", "contradicted at toy scale"], "nuanced"),
    (["supported", "nuanced"], "nuanced"),
    (["cannot be shown at toy scale", "supported"], "supported"),
    (["cannot be shown at toy scale", "cannot be shown at toy scale"], "cannot be shown at toy scale"),
    (["cannot be shown at toy scale", "supported", "contradicted at toy scale"], "nuanced"),
])
def test_combine_verdicts_follows_the_stated_rule(verdicts, combined):
    assert combine_verdicts(verdicts) == combined


def test_combine_verdicts_refuses_an_unknown_verdict():
    with pytest.raises(ValueError, match="verdict must be one of"):
        combine_verdicts(["supported", "Supported"])


def test_render_shows_missing_claims_and_each_lesson(partial):
    ledger = load_ledger(partial)
    text = render_ledger(ledger, notebooks=partial)  # no notebooks there: links use the sections as saved
    parsed = parse_ledger_table(text)
    assert ledger_problems(parsed, ledger, notebooks=partial) == []
    assert parsed[8]["raw_verdict"] == NOT_MEASURED and parsed[8]["evidence"] == "run lesson 07 in full mode"
    assert parsed[10]["evidence"] == "run lesson 05 or 07 in full mode"
    assert parsed[3]["evidence"] == "run lesson 03, 04 or 06 in full mode"
    assert parsed[6]["verdict"] == "nuanced" and [r["lesson"] for r in parsed[6]["lessons"]] == ["05", "07"]
    assert parsed[11]["verdict"] == "supported" and [r["verdict"] for r in parsed[11]["lessons"]] == [
        "supported", "cannot be shown at toy scale"]
    assert parsed[1]["evidence"] == "MLM accuracy 0.91 vs 0.12 | with a pipe"
    assert parsed[1]["where"] == "[02 · 3. Fill the blanks](02_encoder_mlm.ipynb#3.-Fill-the-blanks)"
    assert "\\|" in text and len(text.strip().splitlines()) == 2 + 12 + 4  # claims 6 and 11 have two sub-rows each


def test_the_comparison_catches_a_stale_or_edited_table(partial):
    ledger = load_ledger(partial)
    good = render_ledger(ledger, notebooks=partial)
    problems = lambda text, ledger: ledger_problems(parse_ledger_table(text), ledger, notebooks=partial)  # noqa: E731
    stale = good.replace("**nuanced** | ED reached", "**supported** | ED reached")
    assert any("claim 4" in p for p in problems(stale, ledger))
    edited = good.replace("6.9e11", "5.0e11")
    assert any("claim 4, lesson 05" in p for p in problems(edited, ledger))
    relinked = good.replace("#5.-Three-families-compared", "#5.-Three-families")
    assert any("does not point to its section" in p for p in problems(relinked, ledger))
    empty = render_ledger(load_ledger(partial / "nothing-here"), notebooks=partial)
    assert {p.split(":")[0] for p in problems(empty, ledger)} >= {"claim 1", "claim 4", "claim 6", "claim 11"}
    # a new lesson saved a result the notebook has not shown yet
    _save(partial, 8, "nuanced", "ED ppl x1.8 at 4T vs x3.1.", "07_encoder_decoder_revisited")
    assert any(p.startswith("claim 8") for p in problems(good, load_ledger(partial)))


def test_parts_are_rows_the_independent_parser_checks(partial):
    """A two-part claim saved by two lessons (judge's Verdicts, one per part): every part of every lesson is a row,
    and a table that hides a part's disagreement is caught."""
    from course_lib.lessons.ledger import judge_exact, judge_similar

    for lesson, ratios in (("05_translator", [2.6, 2.9, 2.4]), ("07_encoder_decoder_revisited", [0.46, 0.5, 0.44])):
        parts = [judge_exact(2.1, (1.6, 2.4), what="FLOPs per sequence ratio", part="a"),
                 judge_similar(ratios, (0.8, 1.25), what="compute ratio", part="b")]
        record_claim(6, parts, "two parts", lesson=lesson, section="2. An experiment", save=True, folder=partial)
    ledger = load_ledger(partial)
    text = render_ledger(ledger, notebooks=partial)
    parsed = parse_ledger_table(text)
    assert ledger_problems(parsed, ledger, notebooks=partial) == []
    assert [(r["lesson"], r["part"], r["verdict"]) for r in parsed[6]["lessons"]] == [
        ("05", "a", "supported"), ("05", "b", "contradicted at toy scale"),
        ("07", "a", "supported"), ("07", "b", "contradicted at toy scale")]
    assert parsed[6]["verdict"] == "nuanced"
    hidden = text.replace("| ↳ lesson 07 (b) | contradicted at toy scale |", "| ↳ lesson 07 (b) | supported |")
    assert any("claim 6, lesson 07 (b)" in p for p in ledger_problems(parse_ledger_table(hidden), ledger, notebooks=partial))


HEADINGS = ["07 · The lesson", "1. The recipe", "2. RedLLM vs DecLLM", "2.1 Claim 6(a): FLOPs per sequence",
            "2.2 Training, three seeds", "3. Claim 7: inference FLOPs", "3. Claim 7: a second section 3"]


@pytest.mark.parametrize("section,heading", [
    ("2. RedLLM vs DecLLM", "2. RedLLM vs DecLLM"),           # the heading itself
    ("  2. RedLLM vs DecLLM ", "2. RedLLM vs DecLLM"),
    ("1. The", "1. The recipe"),                              # the one heading that starts with it
    ("2.1-2.2 Claim 6", "2.1 Claim 6(a): FLOPs per sequence"),  # the one heading with its leading number
    ("2.2", "2.2 Training, three seeds"),
    ("3. Claim 7", None),                                     # two headings start with it, two share "3"
    ("9. Nowhere", None),
    ("Summary", None),
])
def test_resolve_section_finds_the_heading_a_lesson_meant(section, heading):
    assert resolve_section(section, HEADINGS) == heading


def test_links_open_the_resolved_heading(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 07 · The lesson\n\nintro"),
                                         nbformat.v4.new_markdown_cell("### 2.1 Claim 6(a): FLOPs per sequence")])
    nbformat.write(nb, tmp_path / "07_encoder_decoder_revisited.ipynb")
    results = tmp_path / "claims"
    _save(results, 6, "supported", "x", "07_encoder_decoder_revisited", "2.1-2.2 Claim 6")
    text = render_ledger(load_ledger(results), notebooks=tmp_path)
    assert "[07 · 2.1 Claim 6(a): FLOPs per sequence](07_encoder_decoder_revisited.ipynb#2.1-Claim-6(a):-FLOPs-per-sequence)" in text
    assert ledger_problems(parse_ledger_table(text), load_ledger(results), notebooks=tmp_path) == []


@pytest.mark.parametrize("content,message", [
    ({"4": {"claim": 4, "verdict": "true", "evidence": "e", "lesson": "05_translator", "section": "s"}}, "is not one of"),
    ({"4": {"claim": 5, "verdict": "supported", "evidence": "e", "lesson": "05_translator", "section": "s"}}, "says claim 5"),
    ({"13": {"claim": 13, "verdict": "supported", "evidence": "e", "lesson": "05_translator", "section": "s"}}, "claim number"),
    ({"4": {"claim": 4, "verdict": "supported", "evidence": "e", "lesson": "04_encoder_decoder", "section": "s"}}, "lives in"),
    ({"4": {"claim": 4, "verdict": "supported", "lesson": "05_translator", "section": "s"}}, "missing"),
])
def test_load_ledger_refuses_a_bad_file_naming_it(tmp_path, content, message):
    (tmp_path / "05_translator.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message) as err:
        load_ledger(tmp_path)
    assert "05_translator.json" in str(err.value)


# --------------------------------------------------------------------------- the committed results and notebook


def test_saved_results_are_valid_and_link_to_real_sections():
    """Every saved verdict is one of the four (load_ledger checks), names a lesson that exists, and a
    section that resolves to a heading of that lesson (so the ledger's link opens it)."""
    ledger = load_ledger()
    for claim, entries in ledger.items():
        for e in entries:
            assert e["verdict"] in VERDICTS
            assert e["evidence"].strip(), f"claim {claim} ({e['lesson']}): empty evidence"
            assert (ROOT / "notebooks" / f"{e['lesson']}.ipynb").exists(), f"claim {claim}: no notebook {e['lesson']}"
            headings = _headings(e["lesson"])
            assert resolve_section(e["section"], headings) is not None, (
                f"claim {claim}: section {e['section']!r} is not a heading of notebooks/{e['lesson']}.ipynb (nor the "
                f"start or number of exactly one), so the ledger's link cannot open it; use one of: {headings}")


def test_notebook_08_shows_exactly_the_saved_results():
    """The ledger in notebook 08's committed outputs agrees with results/claims/*.json. If this fails
    after a lesson saved new results, re-execute notebook 08 in full mode and commit it."""
    tables = _notebook_ledger_markdown()
    assert len(tables) == 1, f"notebook 08 should show the ledger table once in its outputs, found {len(tables)}"
    ledger = load_ledger()
    problems = ledger_problems(parse_ledger_table(tables[0]), ledger)
    assert not problems, "notebook 08 is stale; re-execute it:\n" + "\n".join(problems)
    assert tables[0] == render_ledger(ledger), "notebook 08's ledger table is not the current render_ledger(load_ledger())"


def test_COMPLETENESS_every_claim_has_a_saved_verdict():
    """COMPLETENESS: all 12 claims have at least one saved verdict in results/claims/. Fails until
    every lesson that tests a claim has been run in full mode and its results file committed."""
    ledger = load_ledger()
    missing = {c: CLAIM_LESSONS[c] for c, entries in ledger.items() if not entries}
    assert not missing, (f"claims without a saved verdict in {results_dir()}: "
                         + "; ".join(f"claim {c} (lesson {' or '.join(n)})" for c, n in missing.items()))


# --------------------------------------------------------------------------- the closing quiz


def _quiz_cells():
    """The cells that build QUIZ (one ``QUIZ = [`` cell, then ``QUIZ += [`` cells, in notebook order; short cells
    of a few questions each), joined, and the answer cell."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    define = [s for s in code if s.lstrip().startswith(("QUIZ = [", "QUIZ += ["))]
    answers = [s for s in code if "my_answers = {" in s]
    assert define and define[0].lstrip().startswith("QUIZ = [") and sum(s.lstrip().startswith("QUIZ = [") for s in define) == 1
    assert len(answers) == 1
    assert code.index(answers[0]) > code.index(define[-1]), "the answer cell must come after every question"
    return "\n".join(define), answers[0]


@pytest.fixture
def closing_quiz(capsys):
    define, _ = _quiz_cells()
    namespace = {"MultipleChoice": quiz.MultipleChoice, "ask": quiz.ask}
    exec(compile(define, "notebook 08 quiz cells", "exec"), namespace)
    capsys.readouterr()
    return namespace["QUIZ"]


def test_closing_quiz_grades_every_option(closing_quiz):
    ids = [q.id for q in closing_quiz]
    assert len(closing_quiz) >= 5 and len(set(ids)) == len(ids) and all(ids)
    for q in closing_quiz:
        assert quiz.grade_choice(q.id, q.answer_letter)[0] is True
        for i, option in enumerate(q.options):
            assert q.explanation(i), f"{q.id}: option {option!r} has no explanation"
            ok, message = quiz.grade_choice(q.id, i)
            assert ok == (i == q.answer)
            if not ok:
                assert message.startswith(f"Not quite, ({quiz.LETTERS[i]}) is wrong:")


def test_closing_quiz_answer_cell_lists_every_question_and_starts_empty(closing_quiz):
    _, answers = _quiz_cells()
    keys = re.findall(r'"([\w-]+)":\s*""', answers)
    assert keys == [q.id for q in closing_quiz]


def test_grade_quiz_and_check_quiz(closing_quiz, capsys):
    right = {q.id: q.answer_letter for q in closing_quiz}
    assert quiz.grade_quiz(right)[0] == len(closing_quiz)
    wrong = dict(right)
    first = closing_quiz[0]
    wrong[first.id] = quiz.LETTERS[(first.answer + 1) % len(first.options)]
    score, results = quiz.grade_quiz(wrong)
    assert score == len(closing_quiz) - 1 and results[0][0] == first.id and results[0][1] is False
    assert quiz.check_quiz(wrong) == score
    out = capsys.readouterr().out
    assert out.startswith(f"❌ {first.id}: Not quite") and out.endswith(f"{score} of {len(closing_quiz)} right.\n")
    with pytest.raises(KeyError, match="no question with id"):
        quiz.grade_quiz({"no-such-question": "a"})
