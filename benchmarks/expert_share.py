"""How soon do expert states leave the region that random data covers? (a data diagnostic)

For each task, D_mu is ``tge/<task>/random-v0`` plus the first N expert trajectories of
``tge/<task>/expert-v0``, as ``tge run`` builds it. Observations are standardised with D_mu's
statistics (as the learners do). For each expert trajectory and each time step t in --steps, the
script takes the trajectory's state at t, finds its --neighbours nearest states of D_mu
(Euclidean, exact), and reports the share of those neighbours that are expert transitions,
averaged over the trajectories.

A share near 0 at a step means that a learner which imitates D_mu there (BC, or IQL/ReBRAC before
their values have propagated) copies mostly random actions; a share near 1 means that it copies
the expert. RESULTS.md uses it to explain why halfcheetah stays at a zero-action policy.

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
    from tge_ray.data.make import make_dataset
    from tge_ray.data.minari_io import is_local
    from tge_ray.data.task import build_task

    offline, expert = f"tge/{task}/random-v0", f"tge/{task}/expert-v0"
    for dataset_id in (offline, expert):
        if not is_local(dataset_id):
            make_dataset(dataset_id)
    lfo = build_task(offline, expert, n_expert)  # D_mu exactly as `tge run` builds it
    mixed = lfo.mixed
    states = ((mixed.observations - mixed.observations.mean(0)) / (mixed.observations.std(0) + 1e-3)).astype(np.float32)
    is_expert = lfo.expert_flags.astype(np.float64)
    expert_episodes = np.unique(mixed.episode_ids[lfo.expert_flags])
    starts = {int(e): int(np.flatnonzero(mixed.episode_ids == e)[0]) for e in expert_episodes}
    lengths = {int(e): int(np.sum(mixed.episode_ids == e)) for e in expert_episodes}
    shares = {}
    for t in steps:
        per_trajectory = []
        for episode, start in starts.items():
            if t >= lengths[episode]:
                continue
            distances = np.square(states - states[start + t]).sum(1)
            nearest = np.argpartition(distances, neighbours)[:neighbours]
            per_trajectory.append(float(is_expert[nearest].mean()))
        shares[str(t)] = float(np.mean(per_trajectory)) if per_trajectory else None
    return {
        "task": task,
        "n_expert": len(expert_episodes),
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
