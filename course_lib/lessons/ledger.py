"""The claims ledger: each lesson saves the verdicts its experiments computed; lesson 08 reads them.

A verdict is never typed into the final table: a lesson computes it from its own measurements and
calls :func:`record_claim`, which writes ``results/claims/<lesson>.json`` at the repository root.
Only **full-mode** runs write (fast mode's shrunken schedules would overwrite real results with
meaningless ones); in fast mode :func:`record_claim` validates and returns the entry without saving.

    record_claim(4, "nuanced", "ED reached BLEU 95 after 6.9e11 FLOPs vs 1.6e12 …",
                 lesson="05_translator", section="5. Three families compared",
                 numbers={"flops_to_target_ed": 6.9e11, "flops_to_target_dec": 1.6e12})

The twelve claims and their one-line statements live in :data:`CLAIMS` (one source of truth for
lesson 00's list and lesson 08's ledger); the lessons that test each, in :data:`CLAIM_LESSONS`
(rendered for the README and lesson 00 by :func:`render_claim_map`).

A verdict comes from the rule below, applied to the measurements by :func:`judge` (a directional
claim), :func:`judge_similar` ("about equal") or :func:`judge_exact` (a count), each returning a
:class:`Verdict` whose one-line ``reason`` the notebook prints and :func:`record_claim` saves::

    v = judge(bleu_encdec, bleu_decoder, higher_is_better=True, what="validation BLEU",
              names=("encoder-decoder", "decoder-only"), ceiling=99)
    print(v)                                   # "supported: validation BLEU: ... every run of ..."
    record_claim(4, v, evidence, lesson="05_translator", section="9. Three families")
    record_claim(6, [v_a, v_b], evidence, ...)  # a two-part claim: one Verdict per part
"""
from __future__ import annotations

import json
import math
import numbers
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..runtime import fast_mode

VERDICTS = (
    "supported",
    "nuanced",
    "contradicted at toy scale",
    "cannot be shown at toy scale",
    "no clear difference",
)

CLAIMS: dict[int, str] = {
    1: "An encoder-only model sees both directions; it cannot generate autoregressively without a decoder.",
    2: "Training is parallel over positions for all three families (teacher forcing); decoder inference is sequential.",
    3: "Inference cost: an encoder is one pass; decoder-only pays the whole prompt (prefill) before its first token; "
       "an encoder-decoder pays one encoder pass plus one decoder step.",
    4: "An encoder-decoder is more efficient than a causal LM on transformation (input -> output) tasks.",
    5: "Most retrieval embedding models are encoder-only (a count of the field's models; the course tests the reason "
       "usually given: an encoder's pooled vectors, every position having read the whole text, embed sentences better "
       "than a causal LM's).",
    6: "(a) At equal parameters a decoder-only model needs about 2x the training FLOPs per sequence; "
       "(b) to reach a given perplexity the two need similar training compute (arXiv 2510.26622: on a "
       "training-FLOPs axis the quality gap almost disappears, section 5; in its compute-optimal fit, Fig. 3, "
       "the encoder-decoder has a slight edge at low compute and the decoder-only model leads as compute grows).",
    7: "At equal parameters an encoder-decoder needs about half the inference FLOPs per sequence and a smaller KV cache.",
    8: "Encoder-decoder perplexity degrades more smoothly beyond the training length.",
    9: "Locality decay: decoder self-attention mass near the diagonal falls with position (more for decoder-only); "
       "cross-attention keeps a stable subset of source tokens.",
    10: "Giving a decoder-only model bidirectional attention over its input (prefix-LM) helps a lot on input -> output tasks.",
    11: "The modern recipe (RoPE everywhere, RMSNorm pre-norm, SwiGLU, QK-norm, V-norm) trains stably.",
    12: "Using an encoder-decoder for next-token prediction with the future in the encoder is cheating: "
        "training loss collapses and generation fails.",
}


#: Where the saved verdicts can be: the repository's ``results/claims`` (a checkout, an editable install),
#: then the copy that a regular install of course_lib carries as the package ``course_lib.claims_results``
#: (pyproject.toml maps it; Colab), as for benchmark results. A full-mode run writes to the first that
#: exists, so on Colab a lesson the learner reran replaces that lesson's shipped file and no other.
RESULTS_FOLDERS = (Path(__file__).resolve().parents[2] / "results" / "claims",
                   Path(__file__).resolve().parents[1] / "claims_results")


def results_dir(folders: Sequence[str | Path] | None = None) -> Path:
    """The first of ``folders`` that exists (default :data:`RESULTS_FOLDERS`: the repository's ``results/claims``,
    else the copy shipped with course_lib); the first one if none does, so :func:`record_claim` creates it there."""
    folders = [Path(f) for f in (RESULTS_FOLDERS if folders is None else folders)]
    return next((f for f in folders if f.is_dir()), folders[0])


