#!/usr/bin/env bash
# The GPU checks and GPU figures in one go, on a machine with a CUDA GPU:
#   bash benchmarks/gpu.sh OUTDIR
# In order of what matters most, so a run cut short keeps the first parts (each part's log is
# written as it goes; GPU_SH_BUDGET_S, default 540, bounds the whole: a part gets what is left):
# 1. bench_rl.py: the batched learners' policy-updates/s on the GPU (IQL x1, x8, x64, ReBRAC, BC, the
#    paper run's batches), eager and as CUDA graphs, against the GPU targets (3 rounds of 2 s
#    windows: a GPU is not shared as the CPU host is);
# 2. bench_rl.py again, the compiled program captured as the graph (compiled-cuda-graph: far fewer
#    kernels per update than the eager capture; each learner compiles first);
# 3. pytest -m gpu (tests/gpu): the pipeline's GPU code paths (bf16 training and embedding, GPU
#    checkpoints read on CPU, learners, resumption and CUDA graphs, eager and compiled, on the
#    device) against CPU results, one line of figures per check;
# 4. bench_rl.py a third time: the learners with their hidden layers' products in bf16
#    (rl.<learner>.matmul=bf16) beside fp32, both as CUDA graphs;
# 5. bench_unet.py: U-Net windows/s, fp32 and bf16, the batch sizes of the CPU figures and
#    16x larger ones (a GPU needs them to fill).
# GPU_SH_DEVICE=cpu is a dry run of the script itself on a CPU machine (the tests' figures then
# compare the CPU with itself; the budget cuts the U-Net part there).
# Needs torch with CUDA, numpy, pyyaml, tqdm and pytest (not Ray: these call the stages' code directly).
# (tests/test_benchmarks.py imports all of it, and trains the learners, with Ray, Gymnasium, MuJoCo and faiss unimportable.)
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu.sh OUTDIR}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
budget=${GPU_SH_BUDGET_S:-540}
device=${GPU_SH_DEVICE:-cuda}
status=0
left() {  # seconds of the budget left, at least 1
  local s=$((budget - SECONDS))
  echo $((s > 0 ? s : 1))
}
[ "$device" = cpu ] || nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$out/nvidia-smi.csv"
timeout "$(left)" "$python" "$here/bench_rl.py" --device "$device" --repeats 3 --seconds 2 --out "$out/rl-gpu.json" \
    2>&1 | tee "$out/rl-gpu.log" || status=1
timeout "$(left)" "$python" "$here/bench_rl.py" --device "$device" --repeats 3 --seconds 2 --modes compiled-cuda-graph \
    --out "$out/rl-gpu-compiled.json" 2>&1 | tee "$out/rl-gpu-compiled.log" || status=1
(cd "$here/.." && TGE_GPU_TESTS_REQUIRED=1 TGE_GPU_TESTS_DEVICE="$device" timeout "$(left)" "$python" -m pytest -m gpu -s -p no:cacheprovider tests/gpu) \
    2>&1 | tee "$out/gpu-check.log" || status=1
graph_mode=cuda-graph
[ "$device" = cpu ] && graph_mode=default  # the dry run: compiled instead, where bf16 pays on a CPU
timeout "$(left)" "$python" "$here/bench_rl.py" --device "$device" --repeats 3 --seconds 2 --modes "$graph_mode" \
    --matmul fp32,bf16 --out "$out/rl-gpu-bf16.json" 2>&1 | tee "$out/rl-gpu-bf16.log" || status=1
timeout "$(left)" "$python" "$here/bench_unet.py" --device "$device" --precisions fp32,bf16 --sizes reference,default \
    --variants fast,plain --train-batches 256,4096 --encode-batches 1024,16384 \
    --train-steps 20 --encode-steps 20 --out "$out/unet-gpu.json" 2>&1 | tee "$out/unet-gpu.log" || status=1
echo "gpu.sh: ${SECONDS} s of a ${budget} s budget; exit ${status}"
exit $status
