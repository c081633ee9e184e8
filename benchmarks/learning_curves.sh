#!/usr/bin/env bash
# Learning curves of RESULTS.md: TGE-IQL, oracle-IQL and TGE-ReBRAC, 3 RL seeds, to 100k updates.
#
#   bash benchmarks/learning_curves.sh [STORAGE] [TASKS] [NS] [STEPS]
#       # default: results/curves "hopper walker2d" "30 200" 100000
#
# Each (task, N): D_mu = tge/<task>/random-v0 + N expert episodes, the demo the expert dataset's
# last episode (the suite's rows). Two `tge run`s share the diffusion model, embeddings and
# rewards: IQL with `rl.seeds=3` (TGE-IQL and oracle-IQL, three seeds each, as one batch of six;
# BC beside them), then ReBRAC (TGE only, three seeds as one batch) at batch 256, a quarter of its
# default's cost. Evaluation: 10 episodes every 10k updates (50 on walker2d, as in the suite).
# The learners run compiled (`resources.compile=true`): at these budgets the first update's
# compile is paid back many times (RESULTS.md's curves were trained eager, before this).
# A rerun reuses finished artifacts and resumes an unfinished policy batch from its checkpoint, so
# an interrupted script is finished by running it again. Afterwards:
#
#   tge report STORAGE        # each run's learning curves (report_figures/), mean ± std per method
set -euo pipefail

STORAGE=${1:-results/curves}
TASKS=${2:-hopper walker2d}
NS=${3:-30 200}
STEPS=${4:-100000}
EVERY=$((STEPS / 10))

for task in $TASKS; do
  tge data make "tge/$task/random-v0" -q
  tge data make "tge/$task/expert-v0" -q
done

for task in $TASKS; do
  episodes=10
  if [[ $task == walker2d ]]; then episodes=50; fi
  for n in $NS; do
    common=(task.offline="tge/$task/random-v0" task.expert="tge/$task/expert-v0" task.n_expert_trajs="$n"
            rl.steps="$STEPS" rl.seeds=3 evaluation.every="$EVERY" evaluation.episodes="$episodes"
            resources.compile=true storage="$STORAGE")
    tge run -q "${common[@]}" name="$task-N$n-iql"
    tge run -q "${common[@]}" name="$task-N$n-rebrac" rl.backbone=rebrac 'methods=[tge]' rl.rebrac.batch_size=256
  done
done
tge report "$STORAGE"
