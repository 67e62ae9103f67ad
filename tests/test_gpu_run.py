"""tools/gpu_run.sh on a machine without a GPU: its arguments, its plan (--dry-run) and the folder layout
it promises, which must match the file names the benchmark scripts really write."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib.bench import hardware_info, hardware_slug

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "gpu_run.sh"
STEPS = ["install", "environment", "benchmarks", "latency", "translator", "lesson05", "lesson06"]
H100 = "NVIDIA H100 80GB HBM3"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(*args: str, gpu: str | None = H100) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("GPU_RUN_GPU_NAME", None)
    if gpu is not None:
        env["GPU_RUN_GPU_NAME"] = gpu
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def planned_steps(stdout: str) -> list[str]:
    return re.findall(r"^\s+\d+\. (\S+)", stdout, flags=re.M)


def test_dry_run_lists_every_step_in_order_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu"
    p = run("--dry-run", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert planned_steps(p.stdout) == STEPS
    assert f"GPU run for {H100}" in p.stdout and f"results folder: {out}" in p.stdout
    assert not out.exists()
    for script in ("run_benchmarks.py --device cuda", "latency.py --device cuda", "translator.py --device cuda --compare",
                   "05_translator.ipynb (full mode, COURSE_DEVICE=cuda)", "06_latency_and_cost.ipynb (full mode"):
        assert script in p.stdout, script
    # the two training steps share the GPU with the timed ones unless --serial
    beside = [line.split()[1] for line in p.stdout.splitlines() if "[beside the timed steps]" in line]
    assert beside == ["translator", "lesson05"]
    serial = run("--dry-run", "--serial")
    assert planned_steps(serial.stdout) == STEPS and "[beside" not in serial.stdout


def test_the_folder_is_named_as_the_benchmark_scripts_name_their_files():
    """The default folder and every result file carry the slug course_lib.bench gives this GPU, which is
    the name run_benchmarks.py, latency.py and translator.py write under."""
    slug = hardware_slug({**hardware_info(), "gpu": H100}, "cuda")
    assert slug == "nvidia-h100-80gb-hbm3"
    p = run("--dry-run")
    assert f"results folder: {REPO / 'benchmarks' / 'results' / 'gpu' / slug}" in p.stdout
    outputs = re.findall(r"-> (.+)$", p.stdout, flags=re.M)
    assert outputs == [
        "environment.txt",
        f"benchmarks/{slug}.{{json,md}}",
        f"benchmarks/latency-{slug}.{{json,md}}",
        f"benchmarks/translator-{slug}.{{json,md}}",
        "notebooks/05_translator.ipynb, claims/05_translator.json",
        "notebooks/06_latency_and_cost.ipynb, claims/06_latency_and_cost.json",
    ]
    assert "summary.md, steps.tsv, logs/<step>.log" in p.stdout
    odd = run("--dry-run", gpu="Tesla T4 (TM)")  # the same rule for any name: lower case, one dash between words
    assert "/gpu/tesla-t4\n" in odd.stdout and odd.stdout.count("benchmarks/tesla-t4.{json,md}") == 1


def test_relative_out_is_taken_from_the_current_folder(tmp_path):
    p = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", "here/gpu"], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "GPU_RUN_GPU_NAME": H100}, timeout=60)
    assert f"results folder: {tmp_path / 'here' / 'gpu'}" in p.stdout


def test_only_skip_and_no_install_select_steps():
    only = run("--dry-run", "--only", "benchmarks", "lesson06")
    assert planned_steps(only.stdout) == ["install", "environment", "benchmarks", "lesson06"]  # the set-up always runs
    skip = run("--dry-run", "--skip", "translator", "lesson05", "--no-install")
    assert planned_steps(skip.stdout) == ["environment", "benchmarks", "latency", "lesson06"]


@pytest.mark.parametrize("args,message", [
    (["--only", "lesson07"], "unknown step 'lesson07' after --only; the steps are: " + " ".join(STEPS)),
    (["--only"], "--only needs at least one step name"),
    (["--skip", "--serial"], "--skip needs at least one step name"),
    (["--out"], "--out needs a folder"),
    (["--fast"], "unknown argument '--fast'; see tools/gpu_run.sh --help"),
])
def test_bad_arguments_get_one_sentence_and_exit_2(args, message):
    p = run(*args, "--dry-run")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("gpu_run.sh: ") and message in p.stderr and p.stderr.count("\n") == 1


def test_help_shows_the_layout_and_the_options():
    p = run("--help")
    assert p.returncode == 0
    for text in ("benchmarks/results/gpu/<gpu-slug>/", "--dry-run", "--only STEP", "--serial", "summary.md"):
        assert text in p.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the run would start")
def test_without_a_gpu_the_run_stops_before_writing_anything(tmp_path):
    out = tmp_path / "gpu"
    p = run("--out", str(out), "--no-install", gpu=None)
    assert p.returncode == 1
    assert "sees no CUDA GPU" in p.stderr and "--dry-run" in p.stderr
    assert not out.exists()
