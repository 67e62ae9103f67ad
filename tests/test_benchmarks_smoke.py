"""Smoke test for benchmarks/run_benchmarks.py and course_lib.bench: the script runs end to end
on tiny sizes and writes the files the README promises. No timing assertions: speed is measured
by the benchmark itself, not tested (timings on shared CI machines are noise)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from course_lib.bench import compare, hardware_info, time_fn

REPO = Path(__file__).resolve().parents[1]

EXPECTED = {
    "mha_no_mask": ("ours_ms", "theirs_ms", "ratio"),
    "mha_causal": ("ours_ms", "theirs_ms", "ratio"),
    "seq2seq_train": ("ours_tokens_per_s", "theirs_tokens_per_s", "ratio"),
    "decoder_generation": ("cached_s", "uncached_s", "speedup"),
    "encdec_generation": ("cached_s", "uncached_s", "speedup"),
    "decode_vs_minimal": ("ours_ms_per_token", "minimal_ms_per_token", "paired_ratio"),
    "decode_vs_minimal_same_mode": ("ours_ms_per_token", "minimal_ms_per_token", "paired_ratio"),
    "decode_general_path": ("ours_ms_per_token", "minimal_ms_per_token", "paired_ratio"),
    "prefill_1024x1": ("ours_ms", "minimal_ms", "paired_ratio"),
    "prefill_256x8": ("ours_ms", "minimal_ms", "paired_ratio"),
    "encdec_decode_vs_minimal": ("ours_ms_per_token", "minimal_ms_per_token", "paired_ratio"),
}


def test_run_benchmarks_quick(tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks" / "run_benchmarks.py"), "--quick", "--threads", "1", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jsons, mds = list(tmp_path.glob("*.json")), list(tmp_path.glob("*.md"))
    assert len(jsons) == 1 and len(mds) == 1 and jsons[0].stem == mds[0].stem
    report = json.loads(jsons[0].read_text())
    for key in ("slug", "hardware", "device", "date", "command", "results"):
        assert key in report
    assert report["hardware"]["torch"] and report["quick"] is True
    for name, keys in EXPECTED.items():
        result = report["results"][name]
        for k in keys:
            assert result[k] > 0, (name, k)
        assert "pass" in result and "target" in result
    assert report["results"]["decoder_generation"]["same_tokens"] is True
    assert report["results"]["decode_vs_minimal"]["same_tokens"] is True  # the floor computes the same function
    assert report["results"]["encdec_decode_vs_minimal"]["same_tokens"] is True  # so does the minimal encoder-decoder
    for name in ("prefill_1024x1", "prefill_256x8"):
        assert report["results"][name]["max_abs_diff"] < 1e-4  # the same logits as the minimal GPT's prefill
    for name, result in report["results"].items():  # every ratio comes with the middle half of its runs' ratios
        q1, q3 = result.get("paired_ratio_quartiles") or result["paired_speedup_quartiles"]
        assert q1 <= q3, name
    work = {k: report["results"][k]["python_work_per_token"]["ours"] for k in ("decode_vs_minimal_same_mode", "decode_general_path")}
    assert work["decode_vs_minimal_same_mode"]["module_calls"] < work["decode_general_path"]["module_calls"]  # the fast path ran
    assert report["results"]["mha_no_mask"]["max_abs_diff"] < 1e-4
    md = mds[0].read_text()
    assert "torch" in md and "| benchmark |" in md and "--quick" in md


def test_timing_helpers():
    r = time_fn(lambda: sum(range(1000)), warmup=1, repeat=5)
    assert set(r) == {"median_s", "iqr_s", "runs"} and len(r["runs"]) == 5 and r["median_s"] > 0
    c = compare(lambda: sum(range(100)), lambda: sum(range(100)), warmup=1, repeat=4)
    assert c["ratio"] > 0 and c["paired_ratio"] > 0 and len(c["a"]["runs"]) == len(c["b"]["runs"]) == 4
    info = hardware_info()
    for key in ("cpu", "cpu_cores", "torch", "torch_threads", "python", "gpu"):
        assert key in info


def test_translator_benchmark_quick(tmp_path):
    """benchmarks/translator.py end to end on a tiny schedule: it writes one report whose numbers
    are in range and whose target verdicts follow from them."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "translator.py"), "--quick", "--threads", "1", "--no-progress",
           "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = tmp_path.glob("*.json")
    report = json.loads(path.read_text())
    assert path.with_suffix(".md").is_file() and report["quick"] is True
    assert 0 <= report["baseline"]["bleu"] <= 100
    for row in report["families"]:
        assert row["params_non_embedding"] > 0 and row["train_flops_per_seq_counted"] > 0
    verdicts = report["targets"]
    assert verdicts["non-embedding params <="][2] is True  # the lesson's model is far below 5M
    assert verdicts["test BLEU (greedy) >="][2] is False  # 30 steps cannot translate: a verdict that can fail