def record_claim(
    claim: int,
    verdict: str | Verdict | Sequence[Verdict],
    evidence: str,
    *,
    lesson: str,
    section: str,
    numbers: dict[str, Any] | None = None,
    save: bool | None = None,
    folder: str | Path | None = None,
) -> dict[str, Any]:
    """Validate one computed verdict and (in full mode) merge it into ``<folder>/<lesson>.json``.

    ``claim``: 1-12. ``verdict``: one of :data:`VERDICTS`, or the :class:`Verdict` that :func:`judge` returned
    (its reason is saved too), or one :class:`Verdict` per part of a two-part claim (saved under ``"parts"``,
    the claim's verdict by :func:`combine_parts`). ``evidence``: one sentence with the measured numbers.
    ``lesson``: notebook stem, e.g. ``"05_translator"``. ``section``: the heading
    that produced it. ``numbers``: the raw measurements behind the sentence (JSON-serialisable; strict JSON
    has no NaN or infinity, so NaN is saved as ``None`` and infinity as ``"inf"``).
    ``save`` defaults to ``not fast_mode()``. Returns the entry.
    """
    claim = _claim_number(claim)
    _check_lesson_name(lesson)
    judged = _judged_fields(verdict)
    entry = {
        "claim": claim,
        "verdict": judged.pop("verdict"),
        "evidence": evidence,
        "lesson": lesson,
        "section": section,
        "numbers": numbers or {},
        **judged,
    }
    if isinstance(entry["numbers"], dict):
        entry["numbers"] = _finite(entry["numbers"])
    _check_json(entry)  # fail here, not later, if numbers are not standard JSON
    if save is None:
        save = not fast_mode()
    if save:
        path = Path(folder) if folder is not None else results_dir()
        if path.exists() and not path.is_dir():
            raise ValueError(f"the results folder {str(path)!r} is a file; pass a folder as folder=.")
        path.mkdir(parents=True, exist_ok=True)
        file = path / f"{lesson}.json"
        data = _read_results(file) if file.exists() else {}
        data[str(claim)] = entry
        file.write_text(json.dumps(dict(sorted(data.items(), key=lambda kv: int(kv[0]))), indent=2, allow_nan=False) + "\n")
    return entry


def load_ledger(folder: str | Path | None = None) -> dict[int, list[dict[str, Any]]]:
    """Every saved verdict, grouped by claim number (a claim may be tested in several lessons), read from
    ``folder`` (default :func:`results_dir`: the repository's ``results/claims``, else the shipped copy)."""
    path = Path(folder) if folder is not None else results_dir()
    ledger: dict[int, list[dict[str, Any]]] = {c: [] for c in CLAIMS}
    for file in sorted(path.glob("*.json")):
        for key, entry in _read_results(file).items():
            _validate_entry(file, key, entry)
            ledger[int(key)].append(entry)
    return ledger


def _claim_number(claim: Any) -> int:
    """``claim`` as a plain int 1..12, or a clear error (4.0 and True are not claim numbers)."""
    if isinstance(claim, numbers.Integral) and not isinstance(claim, bool) and int(claim) in CLAIMS:
        return int(claim)
    raise ValueError(f"claim must be a whole number from 1 to {len(CLAIMS)} (the keys of ledger.CLAIMS); got {claim!r}.")


def _check_lesson_name(lesson: Any) -> None:
    """A lesson is a notebook stem such as ``05_translator``: its results file must stay inside the results folder."""
    if not (isinstance(lesson, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", lesson) and ".." not in lesson):
        raise ValueError(f"lesson must be a notebook's name without folders or suffix, such as '05_translator'; got {lesson!r}.")


def _finite(x: Any) -> Any:
    """``x`` in strict JSON: a NaN measurement (e.g. the loss of a run that diverged) becomes ``None``
    and an infinite one the string ``"inf"`` / ``"-inf"``, as :func:`json_safe` writes them."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return json_safe(x)


def _check_json(entry: dict[str, Any]) -> None:
    """Refuse what standard JSON cannot hold (NaN, infinity, tensors, ...), naming the value's place in the entry;
    ``evidence`` and ``section`` are text and ``numbers`` a dict."""
    for name in ("evidence", "section"):
        if not isinstance(entry[name], str):
            raise TypeError(f"{name} must be text (a str); got {type(entry[name]).__name__}.")
    if not isinstance(entry["numbers"], dict):
        raise TypeError(f"numbers must be a dict of named measurements, e.g. {{'bleu': 95.1}}; got {type(entry['numbers']).__name__}.")
    def walk(x: Any, where: str) -> None:
        if isinstance(x, float) and not math.isfinite(x):
            raise ValueError(f"{where} is {x}, which standard JSON cannot hold; record None (or the string 'inf') instead.")
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{where}[{k!r}]")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{where}[{i}]")
        elif not isinstance(x, (str, int, float, bool, type(None))):
            raise TypeError(f"{where} is a {type(x).__name__}, which JSON cannot hold; record plain numbers (e.g. float(x)).")

    for key, value in entry.items():
        walk(value, key)


def _read_results(file: Path) -> dict[str, Any]:
    """A saved results file as a dict, or a clear error naming the file (strict JSON: no NaN)."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not standard JSON")

    try:
        data = json.loads(file.read_text(encoding="utf-8"), parse_constant=refuse)
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"the results file {str(file)!r} is not valid JSON ({e}); delete it and rerun its lesson in full mode.") from None
    if not isinstance(data, dict):
        raise ValueError(f"the results file {str(file)!r} holds a {type(data).__name__}, not an object of claims; "
                         "delete it and rerun its lesson in full mode.")
    return data


