#!/usr/bin/env bash
# The course's GPU run: on one CUDA machine, install what is missing, then run the benchmarks
# (benchmarks/run_benchmarks.py, benchmarks/latency.py, benchmarks/translator.py) and lessons 05 and
# 06 in full mode on the GPU, and write every result under one folder:
#
#     benchmarks/results/gpu/<gpu-slug>/
#         summary.md  steps.tsv  environment.txt      what ran, how long, exit status; the machine
#         benchmarks/<slug>.{json,md}                   run_benchmarks.py
#         benchmarks/latency-<slug>.{json,md}           latency.py
#         benchmarks/translator-<slug>.{json,md}        translator.py --compare
#         notebooks/05_translator.ipynb, 06_latency_and_cost.ipynb   the executed lessons
#         claims/05_translator.json, 06_latency_and_cost.json         their verdicts (course_lib.lessons.ledger)
#         logs/<step>.log                               each step's output
#
# Usage:
#     tools/gpu_run.sh                 # everything; about 8 minutes on one H100
#     tools/gpu_run.sh --dry-run       # list the steps and the files each writes; run nothing
#     tools/gpu_run.sh --only benchmarks latency --serial --out /tmp/gpu
#
# Options:
#     --dry-run          print the plan and exit
#     --out DIR          results folder (default: benchmarks/results/gpu/<gpu-slug>)
#     --only STEP...     run only these steps (install and environment always run)
#     --skip STEP...     leave these steps out
#     --serial           run every step alone (default: translator and lesson05, which train and are not
#                        timed against anything, run on the same GPU beside the timed steps, to fit 8 minutes)
#     --no-install       never call pip
#     --python PY        the Python to use (default: python3, or $PYTHON)
#
# Lessons run in a scratch copy of the repository (their checkpoints, runs/ and claim files land
# there), with COURSE_DEVICE=cuda and COURSE_FAST=0; training uses autocast (bf16 on Ampere and
# newer, fp16 before: course_lib.runtime.pick_dtype). Nothing in this checkout changes except the
# results folder. Exit status: 0 when every step succeeded, 1 when one failed, 2 for a usage error.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STEPS=(install environment benchmarks latency translator lesson05 lesson06)
BACKGROUND=(translator lesson05)  # train on the GPU, nothing they report is a timing against a partner
PY="${PYTHON:-python3}"
DRY=0 SERIAL=0 INSTALL=1 OUT=""
ONLY=() SKIP=() ORIG_ARGS=("$@")

usage_error() { echo "gpu_run.sh: $1" >&2; exit 2; }
is_step() { local s; for s in "${STEPS[@]}"; do [[ "$s" == "$1" ]] && return 0; done; return 1; }

