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
            ledger[int(key)].append(entry)
    return ledger
