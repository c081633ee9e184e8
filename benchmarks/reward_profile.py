"""Where in an episode does a run's TGE reward pay? (a reward diagnostic)

Reads a ``tge run`` folder's stored rewards (scaled as its backbone saw them) and D_mu's episode
layout, and prints the mean reward of expert-flagged and other transitions by position in their
episode: t steps after the start and d steps before the end (d = 0 is the last transition).

    python benchmarks/reward_profile.py RUN_DIR [RUN_DIR ...]
    python benchmarks/reward_profile.py RUN_DIR --from-start 0 5 10 20 --to-end 0 5 10 20 40

A reward that falls as an episode nears a termination (a fall) tells the offline learner which
actions of the suboptimal data delay it; a reward that is flat there only tells trajectories
apart. docs/notes/hopper-first-expert.md uses it to compare H = 32 with H = 1 on hopper and walker2d. Writes
reward_profile.json into each RUN_DIR (or --out with one RUN_DIR).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from _run_folder import read_run


def profile(run: Any, from_start: list[int], to_end: list[int]) -> dict:
    """Mean stored reward by position in D_mu's episodes, for one run (a RunFolder)."""
    config = run.config
    task = run.task()
    rewards = run.rewards().scaled
    mixed = task.mixed
    lengths = np.bincount(mixed.episode_ids, minlength=mixed.n_episodes)
    position = np.arange(mixed.n_transitions) - mixed.episode_starts[mixed.episode_ids]
    remaining = lengths[mixed.episode_ids] - 1 - position

    def means(rows: np.ndarray, where: np.ndarray, steps: list[int]) -> dict[str, float | None]:
        return {str(step): (float(rewards[rows & (where == step)].mean()) if (rows & (where == step)).any() else None)
                for step in steps}

    groups = {}
    for name, rows in (("expert-flagged", task.expert_flags), ("other", ~task.expert_flags)):
        if rows.any():
            groups[name] = {"from_start": means(rows, position, from_start), "to_end": means(rows, remaining, to_end),
                            "mean": float(rewards[rows].mean()),
                            "episode_length_mean": float(lengths[np.unique(mixed.episode_ids[rows])].mean())}
    return {"run": str(run.path), "horizon": config.windows.horizon, "kernel": config.reward.kernel,
            "expert_windows": config.reward.expert_windows, "groups": groups}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+", help="`tge run` folders with a TGE reward stage")
    parser.add_argument("--from-start", type=int, nargs="+", default=[0, 5, 10, 20], metavar="T")
    parser.add_argument("--to-end", type=int, nargs="+", default=[0, 2, 5, 10, 20, 40], metavar="D")
    parser.add_argument("--out", type=Path, default=None, help="with one RUN_DIR: default RUN_DIR/reward_profile.json")
    args = parser.parse_args(argv)
    runs = {}
    for run_dir in args.run_dirs:
        run = read_run(run_dir, "reward_profile", rewards=True)
        if run is None:
            return 2
        runs[run_dir] = run
    if args.out is not None and len(args.run_dirs) > 1:
        parser.error("--out takes one RUN_DIR")

    from tge_ray.errors import TGEError

    for run_dir, run in runs.items():
        try:
            record = profile(run, args.from_start, args.to_end)
        except TGEError as exc:  # e.g. the run's datasets are gone
            print(f"reward_profile: error: {run_dir}: {exc}", file=sys.stderr)
            return 2
        print(f"{run_dir.name}: H = {record['horizon']}, {record['kernel']} kernel, expert windows "
              f"{record['expert_windows']}; mean scaled reward by position")
        for name, group in record["groups"].items():
            start = " ".join(f"t{t}:{v:.3f}" if v is not None else f"t{t}:-" for t, v in group["from_start"].items())
            end = " ".join(f"end-{d}:{v:.3f}" if v is not None else f"end-{d}:-" for d, v in group["to_end"].items())
            print(f"  {name:15s} mean {group['mean']:.3f} (episodes of {group['episode_length_mean']:.0f} steps)  "
                  f"{start}  {end}")
        out = args.out or run_dir / "reward_profile.json"
        out.write_text(json.dumps(record, indent=1))
        print(f"  wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
