"""What could a perfect reward give? Reference policies on a task's D_mu (a policy-stage diagnostic)

TGE only changes the rewards of D_mu; the policy stage then has to turn them into a policy. This
script trains two references on the same D_mu (``tge/<task>/random-v0`` plus the first N expert
trajectories, as ``tge run`` builds it), with the project's own learners, budget and evaluation:

- ``bc-expert``: BC on the expert-flagged transitions of D_mu only, the expert's own actions.
  Imitation with actions, which an LfO method does not have.
- ``iql-flag``: IQL on all of D_mu with reward 1 on expert-flagged transitions and 0 elsewhere,
  the reward of a perfect trajectory classifier (separation AUC 1).

Both are evaluated every --every updates, so the curve shows how steady a policy is, not only
where it ends. ``--runs`` adds the curves of existing ``tge run`` folders (their
``eval_history``) to the same table, for comparison with TGE.

    python benchmarks/policy_ceiling.py                                  # hopper, N = 30, seeds 0-2
    python benchmarks/policy_ceiling.py --n-expert 200 --runs RUN_DIR...
    python benchmarks/policy_ceiling.py --references iql-flag --set rl.iql.beta=9

Each line: final score, mean over the evaluations of the second half of training, and the share
of those evaluations at or above --good. Runs without Ray, one torch thread per process; writes
benchmarks/policy_ceiling/<task>-N<n>.json (or --out). Makes the datasets first when they are missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _run_folder import read_run

REFERENCES = ("bc-expert", "iql-flag")


def train_reference(kind: str, task: str, n_expert: int, seed: int, steps: int, every: int, episodes: int,
                    out_dir: Path, overrides: list[str]) -> list[tuple[int, float]]:
    """Train one reference policy; returns its (step, normalised score) evaluations."""
    import torch

    from tge_ray.config import load_config
    from tge_ray.data.task import build_task
    from tge_ray.pipeline.policies import _transitions, eval_environment
    from tge_ray.pipeline.stages import ensure_datasets
    from tge_ray.rl.buffer import Transitions
    from tge_ray.rl.train import train_policy

    torch.set_num_threads(1)
    cfg = load_config(None, [f"task.offline=tge/{task}/random-v0", f"task.expert=tge/{task}/expert-v0",
                             f"task.n_expert_trajs={n_expert}", f"rl.steps={steps}", f"evaluation.every={every}",
                             f"evaluation.episodes={episodes}", f"seed={seed}", *overrides])
    ensure_datasets(cfg, progress=False)
    lfo = build_task(cfg.task.offline, cfg.task.expert, cfg.task.n_expert_trajs, cfg.task.n_demos,
                     demos=cfg.task.demos)
    flags = lfo.expert_flags
    if not flags.any():
        raise SystemExit(f"policy_ceiling: error: N = {n_expert} puts no expert transitions in D_mu; use N >= 1")
    transitions = _transitions(lfo, flags.astype(np.float32))
    method = "iql"
    if kind == "bc-expert":
        method = "bc"
        transitions = Transitions(*(getattr(transitions, name)[flags] for name in (
            "observations", "actions", "rewards", "next_observations", "terminals", "next_actions")))
    env_id, env_kwargs = eval_environment(cfg, lfo)
    result = train_policy(method, cfg.rl, cfg.evaluation, transitions, env_id=env_id, env_kwargs=env_kwargs,
                          ref_min=lfo.mixed.ref_min_score, ref_max=lfo.mixed.ref_max_score, seed=seed,
                          out_dir=out_dir, progress=False, use_ray=False)
    return [(int(step), float(score)) for step, score in result.eval_history]


def summarise(history: list[tuple[int, float]], good: float) -> dict:
    """Final score, and the mean and share >= good of the second half's evaluations."""
    last = history[-1][0]
    late = np.array([score for step, score in history if step > last / 2])
    return {"final": history[-1][1], "late_mean": float(late.mean()), "late_good_share": float((late >= good).mean()),
            "late_evaluations": int(late.size)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="hopper", choices=["hopper", "halfcheetah", "walker2d"])
    parser.add_argument("--n-expert", type=int, default=30, help="expert trajectories mixed into D_mu (>= 1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--references", nargs="+", default=list(REFERENCES), choices=REFERENCES)
    parser.add_argument("--steps", type=int, default=5000, help="updates per policy (the suite's budget)")
    parser.add_argument("--every", type=int, default=250, help="updates between evaluations")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per evaluation")
    parser.add_argument("--good", type=float, default=75.0, help="score counted as good in late_good_share")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for the references, as `tge run` takes them (rl.iql.beta=9)")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="`tge run` folders to add to the table")
    parser.add_argument("--workdir", type=Path, default=Path("policy_ceiling_runs"),
                        help="where the reference policies' checkpoints go")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/policy_ceiling/<task>-N<n>.json")
    args = parser.parse_args(argv)
    args.out = args.out or Path(__file__).with_name("policy_ceiling") / f"{args.task}-N{args.n_expert}.json"
    if args.n_expert < 1 or args.steps < 1 or args.every < 1 or args.episodes < 1:
        parser.error("--n-expert, --steps, --every and --episodes must be >= 1")
    runs = {}
    for run_dir in args.runs:
        run = read_run(run_dir, "policy_ceiling")
        if run is None:
            return 2
        runs[run_dir] = run

    from tge_ray.errors import TGEError

    rows = []
    for kind in args.references:
        for seed in args.seeds:
            start = time.perf_counter()
            try:
                history = train_reference(kind, args.task, args.n_expert, seed, args.steps, args.every,
                                          args.episodes, args.workdir / f"{args.task}-N{args.n_expert}-{kind}-s{seed}",
                                          args.overrides)
            except TGEError as exc:  # a bad override or dataset: one line, nothing written to --out
                print(f"policy_ceiling: error: {exc}", file=sys.stderr)
                return 2
            rows.append({"name": kind, "seed": seed, "history": history, "seconds": time.perf_counter() - start,
                         **summarise(history, args.good)})
    for run_dir, run in runs.items():
        for method, history in run.results.eval_history.items():
            rows.append({"name": f"{run_dir.name.split('__')[0]}:{method}", "seed": run.config.seed,
                         "history": history, **summarise(history, args.good)})

    print(f"{args.task}, N = {args.n_expert}: final score, mean and share >= {args.good:g} of the second half's "
          "evaluations, then every evaluation")
    for row in rows:
        curve = " ".join(f"{score:.0f}" for _, score in row["history"])
        print(f"  {row['name']:28s} s{row['seed']}  final {row['final']:6.1f}  late mean {row['late_mean']:6.1f}  "
              f"good {row['late_good_share']:4.0%}  | {curve}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"task": args.task, "n_expert": args.n_expert, "overrides": args.overrides,
                                    "steps": args.steps,
                                    "every": args.every, "episodes": args.episodes, "good": args.good,
                                    "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
