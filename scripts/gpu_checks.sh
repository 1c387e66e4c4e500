#!/usr/bin/env bash
# On a machine with a CUDA GPU: the CUDA-only tests, then every benchmark with --device cuda,
# each under a time limit, with logs in OUTDIR (default gpu-checks/).
#   bash scripts/gpu_checks.sh [OUTDIR]        (PYTHON=... to use another interpreter;
#                                               TORCH_COMPILE=1 adds the torch.compile steps;
#                                               STEPS="tests compiled_steps" runs only those)
# The interpreter needs a CUDA build of PyTorch and nestdsl with its dev extra (pytest,
# hypothesis): scripts/setup.sh installs the CPU build, so install your CUDA torch in .venv
# first, or point PYTHON at an environment that has one.
# docs/performance.md ("GPU") records what one run gave.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-checks}"
py="${PYTHON:-.venv/bin/python}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1

step() {  # NAME SECONDS COMMAND...: run, keep the whole log, show its end
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date +%T))"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "   exit $?"
  tail -n "${TAIL:-25}" "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1
"$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
  >>"$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
tests() {
  step tests 200 "$py" -m pytest -p no:cacheprovider -rs tests/test_cuda.py \
    tests/optim/test_optim_fill_grad.py -k "cuda or gpu"
}
conv_plans() { step conv_plans 70 "$py" bench/conv_plans.py --batch 128 --repeats 9; }
execution_paths() {
  step execution_paths 100 "$py" bench/execution_paths.py --batch 128 --repeats 9
}
step_costs() {
  step step_costs 150 "$py" bench/step_costs.py specs/digits_width.nest \
    specs/digits_width_depth.nest specs/resnet42_width.nest \
    specs/sparse_resnet98_alternating.nest specs/sparse_resnet98_depth.nest \
    specs/sparse_resnet98_eann.nest --batch 128 --repeats 7 \
    --strategies sgd,osgd,osgd-norm --task-graphs anytime,joint
}
graphed_steps() {  # --cuda-graphs: each step's passes replayed from a CUDA graph, beside eager
  step graphed_steps 200 "$py" bench/step_costs.py specs/digits_width.nest \
    specs/digits_width_depth.nest specs/resnet42_width.nest --batch 128 --repeats 7 \
    --strategies sgd,osgd --cuda-graphs
}
graphed_train() {  # a whole run with and without --cuda-graphs, wall time of each
  for flag in --no-cuda-graphs --cuda-graphs; do
    step "train$flag" 120 "$py" -m nestdsl.cli train specs/digits_width.nest --device cuda \
      --epochs 3 --strategy osgd "$flag"
  done
}
throughput() { step throughput 90 "$py" bench/throughput.py --workers 0,4 --repeats 3; }
host_time() {  # wall, host and GPU-busy time of joint passes against a hand-written model
  step host_time 90 "$py" bench/host_time.py specs/resnet42_width.nest \
    specs/digits_width_depth.nest --device cuda --repeats 15
}
# torch.compile (inductor takes a minute or more to compile each network)
compiled_tests() {  # --torch-compile training on the GPU follows eager training
  step compiled_tests 150 "$py" -m pytest -p no:cacheprovider -rs tests/test_cuda.py -k compiled
}
compiled_steps() {  # training steps through the compiled joint pass, as --torch-compile runs them
  step compiled_steps 220 "$py" bench/step_costs.py specs/digits_width.nest \
    specs/resnet42_width.nest --batch 128 --repeats 7 --strategies sgd,osgd \
    --task-graphs joint --compile default
}
compiled_paths() {  # compiled inference: joint pass, anytime stage by stage, first output
  step compiled_paths 300 "$py" bench/execution_paths.py specs/digits_width.nest \
    specs/resnet42_width.nest --batch 128 --repeats 9 --torch-compile
}
compiled_train() {  # a whole run with and without --torch-compile, wall time of each
  for flag in --no-torch-compile --torch-compile; do
    step "train$flag" 180 "$py" -m nestdsl.cli train specs/digits_width.nest --device cuda \
      --epochs 3 --strategy osgd "$flag"
  done
}

default_steps="tests graphed_steps conv_plans execution_paths step_costs throughput"
default_steps="$default_steps host_time graphed_train"
if [ "${TORCH_COMPILE:-0}" = 1 ]; then
  default_steps="$default_steps compiled_tests compiled_steps compiled_paths compiled_train"
fi
for name in ${STEPS:-$default_steps}; do
  if ! declare -F "$name" >/dev/null; then
    echo "unknown step \`$name\`; the steps: $default_steps (TORCH_COMPILE=1 adds compiled_*)"
    exit 2
  fi
  "$name"
done
