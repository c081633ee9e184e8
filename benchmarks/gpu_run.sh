#!/usr/bin/env bash
# Whole `tge run`s on a GPU machine: the embedded default (or the config and overrides given),
# once eager and once with resources.compile=auto, each in its own storage so that nothing is
# reused between them. Writes to OUT: the logs, each run folder without its checkpoints, every
# artifact's manifest.json (each stage's wall time; the policies' device), the GPU, the machine
# and package versions (versions.json), and a 2-second sample of the processes that held GPU
# memory (which stages ran there).
#
#   bash benchmarks/gpu_run.sh OUT [CONFIG_OR_OVERRIDE ...]
#
# TGE names the command (default `tge`; `python -m tge_ray.cli` where the project is on
# PYTHONPATH but not installed). RUN_TIMEOUT caps each run in seconds (default 600).
set -uo pipefail
OUT=${1:?usage: bash benchmarks/gpu_run.sh OUT [CONFIG_OR_OVERRIDE ...]}
shift
TGE=${TGE:-tge}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
STORAGE=$(mktemp -d)
mkdir -p "$OUT"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/nvidia-smi.csv" 2>&1 || true
python3 - >"$OUT/versions.json" 2>&1 <<'EOF'
import importlib, json, sys
sys.path.insert(0, "benchmarks")
import torch
from run import machine_info  # benchmarks/run.py: machine, torch, ray, faiss, numpy
from tge_ray.reward.knn import faiss_built_with_gpu, faiss_has_gpu
info = machine_info()
info.update({name: importlib.import_module(name).__version__ for name in ["pyarrow", "pandas", "gymnasium", "mujoco", "minari"]})
info.update(torch_cuda=torch.version.cuda, faiss_built_with_gpu=faiss_built_with_gpu(), faiss_sees_gpu=faiss_has_gpu())
print(json.dumps(info, indent=1))
EOF

sample_gpu() {  # every 2 s: GPU use, and which processes hold GPU memory (the stages that ran there)
  while sleep 2; do
    local now
    now=$(date +%s)
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null | sed "s/^/$now gpu /"
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>/dev/null |
      while IFS=', ' read -r pid mem _; do
        echo "$now app $pid $mem MiB $(ps -o args= -p "$pid" 2>/dev/null | cut -c1-80)"
      done
  done
}

run() {  # run NAME OVERRIDE...: one `tge run` in its own storage, then its outputs into OUT
  local name=$1
  shift
  local start=$SECONDS
  timeout "$RUN_TIMEOUT" $TGE run "$@" storage="$STORAGE/$name" 2>&1 | tee "$OUT/$name.log"
  echo "$name: exit ${PIPESTATUS[0]}, wall $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
  for dir in "$STORAGE/$name"/*/; do
    [ -f "$dir/results.json" ] || continue
    mkdir -p "$OUT/$name"
    cp -r "$dir" "$OUT/$name/run" && rm -rf "$OUT/$name/run/checkpoints"
  done
  for manifest in "$STORAGE/$name"/artifacts/*/manifest.json; do
    [ -f "$manifest" ] || continue
    mkdir -p "$OUT/$name/manifests"
    cp "$manifest" "$OUT/$name/manifests/$(basename "$(dirname "$manifest")").json"
  done
}

sample_gpu >"$OUT/gpu-samples.txt" &
SAMPLER=$!
run eager "$@" resources.compile=false
run compile-auto "$@" resources.compile=auto
kill "$SAMPLER" 2>/dev/null
rm -rf "$STORAGE"
cat "$OUT/summary.txt"
