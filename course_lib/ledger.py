"""The claims ledger: each lesson saves the verdicts its experiments computed; lesson 08 reads them.

A verdict is never typed into the final table: a lesson computes it from its own measurements and
calls :func:`record_claim`, which writes ``results/claims/<lesson>.json`` at the repository root.
Only **full-mode** runs write (fast mode's shrunken schedules would overwrite real results with
meaningless ones); in fast mode :func:`record_claim` validates and returns the entry without saving.

    record_claim(4, "nuanced", "ED reached BLEU 95 after 6.9e11 FLOPs vs 1.6e12 …",
                 lesson="05_translator", section="5. Three families compared",
                 numbers={"flops_to_target_ed": 6.9e11, "flops_to_target_dec": 1.6e12})

The twelve claims and their one-line statements live in :data:`CLAIMS` (one source of truth for
lesson 00's list and lesson 08's ledger).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .runtime import fast_mode

VERDICTS = (
    "supported",
    "nuanced",
    "contradicted at toy scale",
    "cannot be shown at toy scale",
)

CLAIMS: dict[int, str] = {
    1: "An encoder-only model sees both directions; it cannot generate autoregressively without a decoder.",
    2: "Training is parallel over positions for all three families (teacher forcing); decoder inference is sequential.",
    3: "Inference cost: an encoder is one pass; decoder-only pays the whole prompt (prefill) before its first token; "
       "an encoder-decoder pays one encoder pass plus one decoder step.",
    4: "An encoder-decoder is more efficient than a causal LM on transformation (input -> output) tasks.",
    5: "Most retrieval embedding models are encoder-only.",
    6: "(a) At equal parameters a decoder-only model needs about 2x the training FLOPs per sequence; "
       "(b) to reach a given perplexity the two need similar compute (curves nearly overlap).",
    7: "At equal parameters an encoder-decoder needs about half the inference FLOPs per sequence and a smaller KV cache.",
    8: "Encoder-decoder perplexity degrades more smoothly beyond the training length.",
    9: "Locality decay: decoder self-attention mass near the diagonal falls with position (more for decoder-only); "
       "cross-attention keeps a stable subset of source tokens.",
    10: "Giving a decoder-only model bidirectional attention over its input (prefix-LM) helps a lot on input -> output tasks.",
    11: "The modern recipe (RoPE everywhere, RMSNorm pre-norm, SwiGLU, QK-norm, V-norm) trains stably.",
    12: "Using an encoder-decoder for next-token prediction with the future in the encoder is cheating: "
        "training loss collapses and generation fails.",
}


def results_dir() -> Path:
    """``results/claims`` at the repository root (the folder above ``course_lib``)."""
    return Path(__file__).resolve().parent.parent / "results" / "claims"


def record_claim(
    claim: int,
    verdict: str,
    evidence: str,
    *,
    lesson: str,
    section: str,
    numbers: dict[str, Any] | None = None,
    save: bool | None = None,
    folder: str | Path | None = None,
) -> dict[str, Any]:
    """Validate one computed verdict and (in full mode) merge it into ``<folder>/<lesson>.json``.

    ``claim``: 1-12. ``verdict``: one of :data:`VERDICTS`. ``evidence``: one sentence with the
    measured numbers. ``lesson``: notebook stem, e.g. ``"05_translator"``. ``section``: the heading
    that produced it. ``numbers``: the raw measurements behind the sentence (JSON-serialisable).
    ``save`` defaults to ``not fast_mode()``. Returns the entry.
    """
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of 1..{len(CLAIMS)}, got {claim!r}")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    entry = {
        "claim": claim,
        "verdict": verdict,
        "evidence": evidence,
        "lesson": lesson,
        "section": section,
        "numbers": numbers or {},
    }
    json.dumps(entry)  # fail here, not later, if numbers are not serialisable
    if save is None:
        save = not fast_mode()
    if save:
        path = Path(folder) if folder is not None else results_dir()
        path.mkdir(parents=True, exist_ok=True)
        file = path / f"{lesson}.json"
        data = json.loads(file.read_text()) if file.exists() else {}
        data[str(claim)] = entry
        file.write_text(json.dumps(dict(sorted(data.items(), key=lambda kv: int(kv[0]))), indent=2) + "\n")
    return entry


def load_ledger(folder: str | Path | None = None) -> dict[int, list[dict[str, Any]]]:
    """Every saved verdict, grouped by claim number (a claim may be tested in several lessons)."""
    path = Path(folder) if folder is not None else results_dir()
    ledger: dict[int, list[dict[str, Any]]] = {c: [] for c in CLAIMS}
    for file in sorted(path.glob("*.json")):
        for key, entry in json.loads(file.read_text()).items():
            _validate_entry(file, key, entry)
            ledger[int(key)].append(entry)
    return ledger


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
    "measured verdicts that disagree combine to 'nuanced'."
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
    return results_dir().parent.parent / "notebooks"


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
    """Combined verdict per claim (``None``: not yet measured)."""
    return {c: combine_verdicts([e["verdict"] for e in ledger.get(c, [])]) for c in CLAIMS}


def render_ledger(ledger: dict[int, list[dict[str, Any]]], notebooks: str | Path | None = None) -> str:
    """The claims ledger as a Markdown table: one row per claim, plus one row per lesson where several
    lessons tested it (the claim's row then shows the combined verdict). ``notebooks``: the folder whose
    lesson headings the links point to (default :func:`notebooks_dir`)."""
    lines = [LEDGER_HEADER, "|---|---|---|---|---|"]

    def link(e: dict[str, Any]) -> str:
        return section_link(e, lesson_headings(e["lesson"], notebooks))

    for claim, statement in CLAIMS.items():
        entries = sorted(ledger.get(claim, []), key=lambda e: e["lesson"])
        combined = combine_verdicts([e["verdict"] for e in entries])
        if combined is None:
            lines.append(f"| {claim} | {_cell(statement)} | *{NOT_MEASURED}* | {not_measured_hint(claim)} | — |")
        elif len(entries) == 1:
            e = entries[0]
            lines.append(f"| {claim} | {_cell(statement)} | **{combined}** | {_cell(e['evidence'])} | {link(e)} |")
        else:
            lessons = ", ".join(e["lesson"][:2] for e in entries)
            lines.append(f"| {claim} | {_cell(statement)} | **{combined}** | combined over lessons {lessons} | — |")
            for e in entries:
                lines.append(f"| | ↳ lesson {e['lesson'][:2]} | {e['verdict']} | {_cell(e['evidence'])} | {link(e)} |")
    return "\n".join(lines) + "\n"
