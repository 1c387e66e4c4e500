#!/usr/bin/env bash
# The main job: train a width-nested ResNet with OSGD on the embedded digits dataset and show
# per-stage validation accuracy. Extra arguments go to `nestdsl train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/nestdsl compile specs/digits_width.nest
.venv/bin/nestdsl train specs/digits_width.nest --data digits --strategy osgd \
  --epochs 15 "$@"