while (($#)); do
    case "$1" in
        --dry-run) DRY=1 ;;
        --serial) SERIAL=1 ;;
        --no-install) INSTALL=0 ;;
        --out) [[ $# -ge 2 && "$2" != --* ]] || usage_error "--out needs a folder, e.g. --out /tmp/gpu."; OUT="$2"; shift ;;
        --python) [[ $# -ge 2 && "$2" != --* ]] || usage_error "--python needs an interpreter, e.g. --python python3.11."; PY="$2"; shift ;;
        --only | --skip)
            flag="$1"
            [[ $# -ge 2 && "$2" != --* ]] || usage_error "$flag needs at least one step name: ${STEPS[*]}."
            while [[ $# -ge 2 && "$2" != --* ]]; do
                is_step "$2" || usage_error "unknown step '$2' after $flag; the steps are: ${STEPS[*]}."
                if [[ "$flag" == --only ]]; then ONLY+=("$2"); else SKIP+=("$2"); fi
                shift
            done ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) usage_error "unknown argument '$1'; see tools/gpu_run.sh --help." ;;
    esac
    shift
done

selected() {  # is step $1 part of this run?
    local s
    [[ "$1" == install && $INSTALL == 0 ]] && return 1
    for s in "${SKIP[@]}"; do [[ "$s" == "$1" ]] && return 1; done
    [[ "$1" == install || "$1" == environment || ${#ONLY[@]} == 0 ]] && return 0
    for s in "${ONLY[@]}"; do [[ "$s" == "$1" ]] && return 0; done
    return 1
}
in_background() {
    local s
    ((SERIAL)) && return 1
    for s in "${BACKGROUND[@]}"; do [[ "$s" == "$1" ]] && return 0; done
    return 1
}

# The GPU's name, as course_lib.bench.hardware_slug turns it into a folder name ("NVIDIA H100 80GB HBM3" ->
# nvidia-h100-80gb-hbm3). GPU_RUN_GPU_NAME overrides the query (tests, or naming a run by hand).
gpu_name() {
    if [[ -n "${GPU_RUN_GPU_NAME:-}" ]]; then echo "$GPU_RUN_GPU_NAME"
    elif command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1
    fi
}
slugify() { tr '[:upper:]' '[:lower:]' | sed -E 's/\((r|tm|c)\)/ /g; s/[^a-z0-9]+/-/g; s/^-+//; s/-+$//'; }
GPU_NAME="$(gpu_name)"
SLUG="$(printf '%s' "${GPU_NAME:-no-gpu-found}" | slugify)"
OUT="${OUT:-$REPO/benchmarks/results/gpu/$SLUG}"
[[ "$OUT" == /* ]] || OUT="$PWD/$OUT"

# One line per step: what it runs (in the scratch copy $WORK, results to $OUT) and what it writes.
describe() {
    case "$1" in
        install) echo "$PY -m pip install -e \"$REPO[dev]\"   (only if torch, nbclient, ipykernel or matplotlib is missing)|-" ;;
        environment) echo "nvidia-smi; $PY: torch, CUDA, GPU, autocast dtype|environment.txt" ;;
        benchmarks) echo "$PY benchmarks/run_benchmarks.py --device cuda --out \$OUT/benchmarks|benchmarks/$SLUG.{json,md}" ;;
        latency) echo "$PY benchmarks/latency.py --device cuda --repeat 5 --out \$OUT/benchmarks|benchmarks/latency-$SLUG.{json,md}" ;;
        translator) echo "$PY benchmarks/translator.py --device cuda --compare --no-progress --out \$OUT/benchmarks|benchmarks/translator-$SLUG.{json,md}" ;;
        lesson05) echo "execute notebooks/05_translator.ipynb (full mode, COURSE_DEVICE=cuda)|notebooks/05_translator.ipynb, claims/05_translator.json" ;;
        lesson06) echo "execute notebooks/06_latency_and_cost.ipynb (full mode, COURSE_DEVICE=cuda; this run's latency JSON beside it)|notebooks/06_latency_and_cost.ipynb, claims/06_latency_and_cost.json" ;;
    esac
}

plan() {
    local n=0 s line
    echo "GPU run for ${GPU_NAME:-<no GPU found: nvidia-smi is missing or lists none>}"
    echo "results folder: $OUT"
    echo "steps:"
    for s in "${STEPS[@]}"; do
        selected "$s" || continue
        n=$((n + 1))
        line="$(describe "$s")"
        printf '  %d. %-11s %s%s\n' "$n" "$s" "${line%%|*}" "$(in_background "$s" && echo '   [beside the timed steps]')"
        [[ "${line##*|}" != "-" ]] && printf '     %-11s -> %s\n' "" "${line##*|}"
    done
    echo "also: summary.md, steps.tsv, logs/<step>.log"
}

if ((DRY)); then
    plan
    exit 0
fi

# --------------------------------------------------------------------------- the run

no_cuda() {
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null && return 1
    echo "gpu_run.sh: PyTorch ($PY) sees no CUDA GPU; run this on a CUDA machine with a CUDA build of torch (--dry-run shows the plan anywhere)." >&2
}
MISSING=0
"$PY" -c "import torch, nbclient, ipykernel, matplotlib, nbformat" 2>/dev/null || MISSING=1
if ((MISSING)) && ! selected install; then
    echo "gpu_run.sh: $PY lacks torch, nbclient, ipykernel, matplotlib or nbformat; drop --no-install or pass --python with one that has them." >&2
    exit 1
fi
((MISSING)) || ! no_cuda || exit 1  # before anything is written

mkdir -p "$OUT/logs" "$OUT/benchmarks" "$OUT/notebooks" "$OUT/claims" || usage_error "cannot create the results folder $OUT; pass --out with a writable folder."
plan | tee "$OUT/plan.txt"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-run.XXXXXX")/course"
trap 'rm -rf "$(dirname "$WORK")"' EXIT
# the scratch copy: the checkout's files (edits included), without its runs/, virtual environments and results
mkdir -p "$WORK"
tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./runs --exclude=./benchmarks/results/gpu -cf - . | tar -C "$WORK" -xf -
printf 'step\tstatus\tseconds\n' >"$OUT/steps.tsv"
T0=$(date +%s)

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$OUT/steps.tsv"; echo "[$(($(date +%s) - T0)) s] $1: $2 ($3 s)"; }

# run_step NAME COMMAND...: the command in $WORK with the lessons' environment, logged and timed
run_step() {
    local name="$1" start status
    shift
    start=$(date +%s)
    (cd "$WORK" && export PYTHONPATH="$WORK" COURSE_DEVICE=cuda COURSE_FAST=0 COURSE_HEADLESS=1 PYTHONHASHSEED=0 && "$@") \
        >"$OUT/logs/$name.log" 2>&1
    status=$?
    record "$name" "$([[ $status == 0 ]] && echo ok || echo "failed (exit $status, see logs/$name.log)")" $(($(date +%s) - start))
    return $status
}

execute_notebook() {  # execute_notebook LESSON_STEM: run it in its own folder, save the executed copy in $OUT
    "$PY" - "$WORK/notebooks/$1.ipynb" "$OUT/notebooks/$1.ipynb" <<'EOF'
import os, sys
import nbformat
from nbclient import NotebookClient
src, dst = sys.argv[1:3]
nb = nbformat.read(src, as_version=4)
try:
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(src)}}).execute()
finally:
    nbformat.write(nb, dst)  # saved even when a cell fails: the traceback is in the notebook
EOF
    local status=$?
    cp "$WORK/results/claims/$1.json" "$OUT/claims/" 2>/dev/null
    return $status
}

# install: only what is missing (the machine may have no network), so a CUDA torch already there stays
if selected install; then
    if ((MISSING)); then run_step install "$PY" -m pip install -e "$REPO[dev]" || exit 1; else record install "ok (nothing missing)" 0; fi
fi
! no_cuda || exit 1


if selected environment; then
    { nvidia-smi 2>&1
      "$PY" -c "import torch, platform; from course_lib.runtime import pick_dtype
print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| GPU', torch.cuda.get_device_name(0), '| Python', platform.python_version())
print('autocast dtype for training:', pick_dtype('cuda'))"
      "$PY" -m pip freeze 2>/dev/null | grep -iE '^(torch|transformers|nbclient|numpy)=' ; } >"$OUT/environment.txt" 2>&1
    record environment ok 0
fi

FAILED=0
PIDS=()
for step in translator lesson05; do  # the untimed GPU work starts first, beside the timed steps
    selected "$step" && in_background "$step" || continue
    case $step in
        translator) run_step translator "$PY" benchmarks/translator.py --device cuda --compare --no-progress --out "$OUT/benchmarks" & ;;
        lesson05) run_step lesson05 execute_notebook 05_translator & ;;
    esac
    PIDS+=($!)
done
selected benchmarks && { run_step benchmarks "$PY" benchmarks/run_benchmarks.py --device cuda --out "$OUT/benchmarks" || FAILED=1; }
selected latency && { run_step latency "$PY" benchmarks/latency.py --device cuda --repeat 5 --out "$OUT/benchmarks" || FAILED=1; }
if selected translator && ! in_background translator; then
    run_step translator "$PY" benchmarks/translator.py --device cuda --compare --no-progress --out "$OUT/benchmarks" || FAILED=1
fi
if selected lesson05 && ! in_background lesson05; then
    run_step lesson05 execute_notebook 05_translator || FAILED=1
fi
if selected lesson06; then
    cp "$OUT"/benchmarks/latency-*.json "$WORK/benchmarks/results/" 2>/dev/null  # section 4 draws this GPU's roofline
    run_step lesson06 execute_notebook 06_latency_and_cost || FAILED=1
fi
for pid in "${PIDS[@]}"; do wait "$pid" || FAILED=1; done

{ echo "# GPU run: $SLUG"
  echo
  echo "- GPU: ${GPU_NAME}; $(date -u '+%Y-%m-%d %H:%M UTC'); command: \`tools/gpu_run.sh$(printf ' %q' "${ORIG_ARGS[@]}")\`"
  echo "- total: $(($(date +%s) - T0)) s; $( ((SERIAL)) && echo 'every step alone' || echo 'translator and lesson05 beside the timed steps')"
  echo
  echo "| step | status | seconds |"
  echo "|---|---|---|"
  tail -n +2 "$OUT/steps.tsv" | awk -F'\t' '{ printf "| %s | %s | %s |\n", $1, $2, $3 }'
} >"$OUT/summary.md"
cat "$OUT/summary.md"
exit $FAILED