def _validate_entry(file: Path, key: str, entry: Any) -> None:
    """Refuse a saved entry that :func:`record_claim` would not have written, naming file and claim."""
    where = f"{file.name}, claim {key!r}"
    if not (isinstance(key, str) and key.isdigit() and int(key) in CLAIMS):
        raise ValueError(f"{where}: the key must be a claim number 1..{len(CLAIMS)}.")
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object, got {type(entry).__name__}.")
    missing = [k for k in ("claim", "verdict", "evidence", "lesson", "section") if k not in entry]
    if missing:
        raise ValueError(f"{where}: missing {missing}; save entries with record_claim().")
    if entry["claim"] != int(key):
        raise ValueError(f"{where}: the entry says claim {entry['claim']!r}.")
    if entry["verdict"] not in VERDICTS:
        raise ValueError(f"{where}: verdict {entry['verdict']!r} is not one of {VERDICTS}.")
    if entry["lesson"] != file.stem:
        raise ValueError(f"{where}: the entry names lesson {entry['lesson']!r}, but lives in {file.name}.")
    _validate_parts(where, entry)


# --------------------------------------------------------------------------- the ledger table (lesson 08)

#: The lessons whose experiments test each claim (two-digit lesson numbers): the hint a learner gets
#: while a claim has no saved verdict. This is where the experiments are, not what they found.
CLAIM_LESSONS: dict[int, tuple[str, ...]] = {
    1: ("02",), 2: ("03", "06"), 3: ("03", "04", "06"), 4: ("05",), 5: ("02",), 6: ("05", "07"),
    7: ("06", "07"), 8: ("07",), 9: ("07",), 10: ("05", "07"), 11: ("07",), 12: ("04",),
}

#: How the ledger combines the verdicts of several lessons on one claim (see :func:`combine_verdicts`).
COMBINE_RULE = (
    "One lesson: its verdict. Several lessons: if they agree, that verdict; a lesson's "
    "'cannot be shown at toy scale' gives way to verdicts other lessons measured; "
    "measured verdicts that disagree combine to 'nuanced'. A claim with parts is combined part by part, and "
    "parts that end with different verdicts give 'nuanced' (each part keeps its own row)."
)

LEDGER_HEADER = "| # | claim | verdict | evidence (measured) | where |"
NOT_MEASURED = "not yet measured"


def combine_verdicts(verdicts: list[str] | tuple[str, ...]) -> str | None:
    """One verdict for a claim tested in several lessons, by :data:`COMBINE_RULE`; ``None`` if none."""
    for v in verdicts:
        if v not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {v!r}")
    if not verdicts:
        return None
    measured = {v for v in verdicts if v != VERDICTS[3]} or {VERDICTS[3]}
    return measured.pop() if len(measured) == 1 else "nuanced"


def not_measured_hint(claim: int) -> str:
    """``"run lesson 05 or 07 in full mode"``: where a claim without a saved verdict gets one."""
    lessons = CLAIM_LESSONS[claim]
    names = lessons[0] if len(lessons) == 1 else ", ".join(lessons[:-1]) + " or " + lessons[-1]
    return f"run lesson {names} in full mode"


