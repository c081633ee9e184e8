#!/usr/bin/env bash
# The local D4RL-style suite of RESULTS.md, with the project's own commands.
#
#   bash benchmarks/local_suite.sh [STORAGE] [SEEDS] [LANES] [TASKS]
#                                  # default: results/suite "0" 2 "hopper halfcheetah walker2d"
#
# For each task in TASKS, N in {200, 30, 0} expert trajectories mixed
# into tge/<task>/random-v0, one demo, and each seed: `tge run` with IQL as the TGE backbone
# (TGE-IQL, BC on all data, oracle-reward IQL), then `tge run` with ReBRAC and with TGE-filtered
# BC (TGE only; they reuse the diffusion model, embeddings and rewards). Then two ablations on hopper and on
# walker2d (those in TASKS), N = 30, with TGE-IQL and TGE-filtered BC: H = 1 against the default
# H = 32, and the gaussian against the default log kernel.
# LANES runs go at once (each a local Ray with torch_threads=1). Afterwards:
#
#   tge report STORAGE        # report.md / report.html: mean ± std over seeds per task and method
#
# Budget per run (the embedded default's, with fewer RL updates so the suite fits an afternoon
# on 2 cores): U-Net dim 16, 600 diffusion steps; 5000 RL updates; ReBRAC at batch 256 (its
# default 1024 is 4x the cost); 10 evaluation episodes every 2500 updates, 50 on walker2d,
# whose expert's own return varies by 31% from episode to episode (docs/notes/suite-runs.md).
set -euo pipefail

STORAGE=${1:-results/suite}
SEEDS=${2:-0}
LANES=${3:-2}
TASKS=${4:-hopper halfcheetah walker2d}
BUDGET=(rl.steps=5000 evaluation.every=2500 evaluation.episodes=10 rl.rebrac.batch_size=256)

for task in $TASKS; do  # datasets first, once (not inside parallel runs)
  tge data make "tge/$task/random-v0" -q
  tge data make "tge/$task/expert-v0" -q
done

cell() {  # task N seed: the IQL run (tge, bc, oracle), then the ReBRAC and filtered-BC runs (tge)
  local task=$1 n=$2 seed=$3
  local data=(task.offline="tge/$task/random-v0" task.expert="tge/$task/expert-v0" task.n_expert_trajs="$n")
  local budget=("${BUDGET[@]}")
  if [[ $task == walker2d ]]; then budget+=(evaluation.episodes=50); fi  # the later value wins
  tge run -q "${data[@]}" "${budget[@]}" seed="$seed" storage="$STORAGE" name="$task-N$n-iql-s$seed"
  for backbone in rebrac fbc; do
    tge run -q "${data[@]}" "${budget[@]}" seed="$seed" storage="$STORAGE" name="$task-N$n-$backbone-s$seed" \
      rl.backbone=$backbone 'methods=[tge]'
  done
}
ablation() {  # name seed override...: N=30, TGE-IQL and TGE-filtered BC (hopper unless the overrides name a task)
  local name=$1 seed=$2; shift 2
  for backbone in iql fbc; do
    tge run -q task.n_expert_trajs=30 "${BUDGET[@]}" seed="$seed" storage="$STORAGE" name="$name-$backbone-s$seed" \
      rl.backbone=$backbone 'methods=[tge]' "$@"
  done
}
export -f cell ablation
export STORAGE
export BUDGET_STR="${BUDGET[*]}"

jobs=()
for seed in $SEEDS; do
  for task in $TASKS; do
    for n in 200 30 0; do jobs+=("cell $task $n $seed"); done
  done
  if [[ " $TASKS " == *" hopper "* ]]; then
    jobs+=("ablation hopper-N30-H1 $seed windows.horizon=1" "ablation hopper-N30-gaussian $seed reward.kernel=gaussian")
  fi
  if [[ " $TASKS " == *" walker2d "* ]]; then
    walker="task.offline=tge/walker2d/random-v0 task.expert=tge/walker2d/expert-v0 evaluation.episodes=50"
    jobs+=("ablation walker2d-N30-H1 $seed $walker windows.horizon=1"
           "ablation walker2d-N30-gaussian $seed $walker reward.kernel=gaussian")
  fi
done
# bash functions do not see arrays through export: rebuild BUDGET in each job from the string
printf '%s\n' "${jobs[@]}" | xargs -P "$LANES" -I{} bash -c 'BUDGET=($BUDGET_STR); {}'
tge report "$STORAGE"
