#!/usr/bin/env bash
# The local D4RL-style suite of RESULTS.md, with the project's own commands.
#
#   bash benchmarks/local_suite.sh [STORAGE] [SEEDS] [LANES] [TASKS]
#       # default: results/suite "0" 2 "hopper halfcheetah walker2d ant pointmaze-medium"
#
# Rows (N expert trajectories mixed into the offline data, one demo, each seed):
#   hopper, halfcheetah, walker2d: tge/<task>/random-v0 + N in {200, 30, 0}, and
#                                  tge/<task>/medium-v0 + N in {30, 0} (the medium policy's data:
#                                  meaningful, sub-expert behaviour)
#   ant:                           tge/ant/random-v0 + N in {200, 30, 0}; it needs the ant expert
#                                  (`tge data train-expert ant`): without it the script says so and
#                                  runs the other tasks
#   pointmaze-medium:              tge/pointmaze-medium/random-v0 + N in {30, 0} (navigation)
# Each row: `tge run` with IQL as the TGE backbone (TGE-IQL, BC on all data, oracle-reward IQL),
# then `tge run` with ReBRAC and with TGE-filtered BC (TGE only; they reuse the diffusion model,
# embeddings and rewards). Then two ablations on hopper and on walker2d (those in TASKS), N = 30,
# with TGE-IQL and TGE-filtered BC: H = 1 against the default H = 32, and the gaussian against the
# default log kernel.
# LANES runs go at once, each a local Ray whose stages get nproc / LANES torch threads (at least 1):
# two runs that each take both cores' threads time-slice them. On 2 cores, hopper medium N = 30 at
# 10,000 updates, the script's wall over its cells: 742 s a cell at 2 lanes x 2 threads (before this
# split), 372 s at one lane x 2, 347 s at 2 lanes x 1 (docs/notes/suite-budget.md). QUALITIES (env) keeps only the rows
# of those offline qualities, e.g. QUALITIES=medium; NS (env) only the rows of those N, e.g.
# NS="30 200" (unset: every N the TASKS have); the ablations run only with random rows and
# N = 30, ABLATIONS=no (env) leaves them out and ABLATIONS=only runs nothing else (to add them to a
# store that has the cells). DRY_RUN=1 (env) prints the runs' queue, one cell or ablation a line
# (and on stderr the overrides every run adds), and runs nothing.
# Afterwards:
#
#   tge report STORAGE        # report.md / report.html: mean ± std over seeds per task and method
#
# Budget per run (the embedded default's, with fewer RL updates so the suite fits an afternoon
# on 2 cores): U-Net dim 16, 600 diffusion steps; STEPS (env, default 5000, RESULTS.md's table)
# RL updates, evaluated at half and at the end; ReBRAC at batch 256 (its default 1024 is 4x the
# cost); 10 evaluation episodes, 50 on walker2d, whose expert's own return varies by 31% from
# episode to episode (docs/notes/suite-runs.md). From STEPS=10000 on the learners run compiled
# (`resources.compile=cpu`), 1.2 to 3.1x as many updates per second as eager on 2 cores
# (bench_rl), and Inductor's cache compiles each learner shape once for the whole suite: a cell
# at 10,000 costs about 1.1x one at 5000 (docs/notes/suite-budget.md).
set -euo pipefail

STORAGE=${1:-results/suite}
SEEDS=${2:-0}
LANES=${3:-2}
ALL_TASKS="hopper halfcheetah walker2d ant pointmaze-medium"  # every task rows() knows
TASKS=${4:-$ALL_TASKS}
STEPS=${STEPS:-5000}
if ! [[ $STEPS =~ ^[1-9][0-9]*$ ]] || (( STEPS < 2 )); then
  echo "local_suite: STEPS=$STEPS is not a number of RL updates >= 2 (e.g. STEPS=10000)" >&2
  exit 2
fi
if ! [[ $LANES =~ ^[1-9][0-9]*$ ]]; then
  echo "local_suite: LANES=$LANES is not a number of runs at once >= 1 (e.g. 2, the default)" >&2
  exit 2
fi
CORES=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)  # nproc heeds CPU affinity; macOS has only getconf
THREADS=$(( CORES / LANES )); if (( THREADS < 1 )); then THREADS=1; fi
BUDGET=(rl.steps="$STEPS" evaluation.every=$((STEPS / 2)) evaluation.episodes=10 rl.rebrac.batch_size=256
        resources.torch_threads="$THREADS")
# EXTRA: overrides added to every run, e.g. the defaults RESULTS.md's table was made with:
#   EXTRA="reward.scale=minmax rl.iql.tau=0.005" bash benchmarks/local_suite.sh results/suite "0 1 2"
read -r -a extra <<< "${EXTRA:-}"
BUDGET+=("${extra[@]}")

rows() {  # task -> its rows, "offline-quality N" each
  case $1 in
    hopper|halfcheetah|walker2d) echo "random:200 random:30 random:0 medium:30 medium:0" ;;
    ant) echo "random:200 random:30 random:0" ;;
    pointmaze-medium) echo "random:30 random:0" ;;
    *) echo "local_suite: no rows for task '$1' (known: $ALL_TASKS)" >&2
       exit 2 ;;
  esac
}

