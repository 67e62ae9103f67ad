"""Lesson 06's numbers on this machine: latency, FLOPs and memory of the three families, each
prediction next to its measurement.

    python benchmarks/latency.py                 # full run (a few minutes on a laptop CPU)
    python benchmarks/latency.py --quick         # tiny sizes: a smoke test (seconds)
    python benchmarks/latency.py --device cuda --threads 4 --out some/dir

(1) machine        peak matmul FLOP/s, copy bandwidth (the roofline's two roofs)
(2) parallel       one teacher-forced forward over T tokens vs generating T tokens, per family
(3) ttft           time to first token and time per token vs prompt length P, per family
(4) scenario       "1000 + 1000" at equal non-embedding parameters: FLOPs, KV bytes, times
(5) roofline       prefill and decode points at batch 1, 4, 16, 64
(6) memory         KV-cache bytes vs P and G for both decoders: formula vs the cache tensors

Writes ``<out>/latency-<hardware-slug>.json`` and ``.md``. The JSON's ``predictions`` list holds,
for every prediction lesson 06 makes, ``predicted`` and ``measured`` side by side. The script
exits 0 either way: it is a measurement, not a test.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from pathlib import Path

import torch

from course_lib import latency as lat
from course_lib.bench import hardware_info, hardware_slug, report_header, save_report
from course_lib.config import ModelConfig


def _pred(name: str, predicted, measured, unit: str, basis: str, tolerance: float | None) -> dict:
    ok = None
    if tolerance is not None and predicted and measured is not None:
        ok = abs(measured / predicted - 1) <= tolerance
    return {"name": name, "predicted": predicted, "measured": measured, "unit": unit, "basis": basis,
            "tolerance": tolerance, "within_tolerance": ok}


def run(device: torch.device, quick: bool, repeat: int) -> dict:
    t0 = time.perf_counter()
    out: dict = {}
    hw = lat.machine(device, quick=quick)
    out["machine"] = hw
    cfg = ModelConfig(vocab_size=1000, d_model=128, n_heads=4, n_layers=4, max_len=2048)
    small = ModelConfig(vocab_size=256, d_model=64, n_heads=4, n_layers=2, max_len=512)
    use = small if quick else cfg
    T = 16 if quick else 128
    out["parallel_vs_sequential"] = lat.parallel_vs_sequential(use, T, hw, device, repeat=repeat)
    prompts = [8, 32] if quick else [16, 64, 256, 1024]
    out["ttft_sweep"] = lat.ttft_sweep(use, prompts, 8 if quick else 64, hw, device, repeat=repeat)
    P = G = 32 if quick else 1000
    out["scenario"] = lat.scenario(lat.matched_pair(d_model=64), P, G, hw, device, repeat=repeat, count=True)
    batches = [1, 4] if quick else [1, 4, 16, 64]
    out["roofline"] = lat.roofline_points(use, batches, 32 if quick else 128, hw, device, repeat=max(repeat, 5))
    out["memory"] = lat.memory_sweep(use, [(8, 4), (16, 8)] if quick else [(16, 16), (64, 64), (256, 256), (512, 512)], device)

    preds = []
    sc = out["scenario"]["ratios"]
    preds.append(_pred("1000+1000: non-embedding params ED / DO", 1.0, sc["params"]["measured"], "x", "matched depth (0.44 rule, SwiGLU)", 0.02))
    preds.append(_pred("1000+1000: FLOPs ED / DO", sc["flops"]["predicted"], sc["flops"]["measured"], "x", "costs.generation_flops vs FlopCounterMode", 0.02))
    preds.append(_pred("1000+1000: KV bytes ED / DO", sc["kv_bytes"]["predicted"], sc["kv_bytes"]["measured"], "x", "costs.kv_cache_bytes_for vs cache tensors", 0.0))
    for k in ("per_token_time", "ttft", "total_time"):
        preds.append(_pred(f"1000+1000: {k} ED / DO", sc[k]["predicted"], sc[k]["measured"], "x", sc[k]["basis"], 0.15))
    for fam, row in out["parallel_vs_sequential"].items():
        if "time_ratio" in row:
            preds.append(_pred(f"{fam}: generate T / one forward over T (time)", row["time_ratio"]["predicted"], row["time_ratio"]["measured"],
                               "x", "T steps x (overhead + FLOPs/peak) vs one pass", 0.15))
    for r in out["ttft_sweep"]:
        preds.append(_pred(f"{r['family']} P={r['P']}: TTFT", r["ttft_predicted_s"], r["ttft_s"], "s", "overhead + FLOPs / peak", 0.15))
        if r["G"]:
            preds.append(_pred(f"{r['family']} P={r['P']}: time per token", r["per_token_predicted_s"], r["per_token_s"], "s", "overhead + FLOPs / peak", 0.15))
    for r in out["roofline"]:
        preds.append(_pred(f"roofline {r['kind']} batch {r['batch']}: time", r["time_predicted_s"], r["time_s"], "s",
                           "overhead + max(FLOPs / peak, bytes / bandwidth)", 0.15))
    for r in out["memory"]:
        preds.append(_pred(f"KV bytes {r['family']} P={r['P']} G={r['G']}", r["predicted"]["total"], r["measured"]["total"], "B",
                           "costs.kv_cache_bytes_for vs cache tensors", 0.0))
    out["predictions"] = preds
    out["seconds"] = time.perf_counter() - t0
    return out


def _fmt(v, unit):
    if v is None:
        return "-"
    if unit == "s":
        return f"{1e3 * v:.3f} ms"
    if unit == "B":
        return f"{v:,.0f} B"
    return f"{v:.3f}{unit}"


def render_markdown(report: dict) -> str:
    r = report["results"]
    hw = r["machine"]
    lines = [*report_header("Latency, FLOPs and memory (lesson 06)", report), "",
             f"Measured roofs: peak matmul {hw['peak_flops'] / 1e9:.1f} GFLOP/s, copy bandwidth {hw['bandwidth'] / 1e9:.1f} GB/s.", "",
             "| prediction | predicted | measured | measured / predicted | within tolerance | basis |", "|---|---|---|---|---|---|"]
    for p in r["predictions"]:
        ratio = f"{p['measured'] / p['predicted']:.2f}" if p["predicted"] and p["measured"] is not None else "-"
        verdict = {True: "yes", False: "no", None: "-"}[p["within_tolerance"]]
        lines.append(f"| {p['name']} | {_fmt(p['predicted'], p['unit'])} | {_fmt(p['measured'], p['unit'])} | {ratio} | {verdict} (±{100 * (p['tolerance'] or 0):.0f}%) | {p['basis']} |")
    lines += ["", "Times are medians of repeated runs on this machine; lesson 06 explains each model and where it fails.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps (default: cpu)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a smoke test")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="folder for the .json and .md")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--repeat", type=int, default=None, help="timed runs per measurement (default 3, quick 2)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeat = args.repeat or (2 if args.quick else 3)
    results = run(device, args.quick, repeat)
    info = hardware_info()
    report = {
        "slug": "latency-" + hardware_slug(info, device, args.quick),
        "hardware": info,
        "device": str(device),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python " + " ".join(shlex.quote(a) for a in ["benchmarks/latency.py", *(sys.argv[1:] if argv is None else argv)]),
        "quick": args.quick,
        "repeat": repeat,
        "results": results,
    }
    save_report(report, args.out, render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
