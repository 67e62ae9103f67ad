#!/usr/bin/env bash
# Opt-in rehearsal for maintainers (not run by CI): the whole suite under the torch and ipywidgets
# that Google Colab ships, in a throw-away venv, from an empty HOME like a fresh machine.
#
#   bash tools/colab_rehearsal.sh                 # Colab's versions (see below)
#   COLAB_TORCH=2.11.0 COLAB_IPYWIDGETS=7.7.1 VENV=/tmp/colab-venv bash tools/colab_rehearsal.sh
#
# Colab's versions change: check them in a Colab notebook with
#   import torch, ipywidgets; print(torch.__version__, ipywidgets.__version__)
# and update the defaults here. Note: torch from PyPI is a CUDA build (several GB to download);
# the rehearsal itself runs on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

COLAB_TORCH="${COLAB_TORCH:-2.11.0}"
COLAB_IPYWIDGETS="${COLAB_IPYWIDGETS:-7.7.1}"
VENV="${VENV:-$(mktemp -d "${TMPDIR:-/tmp}/colab-rehearsal.XXXXXX")/venv}"
PYTHON="${PYTHON:-python3}"

export PIP_CACHE_DIR="${PIP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pip}"
FRESH_HOME="$(mktemp -d "${TMPDIR:-/tmp}/colab-rehearsal-home.XXXXXX")"
trap 'rm -rf "$FRESH_HOME"' EXIT
export HOME="$FRESH_HOME" XDG_CACHE_HOME="$FRESH_HOME/.cache" XDG_CONFIG_HOME="$FRESH_HOME/.config"
export MPLCONFIGDIR="$FRESH_HOME/.config/matplotlib" IPYTHONDIR="$FRESH_HOME/.ipython"
export JUPYTER_CONFIG_DIR="$FRESH_HOME/.jupyter" JUPYTER_DATA_DIR="$FRESH_HOME/.local/share/jupyter"
export JUPYTER_RUNTIME_DIR="$FRESH_HOME/.local/share/jupyter/runtime"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==$COLAB_TORCH" "ipywidgets==$COLAB_IPYWIDGETS"
# Colab keeps its own torch and ipywidgets: a constraints file stops pip from replacing them.
pins="$FRESH_HOME/colab-pins.txt"
printf 'torch==%s\nipywidgets==%s\n' "$COLAB_TORCH" "$COLAB_IPYWIDGETS" > "$pins"
"$VENV/bin/python" -m pip install -q -e ".[dev]" -c "$pins"
"$VENV/bin/python" -c "import torch, ipywidgets, sys; print('rehearsal: python', sys.version.split()[0], '| torch', torch.__version__, '| ipywidgets', ipywidgets.__version__)"
rm -rf .hypothesis
"$VENV/bin/python" -m pytest -n "${WORKERS:-2}" "$@"