for task in $TASKS; do rows "$task" >/dev/null; done  # an unknown task stops here, before anything runs
QUALITIES=${QUALITIES:-random medium}
ABLATIONS=${ABLATIONS:-yes}
if [[ $ABLATIONS != yes && $ABLATIONS != no && $ABLATIONS != only ]]; then
  echo "local_suite: ABLATIONS=$ABLATIONS is not yes, no or only" >&2
  exit 2
fi
DRY_RUN=${DRY_RUN:-0}
if [[ $DRY_RUN != 0 && $DRY_RUN != 1 ]]; then
  echo "local_suite: DRY_RUN=$DRY_RUN is neither 1 (print the queue) nor 0 (run it)" >&2
  exit 2
fi
known_ns=$(for task in $TASKS; do for row in $(rows "$task"); do echo "${row##*:}"; done; done | sort -nu | xargs)
NS=${NS:-$known_ns}  # unset: every N the TASKS have (PointMaze has no N = 200 row)
for n in $NS; do
  if [[ " $known_ns " != *" $n "* ]]; then
    echo "local_suite: NS=\"$NS\" holds $n; the rows of TASKS=\"$TASKS\" have N in $known_ns" >&2
    exit 2
  fi
done
ablations() {  # task seed -> its ablation jobs, one a line (random data, N = 30; none for most tasks)
  case $1 in
    hopper) echo "ablation hopper-N30-H1 $2 windows.horizon=1"
            echo "ablation hopper-N30-gaussian $2 reward.kernel=gaussian" ;;
    walker2d) local walker="task.offline=tge/walker2d/random-v0 task.expert=tge/walker2d/expert-v0 evaluation.episodes=50"
              echo "ablation walker2d-N30-H1 $2 $walker windows.horizon=1"
              echo "ablation walker2d-N30-gaussian $2 $walker reward.kernel=gaussian" ;;
  esac
}
wanted() {  # task -> its rows of the wanted qualities and N
  if [[ $ABLATIONS == only ]]; then  # only the ablations' data
    if [[ -n $(ablations "$1" 0) ]]; then echo "random:30"; fi
    return
  fi
  for row in $(rows "$1"); do
    if [[ " $QUALITIES " == *" ${row%%:*} "* && " $NS " == *" ${row##*:} "* ]]; then echo "$row"; fi
  done
}
if [[ " $TASKS " == *" ant "* ]] && ! tge data experts --require ant >/dev/null; then
  # tge printed the missing file and the command that trains it
  echo "local_suite: skipping the ant rows until the ant expert is shipped" >&2
  TASKS=$(echo " $TASKS " | sed 's/ ant / /; s/^ *//; s/ *$//')
fi

cell() {  # task quality N seed: the IQL run (tge, bc, oracle), then the ReBRAC and filtered-BC runs (tge)
  local task=$1 quality=$2 n=$3 seed=$4
  local data=(task.offline="tge/$task/$quality-v0" task.expert="tge/$task/expert-v0" task.n_expert_trajs="$n")
  local name="$task-N$n"  # the random rows keep the names of the runs RESULTS.md quotes
  if [[ $quality != random ]]; then name="$task-$quality-N$n"; fi
  local budget=("${BUDGET[@]}")
  if [[ $task == walker2d ]]; then budget+=(evaluation.episodes=50); fi  # the later value wins
  tge run -q "${data[@]}" "${budget[@]}" seed="$seed" storage="$STORAGE" name="$name-iql-s$seed"
  for backbone in rebrac fbc; do
    tge run -q "${data[@]}" "${budget[@]}" seed="$seed" storage="$STORAGE" name="$name-$backbone-s$seed" \
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
  if [[ $ABLATIONS != only ]]; then
    for task in $TASKS; do
      for row in $(wanted "$task"); do jobs+=("cell $task ${row%%:*} ${row##*:} $seed"); done
    done
  fi
  if [[ " $QUALITIES " != *" random "* || " $NS " != *" 30 "* || $ABLATIONS == no ]]; then continue; fi  # random data, N = 30
  for task in $TASKS; do
    while read -r job; do jobs+=("$job"); done < <(ablations "$task" "$seed")
  done
done
if (( ${#jobs[@]} == 0 )) && [[ $ABLATIONS == only ]]; then
  with=$(for task in $ALL_TASKS; do if [[ -n $(ablations "$task" 0) ]]; then echo "$task"; fi; done | paste -sd/ | sed 's|/| or |g')
  echo "local_suite: ABLATIONS=only, but the ablations need $with in TASKS=\"$TASKS\", random in QUALITIES and 30 in NS" >&2
  exit 2
fi
if (( ${#jobs[@]} == 0 )); then
  echo "local_suite: no rows of TASKS=\"$TASKS\" have QUALITIES=\"$QUALITIES\" and NS=\"$NS\"" >&2
  exit 2
fi
if [[ $DRY_RUN == 1 ]]; then
  echo "local_suite: $LANES lane(s); every run adds: ${BUDGET[*]}" >&2
  printf '%s\n' "${jobs[@]}"; exit 0
fi

for task in $TASKS; do  # datasets first, once (not inside parallel runs)
  if [[ -z $(wanted "$task") ]]; then continue; fi
  for quality in $(wanted "$task" | cut -d: -f1 | sort -u) expert; do
    tge data make "tge/$task/$quality-v0" -q
  done
done

# bash functions do not see arrays through export: rebuild BUDGET in each job from the string
printf '%s\n' "${jobs[@]}" | xargs -P "$LANES" -I{} bash -c 'BUDGET=($BUDGET_STR); {}'
tge report "$STORAGE"
