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
(7) ttft kernels   where the "1000 + 1000" first token's time goes, kernel by kernel (torch.profiler),
                   next to the FLOPs each kernel does: what the FLOPs ratio leaves out of the TTFT ratio

Writes ``<out>/latency-<hardware-slug>.json`` and ``.md``. The JSON's ``predictions`` list holds,
for every prediction lesson 06 makes, ``predicted`` and ``measured`` side by side. The script
exits 0 either way: it is a measurement, not a test.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from course_lib import costs
from course_lib import latency as lat
from course_lib.bench import hardware_info, hardware_slug, report_header, save_report
from course_lib.config import ModelConfig
from course_lib.generation import DecodingSession


def _pred(name: str, predicted, measured, unit: str, basis: str, tolerance: float | None) -> dict:
    ok = None
    if tolerance is not None and predicted and measured is not None:
        ok = abs(measured / predicted - 1) <= tolerance
    return {"name": name, "predicted": predicted, "measured": measured, "unit": unit, "basis": basis,
            "tolerance": tolerance, "within_tolerance": ok}


def kernel_breakdown(fn, peak_flops: float, repeat: int = 3) -> dict:
    """Where one call of ``fn`` spends its time, kernel by kernel: each aten kernel's self time
    (``torch.profiler``, the median over ``repeat`` profiled calls), the FLOPs the FLOP counter gives it (matmuls and
    attention; zero for element-wise kernels) and the rate it reaches, beside ``FLOPs / peak``, the time
    the compute-bound prediction allows. The counter counts a causal attention call as if every key were
    visible; PyTorch's causal kernel skips about half of that work, so its rate reads about 2x high."""
    from torch.profiler import ProfilerActivity, profile

    calls: dict[str, list[tuple[float, int]]] = {}
    with torch.no_grad():
        flops = {op.replace("aten.", "aten::"): n for op, n in costs.count_flops(fn, by_op=True).items()}
        fn()
        for _ in range(repeat):  # one profile per call: a call slowed by other work then moves one median, not every mean
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            for e in prof.key_averages():
                calls.setdefault(e.key, []).append((e.self_cpu_time_total / 1e6, e.count))  # microseconds -> seconds
    rows = []
    for kernel, seen in calls.items():
        t = statistics.median([s for s, _ in seen] + [0.0] * (repeat - len(seen)))
        if t > 0:
            f = flops.get(kernel, 0)
            rows.append({"kernel": kernel, "calls": seen[0][1], "self_s": t, "flops": f, "achieved_flops": f / t if f else None})
    rows.sort(key=lambda r: -r["self_s"])
    total_flops = sum(flops.values())
    return {"rows": rows, "total_self_s": sum(r["self_s"] for r in rows), "flops": total_flops,
            "flop_time_at_peak_s": total_flops / peak_flops, "no_flop_kernels_s": sum(r["self_s"] for r in rows if not r["flops"]),
            "attention_s": sum(r["self_s"] for r in rows if "attention" in r["kernel"]),
            "matmul_s": sum(r["self_s"] for r in rows if r["kernel"] in ("aten::addmm", "aten::mm", "aten::bmm"))}


def ttft_kernels(pair: dict[str, ModelConfig], P: int, hw: dict, device: torch.device, repeat: int) -> dict:
    """The "1000 + 1000" first token of both models (decoder-only: the prefill; encoder-decoder: the
    encoder pass, the cross-attention K/V and the BOS step), through the same decoding session that
    lesson 06 times, broken down by :func:`kernel_breakdown`."""
    x = torch.randint(3, pair["decoder-only"].vocab_size, (1, P), device=device)
    out = {}
    for family, cfg in pair.items():
        model = lat._untrained(family, cfg, device)
        out[family] = kernel_breakdown(lambda: DecodingSession(model, x, fast_path=False).start(), hw["peak_flops"], repeat)
        out[family]["first_token_flops_causal"] = costs.generation_flops(cfg, family, P, 1)["first_token"]
    return out


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
    out["ttft_kernels"] = ttft_kernels(lat.matched_pair(d_model=64), P, hw, device, repeat=3 if quick else 7)

    preds = []
    sc = out["scenario"]["ratios"]
    preds.append(_pred("1000+1000: non-embedding params ED / DO", 1.0, sc["params"]["measured"], "x", "matched depth (0.44 rule, SwiGLU)", 0.02))
    preds.append(_pred("1000+1000: FLOPs ED / DO", sc["flops"]["predicted"], sc["flops"]["measured"], "x", "costs.generation_flops vs FlopCounterMode", 0.02))
    preds.append(_pred("1000+1000: KV bytes ED / DO", sc["kv_bytes"]["predicted"], sc["kv_bytes"]["measured"], "x", "costs.kv_cache_bytes_for vs cache tensors", 0.0))
    for k in ("per_token_time", "ttft", "total_time"):
        preds.append(_pred(f"1000+1000: {k} ED / DO", sc[k]["predicted"], sc[k]["measured"], "x", sc[k]["basis"], 0.15))
    # the first token alone: its own FLOPs, the decoder-only prefill's attention counted causal (its kernel skips the rest)
    tk = out["ttft_kernels"]
    first = {f: tk[f]["first_token_flops_causal"] for f in tk}
    preds.append(_pred("1000+1000: ttft ED / DO (first-token FLOPs, causal prefill)", first["encoder-decoder"] / first["decoder-only"],
                       sc["ttft"]["measured"], "x", "costs.generation_flops first_token, causal attention", 0.15))
    preds.append(_pred("1000+1000: ttft ED / DO (kernel time, profiler)", tk["encoder-decoder"]["total_self_s"] / tk["decoder-only"]["total_self_s"],
                       sc["ttft"]["measured"], "x", "sum of the kernels' self time in one profiled first token each", 0.15))
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
    sc = r["scenario"]["ratios"]["ttft"]
    if sc.get("runs"):
        runs = sorted(sc["runs"])
        lines += ["", f"1000+1000 TTFT ratio ED / DO, run by run: {', '.join(f'{x:.3f}' for x in runs)}."]
    lines += ["", "## Where the 1000+1000 first token's time goes", "",
              "Self time of each aten kernel in one first token (torch.profiler), the FLOPs the counter gives it, and the rate it "
              "reaches; the counter counts causal attention as full, so the causal kernel's rate reads about 2x high.", ""]
    for family, b in r["ttft_kernels"].items():
        lines += [f"**{family}**: kernels {1e3 * b['total_self_s']:.1f} ms in all, of which matmuls {1e3 * b['matmul_s']:.1f} ms, "
                  f"attention {1e3 * b['attention_s']:.1f} ms, kernels with no counted FLOPs {1e3 * b['no_flop_kernels_s']:.1f} ms; "
                  f"counted FLOPs {b['flops'] / 1e9:.2f} G ({1e3 * b['flop_time_at_peak_s']:.1f} ms at the matmul peak), "
                  f"needed with causal attention {b['first_token_flops_causal'] / 1e9:.2f} G.", "",
                  "| kernel | calls | self ms | GFLOPs | GFLOP/s |", "|---|---|---|---|---|"]
        for k in b["rows"][:10]:
            rate = f"{k['achieved_flops'] / 1e9:.1f}" if k["achieved_flops"] else "-"
            lines.append(f"| {k['kernel']} | {k['calls']:.0f} | {1e3 * k['self_s']:.2f} | {k['flops'] / 1e9:.3f} | {rate} |")
        lines.append("")
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
