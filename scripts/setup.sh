#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine: Graphviz's `dot`, g++, a virtual environment, nestdsl.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: Graphviz's dot (drawing) and g++ (inductor's C++ for --torch-compile on a CPU)
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: missing ${missing[*]} (sudo apt-get install ${missing[*]}): drawing to svg/png/pdf needs dot, --torch-compile on a CPU needs g++" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import nestdsl, torch, pytest, hypothesis, torchjd, PIL, tensorboard, onnx, onnxruntime, onnxscript" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q --upgrade pip
  # The CPU build of PyTorch: an unpinned torch would pull a multi-GB CUDA build. GPU users
  # install their own torch first; the package itself only asks for torch>=2.1,<3.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[dev]"
fi
