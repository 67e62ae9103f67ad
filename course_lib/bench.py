"""Tiny timing helpers for the notebooks and ``benchmarks/run_benchmarks.py``.

Timings on a laptop (or a shared machine) are noisy: report the **median** of several runs and
the interquartile range, warm up first, and compare two functions by *interleaving* their runs
(a background job then slows both alike instead of only one).
"""
from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch


def _sync(sync: bool) -> None:
    # GPU kernels run asynchronously: without this the clock stops before the work is done.
    if not sync:
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        torch.mps.synchronize()


def _summary(runs: list[float]) -> dict[str, Any]:
    if len(runs) >= 2:
        q1, _, q3 = statistics.quantiles(runs, n=4, method="inclusive")
    else:
        q1 = q3 = runs[0]
    return {"median_s": statistics.median(runs), "iqr_s": q3 - q1, "runs": runs}


def _time_once(fn: Callable[[], Any], sync: bool) -> float:
    _sync(sync)
    t0 = time.perf_counter()
    fn()
    _sync(sync)
    return time.perf_counter() - t0


def time_fn(fn: Callable[[], Any], *, warmup: int = 2, repeat: int = 10, sync: bool = True) -> dict[str, Any]:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeat`` times timed.

    Returns ``{"median_s", "iqr_s", "runs"}`` (seconds; ``runs`` lists every timed call).
    ``sync=True`` waits for the GPU before and after each call, so GPU time is measured too.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1; got {repeat}.")
    for _ in range(warmup):
        fn()
    return _summary([_time_once(fn, sync) for _ in range(repeat)])


def compare(
    a_fn: Callable[[], Any], b_fn: Callable[[], Any], *, warmup: int = 2, repeat: int = 10, sync: bool = True
) -> dict[str, Any]:
    """Time two functions with their runs interleaved (a, b, b, a, ...): :func:`compare_many`
    with two functions, reported by :func:`paired`.

    Returns ``{"a": time_fn-style dict, "b": ..., "ratio": median_a / median_b,
    "paired_ratio": median over i of a_i / b_i}``; a ratio below 1 means ``a`` is faster.
    The order alternates so that neither function always runs right after the other (caches,
    CPU frequency and background load then affect both alike). ``paired_ratio`` compares each
    run with its neighbour, so it is the more robust of the two on a busy machine.
    """
    t = compare_many({"a": a_fn, "b": b_fn}, warmup=warmup, repeat=repeat, sync=sync)
    return paired(t["a"], t["b"])


def compare_many(fns: dict[str, Callable[[], Any]], *, warmup: int = 2, repeat: int = 10, sync: bool = True) -> dict[str, dict[str, Any]]:
    """Time several functions round-robin: each round calls every function once, and the order
    rotates from round to round (reversed every other cycle), so background load, caches and CPU
    frequency fall on all of them alike. Returns ``{name: time_fn-style dict}``; :func:`paired`
    turns two of them into a ratio. Round ``i`` of every function ran at about the same moment."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1; got {repeat}.")
    names = list(fns)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    runs: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeat):
        shift = i % len(names)
        order = names[shift:] + names[:shift]
        for name in order if (i // len(names)) % 2 == 0 else order[::-1]:
            runs[name].append(_time_once(fns[name], sync))
    return {name: _summary(r) for name, r in runs.items()}


def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two timings from :func:`compare_many` as :func:`compare` reports them: ``ratio`` of the
    medians and ``paired_ratio``, the median over rounds of ``a_i / b_i``."""
    ratios = [x / y for x, y in zip(a["runs"], b["runs"], strict=True)]
    return {"a": a, "b": b, "ratio": a["median_s"] / b["median_s"], "paired_ratio": statistics.median(ratios)}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            import subprocess

            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU model and cores, torch threads, GPU (if any),
    torch and Python versions, operating system."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "os": platform.platform(terse=True),
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def hardware_slug(info: dict[str, Any], device: torch.device | str, quick: bool = False) -> str:
    """A file-name-safe name for the machine: the GPU on CUDA, else the CPU model and thread count
    (``amd-epyc-1threads``, ``tesla-t4``); ``-quick`` for smoke runs."""
    cuda = torch.device(device).type == "cuda"
    name = info["gpu"] if cuda and info.get("gpu") else f"{info['cpu']} {info['torch_threads']}threads"
    name = re.sub(r"\((r|tm|c)\)|\bcpu\b|@.*?ghz", " ", name.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "unknown"
    return slug + ("-quick" if quick else "")


def report_header(title: str, report: dict[str, Any]) -> list[str]:
    """The Markdown lines that open every results table: title, hardware, device, date, command."""
    hw = report["hardware"]
    return [
        f"# {title}: {report['slug']}",
        "",
        f"- hardware: {hw['cpu']} ({hw['cpu_cores_usable']} usable cores, {hw['torch_threads']} torch threads)"
        + (f", GPU {hw['gpu']}" if hw.get("gpu") else ""),
        f"- device: {report['device']}; torch {hw['torch']}; Python {hw['python']}; {hw['os']}",
        f"- date: {report['date']}",
        f"- command: `{report['command']}`",
    ]


def save_report(report: dict[str, Any], out: str | os.PathLike, markdown: str) -> Path:
    """Write ``<out>/<report['slug']>.json`` (every number) and ``.md`` (the table), print the
    table, and return the JSON path: the one way every benchmark script saves its results."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{report['slug']}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".md").write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"wrote {path} and .md")
    return path


#: Where a saved report can be: the repository's folder (a checkout, an editable install), then the
#: copy that a regular install of course_lib carries as package data (pyproject.toml maps it; Colab).
RESULTS_FOLDERS = (Path(__file__).resolve().parents[1] / "benchmarks" / "results",
                   Path(__file__).resolve().parent / "benchmark_results")


def saved_reports(folders: tuple[Path, ...] = RESULTS_FOLDERS) -> dict[str, dict[str, Any]]:
    """Every benchmark report saved by :func:`save_report`, ``{path below the folder, no suffix: report}``
    in name order (``gpu/<hardware>/...`` for GPU runs),
    from the first of ``folders`` that holds any. With none, prints one line that says what is
    missing and why, and returns ``{}``, so a lesson's results section degrades to that line."""
    for folder in folders:
        files = sorted(Path(folder).rglob("*.json"))  # GPU runs sit in gpu/<hardware>/ (tools/gpu_run.sh)
        if files:
            return {p.relative_to(folder).with_suffix("").as_posix(): json.loads(p.read_text(encoding="utf-8")) for p in files}
    print("No saved benchmark results in this copy of the course: they live in the repository's "
          "benchmarks/results/, which this install of course_lib does not carry (reinstall it from the "
          "repository with pip, or clone it and run `python benchmarks/run_benchmarks.py`).")
    return {}


__all__ = ["time_fn", "compare", "hardware_info", "hardware_slug", "report_header", "save_report", "saved_reports"]