def test_latency_benchmark_quick(tmp_path):
    """benchmarks/latency.py end to end on tiny sizes: one report, every prediction has a predicted
    and a measured value, and the FLOP and byte predictions (exact by construction) hold."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "latency.py"), "--quick", "--threads", "1", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = tmp_path.glob("latency-*.json")
    report = json.loads(path.read_text())
    assert path.with_suffix(".md").is_file() and report["quick"] is True
    preds = report["results"]["predictions"]
    assert len(preds) > 10
    for p in preds:
        assert p["predicted"] is not None and p["measured"] is not None, p["name"]
    by_name = {p["name"]: p for p in preds}
    assert by_name["1000+1000: FLOPs ED / DO"]["within_tolerance"] is True
    assert by_name["1000+1000: KV bytes ED / DO"]["within_tolerance"] is True
    assert all(p["within_tolerance"] for p in preds if p["name"].startswith("KV bytes"))
    assert report["results"]["machine"]["peak_flops"] > 0 and report["results"]["machine"]["bandwidth"] > 0
    for family, b in report["results"]["ttft_kernels"].items():  # the breakdown names real kernels with the FLOPs counted for them
        assert any(r["flops"] > 0 and "attention" in r["kernel"] for r in b["rows"]), family
        assert sum(r["flops"] for r in b["rows"]) == b["flops"] > 0 and b["total_self_s"] > 0


def test_python_work_counts_module_calls_and_getattr_reads():
    """The floor benchmark's accounting counts what it says, per token, and leaves nn.Module as it was,
    even when the run raises. A Sequential(Linear, ReLU, Linear) called once per token makes 4 module
    calls (the Sequential and its three layers) and reads 4 parameters through __getattr__ (each
    Linear's weight and bias); the Sequential walks its layers without __getattr__."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from run_benchmarks import python_work
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    net, x = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)), torch.randn(1, 3)

    def run(n: int) -> None:
        for _ in range(n):
            net(x)

    assert python_work(run, 2, 7) == {"module_calls": 4.0, "getattr": 4.0}
    original = nn.Module.__getattr__

    def broken(n: int) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        python_work(broken, 1, 2)
    assert nn.Module.__getattr__ is original
    assert not torch.nn.modules.module._global_forward_pre_hooks


def test_compare_many_runs_every_function_once_per_round_in_rotating_order():
    from course_lib.bench import compare_many, paired

    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    out = compare_many(fns, warmup=1, repeat=6)
    assert calls[:3] == ["a", "b", "c"]  # the warmup round
    rounds = [calls[3 + 3 * i: 6 + 3 * i] for i in range(6)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)  # every function once per round
    assert rounds[:3] == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]  # the order rotates...
    assert rounds[3:] == [["c", "b", "a"], ["a", "c", "b"], ["b", "a", "c"]]  # ... and is reversed on the next cycle
    assert set(out) == {"a", "b", "c"} and all(len(v["runs"]) == 6 for v in out.values())
    with pytest.raises(ValueError, match="repeat"):
        compare_many(fns, repeat=0)
    a = {"median_s": 2.0, "runs": [1.0, 2.0, 9.0]}
    b = {"median_s": 4.0, "runs": [2.0, 1.0, 3.0]}
    assert paired(a, b)["paired_ratio"] == 2.0 and paired(a, b)["ratio"] == 0.5  # median of 0.5, 2, 3; 2 / 4
