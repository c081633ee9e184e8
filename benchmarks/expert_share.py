"""How soon do expert states leave the region that random data covers? (a data diagnostic)

For each task, D_mu is ``tge/<task>/random-v0`` plus the first N expert trajectories of
``tge/<task>/expert-v0``, as ``tge run`` builds it. Observations are standardised with D_mu's
statistics, as the windows are. For each expert trajectory and each time step t in --steps, the
script takes the trajectory's state at t, finds its --neighbours nearest states of D_mu
(Euclidean, exact faiss search), and reports the share of those neighbours that are expert transitions,
averaged over the trajectories.

A share near 0 at a step means that a learner which imitates D_mu there (BC, or IQL/ReBRAC before
their values have propagated) copies mostly random actions; a share near 1 means that it copies
the expert. docs/notes/halfcheetah-rest-pose.md uses it to explain why halfcheetah stays at a zero-action policy.

    python benchmarks/expert_share.py                       # hopper, halfcheetah, walker2d, N = 30
    python benchmarks/expert_share.py --tasks hopper --n-expert 200

Prints one line per task and writes benchmarks/expert_share.json. Makes the datasets first when
they are missing (``tge data make``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def expert_share(task: str, n_expert: int, steps: list[int], neighbours: int) -> dict:
    from tge_ray.config import load_config
    from tge_ray.data.task import build_task
    from tge_ray.pipeline.stages import ensure_datasets
    from tge_ray.reward.knn import build_index

    cfg = load_config(None, [f"task.offline=tge/{task}/random-v0", f"task.expert=tge/{task}/expert-v0",
                             f"task.n_expert_trajs={n_expert}"])
    ensure_datasets(cfg, progress=False)
    lfo = build_task(cfg.task.offline, cfg.task.expert, cfg.task.n_expert_trajs, cfg.task.n_demos,
                     demos=cfg.task.demos)  # as `tge run`
    states = lfo.standardize(lfo.mixed.observations)  # D_mu's statistics, as the windows use
    index = build_index(states, use_gpu=False)  # exact faiss search over every D_mu state
    _, starts, lengths = np.unique(lfo.mixed.episode_ids, return_index=True, return_counts=True)
    is_expert_episode = lfo.expert_flags[starts]
    starts, lengths = starts[is_expert_episode], lengths[is_expert_episode]
    shares = {}
    for t in steps:
        rows = starts[lengths > t] + t  # step t of every expert trajectory that lasts that long
        if len(rows) == 0:
            shares[str(t)] = None
            continue
        _, nearest = index.kneighbors(states[rows], neighbours)  # (trajectories, neighbours)
        shares[str(t)] = float(lfo.expert_flags[nearest].mean())
    return {
        "task": task,
        "n_expert": len(starts),
        "random_transitions": int((~lfo.expert_flags).sum()),
        "expert_transitions": int(lfo.expert_flags.sum()),
        "neighbours": neighbours,
        "expert_share_by_step": shares,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="hopper,halfcheetah,walker2d")
    parser.add_argument("--n-expert", type=int, default=30, help="expert trajectories mixed into D_mu")
    parser.add_argument("--steps", default="0,5,10,20,40", help="time steps of the expert trajectories")
    parser.add_argument("--neighbours", type=int, default=100)
    parser.add_argument("--out", default=str(Path(__file__).with_name("expert_share.json")))
    args = parser.parse_args(argv)
    if args.n_expert < 1 or args.neighbours < 1:
        parser.error("--n-expert and --neighbours must be >= 1")
    steps = [int(s) for s in args.steps.split(",")]
    started = time.time()
    rows = []
    for task in args.tasks.split(","):
        row = expert_share(task, args.n_expert, steps, args.neighbours)
        rows.append(row)
        shares = ", ".join(f"t={t}: {v:.2f}" for t, v in row["expert_share_by_step"].items() if v is not None)
        print(f"{task:12s} N={row['n_expert']:<4d} expert share among {args.neighbours} nearest D_mu states: {shares}")
    Path(args.out).write_text(json.dumps({"command": "python benchmarks/expert_share.py", "args": {k: v for k, v in vars(args).items() if k != "out"},
                                          "seconds": round(time.time() - started, 1), "results": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