def notebooks_dir() -> Path:
    """``notebooks/`` at the repository root (absent where course_lib is installed without the course)."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def lesson_headings(lesson: str, folder: str | Path | None = None) -> list[str]:
    """The Markdown headings of ``<folder>/<lesson>.ipynb`` (``[]`` if there is no such notebook)."""
    path = (Path(folder) if folder is not None else notebooks_dir()) / f"{lesson}.ipynb"
    if not path.exists():
        return []
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    return [line.lstrip("#").strip() for cell in cells if cell.get("cell_type") == "markdown"
            for line in "".join(cell.get("source", "")).splitlines() if line.startswith("#")]


def _heading_number(text: str) -> str | None:
    m = re.match(r"(\d+(?:\.\d+)*)(?:\.|-[\d.]+)?(?:\s|$)", text.strip())
    return m.group(1) if m else None


def resolve_section(section: str, headings: list[str]) -> str | None:
    """The heading a saved ``section`` refers to: the heading itself; else the one heading that starts
    with it ("1. Training is parallel" -> "1. Training is parallel (claim 2)"); else the one heading
    with the same leading number ("2.1-2.2 Claim 6" -> "2.1 Claim 6(a): ..."); else ``None``."""
    s = section.strip()
    if s in headings:
        return s
    starts = [h for h in headings if h.startswith(s)]
    if len(starts) == 1:
        return starts[0]
    number = _heading_number(s)
    same = [h for h in headings if number is not None and _heading_number(h) == number]
    return same[0] if len(same) == 1 else None


def section_link(entry: dict[str, Any], headings: list[str] | None = None) -> str:
    """Markdown link to the notebook heading that produced an entry (Jupyter's heading anchors).

    ``headings``: the lesson's headings (default: read from its notebook, see :func:`resolve_section`);
    where none matches, the saved section text is used as it is.
    """
    if headings is None:
        headings = lesson_headings(entry["lesson"])
    target = resolve_section(entry["section"], headings) or " ".join(entry["section"].split())
    anchor = target.replace(" ", "-")
    return f"[{entry['lesson'][:2]} · {_cell(target)}]({entry['lesson']}.ipynb#{anchor})"


def _cell(text: str) -> str:
    """Text safe inside one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def summarise(ledger: dict[int, list[dict[str, Any]]]) -> dict[int, str | None]:
    """Combined verdict per claim (``None``: not yet measured), by :func:`claim_verdict`."""
    return {c: claim_verdict(ledger.get(c, [])) for c in CLAIMS}


def part_verdicts(entries: list[dict[str, Any]]) -> dict[str, str]:
    """``{part: verdict combined over lessons}`` for one claim's saved entries (``""``: entries without parts)."""
    by_part: dict[str, list[str]] = {}
    for e in entries:
        for label, p in (e.get("parts") or {"": e}).items():
            by_part.setdefault(label, []).append(p["verdict"])
    return {label: combine_verdicts(vs) for label, vs in sorted(by_part.items())}


def claim_verdict(entries: list[dict[str, Any]]) -> str | None:
    """One claim's verdict: each part's verdict combined over lessons (:func:`combine_verdicts`), then the parts
    combined (:func:`combine_parts`); ``None`` if nothing is saved."""
    parts = part_verdicts(entries)
    return combine_parts(list(parts.values())) if parts else None


def render_ledger(ledger: dict[int, list[dict[str, Any]]], notebooks: str | Path | None = None) -> str:
    """The claims ledger as a Markdown table: one row per claim, plus one row per lesson where several
    lessons tested it (the claim's row then shows the combined verdict). ``notebooks``: the folder whose
    lesson headings the links point to (default :func:`notebooks_dir`)."""
    lines = [LEDGER_HEADER, "|---|---|---|---|---|"]

    def link(e: dict[str, Any]) -> str:
        return section_link(e, lesson_headings(e["lesson"], notebooks))

    for claim, statement in CLAIMS.items():
        entries = sorted(ledger.get(claim, []), key=lambda e: e["lesson"])
        combined = claim_verdict(entries)
        if combined is None:
            lines.append(f"| {claim} | {_cell(statement)} | *{NOT_MEASURED}* | {not_measured_hint(claim)} | — |")
        elif len(entries) == 1 and "parts" not in entries[0]:
            e = entries[0]
            lines.append(f"| {claim} | {_cell(statement)} | **{combined}** | {_cell(entry_text(e))} | {link(e)} |")
        else:
            lines.append(f"| {claim} | {_cell(statement)} | **{combined}** | {_cell(_claim_summary(entries))} | — |")
            for e in entries:  # one row per lesson, or per lesson and part: disagreement stays visible
                for label, p in (e.get("parts") or {"": e}).items():
                    name = f"↳ lesson {e['lesson'][:2]}" + (f" ({label})" if label else "")
                    text = p["reason"] if label else entry_text(e)
                    lines.append(f"| | {_cell(name)} | {p['verdict']} | {_cell(text)} | {link(e)} |")
    return "\n".join(lines) + "\n"


def entry_text(entry: dict[str, Any]) -> str:
    """What the ledger shows for a saved entry: the verdict rule's reason (when saved from a :class:`Verdict`),
    then the lesson's evidence sentence."""
    return f"{entry['reason']} {entry['evidence']}".strip() if entry.get("reason") else entry["evidence"]


def _claim_summary(entries: list[dict[str, Any]]) -> str:
    """The evidence cell of a claim row with sub-rows: each part's verdict, and the lessons combined."""
    parts = part_verdicts(entries)
    lessons = ", ".join(e["lesson"][:2] for e in entries)
    where = f"combined over lessons {lessons}" if len(entries) > 1 else entry_text(entries[0])
    if list(parts) == [""]:
        return where
    return "; ".join(f"({label}) {v}" for label, v in parts.items() if label) + f". {where}"


# --------------------------------------------------------------------------- the verdict rule

#: A noisy measurement needs at least this many independent runs per side (seeds, or repeated timings).
MIN_SEEDS = 3

#: The rule every lesson's verdict follows (:func:`judge`, :func:`judge_similar`, :func:`judge_exact`);
#: lesson 08 prints it.
VERDICT_RULE = """\
1. Repeats. A noisy measure (a trained model's score, a timing) needs at least 3 independent runs
   per side (seeds, or repeated timings); with fewer: cannot be shown at toy scale, because one run
   cannot tell an effect from run-to-run noise. A count or an identity (FLOPs, bytes, forward passes,
   equal gradients) has no run-to-run spread: one measurement is enough, checked against the claim.
2. Floor and ceiling. If every run of both sides sits at the measure's floor (nothing learned that
   it can see) or at its ceiling (the task saturates): cannot be shown at toy scale.
3. Direction, the same test both ways. The effect is clear only when its spread leaves no doubt
   about its sign: two independent groups must not overlap (every run of one side beats every run
   of the other, by more than the measure's resolution, e.g. a step count's check interval);
   paired runs or per-run effects must have a mean more than twice their standard deviation away
   from no effect. Clear in the claimed direction: supported; clear in the other direction:
   contradicted at toy scale; otherwise: no clear difference (neither side wins).
4. Size. A claim that names a size ("a lot") needs an effect of at least that size; a clear effect
   in the claimed direction that is smaller: nuanced.
5. "Similar" claims. The lesson states a band for what it calls similar (e.g. a compute ratio
   within a factor 1.5 either way; a claim that says "similar" names no number), and the band's
   edge is tested as rule 3 tests "no effect": every run
   inside the band and their mean ± 2 sd inside it too: supported; every run beyond the same edge
   and their mean ± 2 sd beyond it too: contradicted at toy scale; otherwise (runs on both sides
   of an edge, or too close to it for their spread): cannot be shown at toy scale.
6. Parts. A claim with two parts gets one verdict per part; the claim's verdict is theirs when they
   agree and nuanced when they do not, and the ledger shows every part."""

__doc__ += "\nThe verdict rule (:data:`VERDICT_RULE`, :func:`judge`):\n\n" + VERDICT_RULE + "\n"


@dataclass(frozen=True)
class Verdict:
    """One verdict from the rule: ``verdict`` (one of :data:`VERDICTS`), ``reason`` (one or two lines with the
    numbers, for a notebook to print), ``part`` ("" for a whole claim, e.g. "a" / "b" for a two-part claim) and
    ``numbers`` (what the rule looked at: samples, effect, spread)."""

    verdict: str
    reason: str
    part: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def __str__(self) -> str:
        return f"{f'({self.part}) ' if self.part else ''}{self.verdict}: {self.reason}"


def _runs(values: Any, name: str, *, allow_inf: bool) -> list[float]:
    """``values`` as a list of floats, refusing what the rule cannot read (checked where the numbers enter)."""
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        raise ValueError(f"{name} must be a list with one number per run (seed or timing), got the single number "
                         f"{values!r}; pass [{values!r}, ...].")
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of numbers, one per run; got {values!r}.") from None
    if not out:
        raise ValueError(f"{name} is empty: pass one number per run (seed or timing).")
    if any(math.isnan(v) for v in out):
        raise ValueError(f"{name} contains NaN ({out}); record a diverged run as math.inf (worst possible) or leave "
                         "it out and say so in the evidence.")
    if not allow_inf and any(math.isinf(v) for v in out):
        raise ValueError(f"{name} contains an infinite value ({out}); a per-run effect must be finite (compare the "
                         "two sides with judge(a, b) instead, which can rank a diverged run last).")
    return out


def _num(v: float, fmt: str) -> str:
    return "inf" if math.isinf(v) else fmt.format(v)


def spread(values: Sequence[float], fmt: str = "{:.3g}") -> str:
    """``"mean (min-max)"`` of per-run values (the course's way of printing a spread), or the value if one run."""
    v = [float(x) for x in values]
    if len(v) == 1:
        return _num(v[0], fmt)
    mean = math.inf if any(math.isinf(x) for x in v) else statistics.mean(v)
    dash = " to " if min(v) < 0 else "-"  # "-14.7 to -9.67", not "-14.7--9.67"
    return f"{_num(mean, fmt)} ({_num(min(v), fmt)}{dash}{_num(max(v), fmt)})"


def _check_seeds(min_seeds: int) -> None:
    if min_seeds < MIN_SEEDS:
        raise ValueError(f"min_seeds must be at least {MIN_SEEDS} (the rule's minimum), got {min_seeds}.")


def _too_few(sides: dict[str, list[float]], min_seeds: int, what: str, part: str, numbers: dict) -> Verdict | None:
    short = {n: len(v) for n, v in sides.items() if len(v) < min_seeds}
    if not short:
        return None
    names = ", ".join(f"{n + ' ' if n else ''}{k} run{'s' * (k != 1)}" for n, k in short.items())
    return Verdict("cannot be shown at toy scale",
                   f"{what}: only {names}; the rule needs at least {min_seeds} per side to tell an effect from "
                   "run-to-run noise.", part, numbers)


def _saturated(a: list[float], b: list[float], floor: float | None, ceiling: float | None, higher_is_better: bool,
               what: str, part: str, numbers: dict, fmt: str, names: tuple[str, str]) -> Verdict | None:
    both = a + b
    # the floor is the "nothing learned" end, the ceiling the "saturated" end, whichever way the measure points
    at_floor = floor is not None and all((v <= floor) if higher_is_better else (v >= floor) for v in both)
    at_ceiling = ceiling is not None and all((v >= ceiling) if higher_is_better else (v <= ceiling) for v in both)
    if not (at_floor or at_ceiling):
        return None
    limit, why = (floor, "at its floor: neither learned what the measure can see") if at_floor else \
        (ceiling, "at its ceiling: the task saturates, so no difference can show")
    return Verdict("cannot be shown at toy scale",
                   f"{what}: {names[0]} {spread(a, fmt)} vs {names[1]} {spread(b, fmt)}; every run of both is {why} "
                   f"(limit {_num(limit, fmt)}).", part, numbers)


def judge(
    claimed: Sequence[float],
    other: Sequence[float] | None = None,
    *,
    higher_is_better: bool,
    what: str,
    names: tuple[str, str] = ("the claimed side", "the other side"),
    paired: bool = False,
    null: float = 0.0,
    min_effect: float = 0.0,
    resolution: float = 0.0,
    floor: float | None = None,
    ceiling: float | None = None,
    min_seeds: int = MIN_SEEDS,
    part: str = "",
    fmt: str = "{:.3g}",
    better: str = "better",
) -> Verdict:
    """The verdict rule (:data:`VERDICT_RULE`) for a directional claim measured over several runs.

    Three forms:

    * ``judge(a, b)``: two independent groups of runs (e.g. per-seed BLEU of two architectures); the claim says
      ``a`` is better than ``b``. Clear only if the groups do not overlap.
    * ``judge(a, b, paired=True)``: run ``i`` of ``a`` and of ``b`` share everything but the thing compared (same
      seed, same starting weights); the per-run effect is ``a[i] - b[i]``.
    * ``judge(effects, null=1.0)``: per-run effects already computed (e.g. a per-seed ratio; ``null`` is "no
      effect"); the claim says they lie above ``null`` (``higher_is_better=True``) or below it.

    ``higher_is_better``: the direction the claim predicts for ``claimed`` (a loss that should be lower: False; "a
    longer prompt takes longer", claimed = the long prompt's times: True). ``what``: the measure, e.g.
    ``"validation BLEU"``. ``names``: the two sides as the reason should name them. ``min_effect``: the size the
    claim names (in the measure's units, from ``null``). ``resolution``: two groups must be further apart than
    this to count as not overlapping (a step count checked every 50 steps: 50). ``floor`` / ``ceiling``: the
    values at and beyond which the measure stops telling models apart (e.g. exact match 5% / 99%); not for
    per-run effects.
    ``part``: "a", "b"... for a part of a two-part claim. ``better``: the word the reason uses for the claimed
    direction between two groups ("every run of A is better than every run of B"); "slower" when the claim is that
    A takes longer. Returns a :class:`Verdict`; NaN input is refused."""
    _check_seeds(min_seeds)
    a = _runs(claimed, "claimed" if other is not None else "effects", allow_inf=other is not None and not paired)
    if other is None:
        if paired or floor is not None or ceiling is not None:
            raise ValueError("paired, floor and ceiling need both sides' runs: call judge(a, b, ...); per-run effects "
                             "have no floor or ceiling of their own.")
        return _judge_effects(a, null, higher_is_better, min_effect, min_seeds, what, part, fmt, names)
    b = _runs(other, "other", allow_inf=not paired)
    if paired and len(a) != len(b):
        raise ValueError(f"paired runs need one 'other' run per 'claimed' run; got {len(a)} and {len(b)}.")
    sign = 1.0 if higher_is_better else -1.0
    numbers: dict[str, Any] = {"claimed": a, "other": b, "names": list(names), "higher_is_better": higher_is_better}
    early = (_too_few({names[0]: a, names[1]: b}, min_seeds, what, part, numbers)
             or _saturated(a, b, floor, ceiling, higher_is_better, what, part, numbers, fmt, names))
    if early:
        return early
    if paired:
        effects = [x - y for x, y in zip(a, b)]
        v = _judge_effects(effects, 0.0, higher_is_better, min_effect, min_seeds,
                           f"{names[0]} minus {names[1]} per run", part, fmt, names)
        return Verdict(v.verdict, f"{what}: {names[0]} {spread(a, fmt)} vs {names[1]} {spread(b, fmt)}; " + v.reason,
                       part, numbers | v.numbers)
    # independent groups: clear only if the ranges do not overlap; the same test in both directions
    good_a = [sign * x for x in a]
    good_b = [sign * x for x in b]
    finite = all(math.isfinite(x) for x in a + b)
    effect = statistics.mean(a) - statistics.mean(b) if finite else sign * (min(good_a) - min(good_b))
    numbers |= {"effect": effect, "spread_claimed": [min(a), max(a)], "spread_other": [min(b), max(b)]}
    shown = f"{what}: {names[0]} {spread(a, fmt)} vs {names[1]} {spread(b, fmt)} over {len(a)} + {len(b)} runs"
    if min(good_a) - max(good_b) > resolution:
        if min_effect and abs(effect) < min_effect:
            return Verdict("nuanced", f"{shown}; every run of {names[0]} is {better}, but by {_num(abs(effect), fmt)}, "
                                      f"less than the claimed {_num(min_effect, fmt)}.", part, numbers)
        return Verdict("supported", f"{shown}; every run of {names[0]} is {better} than every run of {names[1]}.",
                       part, numbers)
    if min(good_b) - max(good_a) > resolution:
        return Verdict("contradicted at toy scale",
                       f"{shown}; every run of {names[1]} is {better} than every run of {names[0]}.", part, numbers)
    overlap = "overlap" if not resolution else f"overlap or lie within the resolution ({_num(resolution, fmt)})"
    return Verdict("no clear difference", f"{shown}; the runs {overlap}, so neither side wins.", part, numbers)


def _judge_effects(effects: list[float], null: float, higher_is_better: bool, min_effect: float, min_seeds: int,
                   what: str, part: str, fmt: str, names: tuple[str, str]) -> Verdict:
    numbers: dict[str, Any] = {"effects": effects, "null": null, "higher_is_better": higher_is_better}
    early = _too_few({"": effects}, min_seeds, what, part, numbers)
    if early:
        return early
    mean, sd = statistics.mean(effects), statistics.stdev(effects)
    numbers |= {"mean": mean, "sd": sd}
    shown = (f"{what}: {spread(effects, fmt)} over {len(effects)} runs, mean ± 2 sd "
             f"{_num(mean - 2 * sd, fmt)} to {_num(mean + 2 * sd, fmt)}")
    clear = abs(mean - null) > 2 * sd
    toward_claim = (mean > null) == higher_is_better
    if clear and toward_claim:
        if min_effect and abs(mean - null) < min_effect:
            return Verdict("nuanced", f"{shown}: all on the claimed side of {_num(null, fmt)} (no effect), but the mean "
                                      f"is closer to it than the claimed {_num(min_effect, fmt)}.", part, numbers)
        return Verdict("supported", f"{shown}: all on the claimed side of {_num(null, fmt)} (no effect).", part, numbers)
    if clear:
        return Verdict("contradicted at toy scale", f"{shown}: all on the other side of {_num(null, fmt)} (no effect).",
                       part, numbers)
    return Verdict("no clear difference", f"{shown}: includes {_num(null, fmt)} (no effect), so neither side wins.",
                   part, numbers)


def judge_similar(effects: Sequence[float], band: tuple[float, float], *, what: str, min_seeds: int = MIN_SEEDS,
                  part: str = "", fmt: str = "{:.3g}") -> Verdict:
    """The rule for a claim that two things are about equal ("similar compute"): ``effects`` are per-run
    comparisons (e.g. a per-seed ratio), ``band = (lo, hi)`` what the claim calls similar (e.g. ``(2/3, 1.5)``).

    Rule 5 of :data:`VERDICT_RULE`: every run inside the band, and the runs' mean ± 2 sd inside it: supported; every
    run beyond the same edge, and their mean ± 2 sd beyond it: contradicted at toy scale; anything else (runs on
    both sides of an edge, or runs beyond it by less than their spread): cannot be shown at toy scale. An infinite
    run (a target never reached) lies beyond the upper edge; the mean and sd are those of the finite runs."""
    _check_seeds(min_seeds)
    e = _runs(effects, "effects", allow_inf=True)  # an infinite ratio (never reached) is outside any band
    lo, hi = (float(x) for x in band)
    if not lo < hi:
        raise ValueError(f"band must be (low, high) with low < high, got {band!r}.")
    numbers: dict[str, Any] = {"effects": e, "band": [lo, hi]}
    early = _too_few({"": e}, min_seeds, what, part, numbers)
    if early:
        return early
    finite = [x for x in e if math.isfinite(x)]
    mean = statistics.mean(finite) if finite else math.inf
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    low, high = (mean - 2 * sd, mean + 2 * sd) if finite else (math.inf, math.inf)
    numbers |= {"mean": mean, "sd": sd}
    inside = sum(lo <= x <= hi for x in e)
    shown = f"{what}: {spread(e, fmt)} over {len(e)} runs, against the band {_num(lo, fmt)}-{_num(hi, fmt)} for 'similar'"
    interval = f"mean ± 2 sd {_num(low, fmt)} to {_num(high, fmt)}"
    if inside == len(e):
        if lo <= low and high <= hi:
            return Verdict("supported", f"{shown}: every run inside it.", part, numbers)
        return Verdict("cannot be shown at toy scale", f"{shown}: every run inside it, but their {interval} reaches past "
                                                       "its edge, so their spread cannot tell.", part, numbers)
    above, below = all(x > hi for x in e), all(x < lo for x in e)
    if above or below:
        if (above and low > hi) or (below and high < lo):
            return Verdict("contradicted at toy scale", f"{shown}: every run outside it.", part, numbers)
        edge = hi if above else lo
        return Verdict("cannot be shown at toy scale", f"{shown}: every run outside it, but their {interval} reaches "
                                                       f"back past its edge {_num(edge, fmt)}, so the runs sit too close "
                                                       "to it for their spread.", part, numbers)
    if inside == 0:
        return Verdict("cannot be shown at toy scale", f"{shown}: runs on both sides of it, {interval}: too scattered "
                                                       "to say.", part, numbers)
    return Verdict("cannot be shown at toy scale", f"{shown}: {inside} of {len(e)} runs inside, so the seeds scatter "
                                                   "across its edge.", part, numbers)


def judge_exact(value: float, band: tuple[float, float], *, what: str, part: str = "", fmt: str = "{:.3g}") -> Verdict:
    """The rule for a count or an identity (FLOPs, bytes, forward passes): no run-to-run spread, so one value,
    checked against the ``band = (lo, hi)`` the claim allows (``(1.6, 2.4)`` for "about 2x", ``(0, 1)`` for
    "smaller"). Inside: supported; outside: contradicted at toy scale."""
    v = _runs([value], "value", allow_inf=False)[0]
    lo, hi = (float(x) for x in band)
    if not lo <= hi:
        raise ValueError(f"band must be (low, high) with low <= high, got {band!r}.")
    numbers = {"value": v, "band": [lo, hi]}
    shown = f"{what}: {_num(v, fmt)} (exact: no run-to-run spread), the claim allows {_num(lo, fmt)}-{_num(hi, fmt)}"
    if lo <= v <= hi:
        return Verdict("supported", f"{shown}: inside.", part, numbers)
    return Verdict("contradicted at toy scale", f"{shown}: outside.", part, numbers)


def combine_parts(verdicts: Sequence[str]) -> str:
    """A claim's verdict from its parts' (rule 6): their common verdict, or ``"nuanced"`` when they differ."""
    for v in verdicts:
        if v not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {v!r}")
    if not verdicts:
        raise ValueError("a claim needs at least one part's verdict.")
    return verdicts[0] if len(set(verdicts)) == 1 else "nuanced"


def json_safe(x: Any) -> Any:
    """``x`` with infinite floats written as the strings ``"inf"`` / ``"-inf"`` (strict JSON has no infinity)."""
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def _judged_fields(verdict: Any) -> dict[str, Any]:
    """The entry fields :func:`record_claim` saves for a verdict string, a :class:`Verdict`, or one per part."""
    if isinstance(verdict, str):
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        return {"verdict": verdict}
    if isinstance(verdict, Verdict):
        return {"verdict": verdict.verdict, "reason": verdict.reason, "judged": json_safe(verdict.numbers)}
    parts = list(verdict) if isinstance(verdict, (list, tuple)) else None
    if not parts or not all(isinstance(v, Verdict) for v in parts):
        raise ValueError(f"verdict must be one of {VERDICTS}, a Verdict from judge(), or a list of Verdicts (one per "
                         f"part); got {verdict!r}")
    labels = [v.part for v in parts]
    if len(parts) == 1 and not labels[0]:
        return _judged_fields(parts[0])
    if not all(labels) or len(set(labels)) != len(labels):
        raise ValueError(f"the Verdicts of a multi-part claim need distinct part labels (judge(..., part='a')); got {labels}.")
    return {"verdict": combine_parts([v.verdict for v in parts]),
            "parts": {v.part: {"verdict": v.verdict, "reason": v.reason, "judged": json_safe(v.numbers)} for v in parts}}


def _validate_parts(where: str, entry: dict[str, Any]) -> None:
    """A saved multi-part entry: every part has a known verdict and a reason, and the claim's verdict is theirs
    combined by :func:`combine_parts`."""
    parts = entry.get("parts")
    if parts is None:
        return
    if not isinstance(parts, dict) or not parts:
        raise ValueError(f"{where}: 'parts' must map part labels to verdicts; save parts with record_claim([...]).")
    for label, p in parts.items():
        if not isinstance(p, dict) or p.get("verdict") not in VERDICTS or not isinstance(p.get("reason"), str):
            raise ValueError(f"{where}, part {label!r}: needs a verdict (one of {VERDICTS}) and a reason.")
    combined = combine_parts([p["verdict"] for p in parts.values()])
    if entry["verdict"] != combined:
        raise ValueError(f"{where}: the claim's verdict {entry['verdict']!r} is not its parts' combined verdict {combined!r}.")


# --------------------------------------------------------------------------- the claim -> lesson map (README, lesson 00)


def claims_by_lesson() -> dict[str, tuple[int, ...]]:
    """``{"02": (1, 5), "03": (2, 3), ...}``: :data:`CLAIM_LESSONS` read the other way."""
    out: dict[str, list[int]] = {}
    for claim, lessons in CLAIM_LESSONS.items():
        for lesson in lessons:
            out.setdefault(lesson, []).append(claim)
    return {lesson: tuple(sorted(claims)) for lesson, claims in sorted(out.items())}


def render_claim_map(by: str = "claim") -> str:
    """:data:`CLAIM_LESSONS` as a Markdown table: ``by="claim"`` one row per claim (number, statement, lessons),
    ``by="lesson"`` one row per lesson (number, the claims it tests). The README and lesson 00 print this
    instead of keeping their own copy."""
    if by == "claim":
        rows = ["| # | claim | tested in lessons |", "|---|---|---|"]
        rows += [f"| {c} | {_cell(CLAIMS[c])} | {', '.join(CLAIM_LESSONS[c])} |" for c in CLAIMS]
    elif by == "lesson":
        rows = ["| lesson | claims tested |", "|---|---|"]
        rows += [f"| {lesson} | {', '.join(map(str, claims))} |" for lesson, claims in claims_by_lesson().items()]
    else:
        raise ValueError(f"by must be 'claim' or 'lesson', got {by!r}.")
    return "\n".join(rows) + "\n"
