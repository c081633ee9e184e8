"""Sweep overhead: a 16-trial sigma x k x backbone sweep at one H, wall time against its RL stages.

Runs ``tge sweep benchmarks/sweep_speed.yaml`` (through :func:`tge_ray.sweep.tune.run_sweep`) into
a fresh storage folder, then reads the artifact store: the seconds of every policy stage (RL
updates and their evaluations: "the RL stages alone") and how many diffusion models were trained.
Reports wall / sum(RL stages) (goal <= 1.3) and diffusion models trained (goal: 1), with the
sweep's other stages (diffusion, embeddings, rewards) for context. With two concurrent trials on
two cores the RL stages overlap, so the ratio can fall below 1. Prints a table and writes
``benchmarks/sweep.json``.

    .venv/bin/python benchmarks/bench_sweep.py                 # the 16-trial sweep (minutes)
    .venv/bin/python benchmarks/bench_sweep.py --smoke-test    # 2 trials, tiny budgets
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
import ray

from tge_ray.sweep.tune import run_sweep

HERE = Path(__file__).parent
SMOKE_SPACE = HERE.parent / "tune_spaces" / "smoke.yaml"  # --smoke-test: 2 trials of the test sweep


def stage_seconds(artifacts: Path) -> dict[str, list[float]]:
    """Seconds of every stage build in the store, by stage (policy-tge, diffusion, ...)."""
    seconds: dict[str, list[float]] = defaultdict(list)
    from tge_ray.pipeline.files import MANIFEST_FILE

    for manifest in artifacts.glob(f"*/{MANIFEST_FILE}"):
        info = json.loads(manifest.read_text())
        seconds[info["stage"]].append(float(info["seconds"]))
    return dict(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=None, help="space file (default: benchmarks/sweep_speed.yaml)")
    parser.add_argument("--smoke-test", action="store_true", help="2 trials at tiny budgets")
    parser.add_argument("--out", type=Path, default=HERE / "sweep.json")
    args = parser.parse_args()
    space = args.space or str(SMOKE_SPACE if args.smoke_test else HERE / "sweep_speed.yaml")
    overrides = ["sweep.num_samples=2"] if args.smoke_test else []

    with tempfile.TemporaryDirectory(prefix="tge-bench-sweep-") as storage:
        load_start = os.getloadavg()[0]
        started = time.perf_counter()
        folder = run_sweep(space, storage=storage, overrides=overrides, progress=False)
        wall = time.perf_counter() - started
        table = pd.read_csv(folder / "sweep_results.csv")
        stages = stage_seconds(Path(storage) / "artifacts")
    rl = sum(sum(v) for k, v in stages.items() if k.startswith("policy-"))
    result = {
        "space": Path(space).name,
        "overrides": overrides,
        "trials": len(table),
        "trials_done": int((table["status"] == "done").sum()),
        "wall_seconds": round(wall, 1),
        "rl_stage_seconds_sum": round(rl, 1),
        "wall_over_rl": round(wall / rl, 3) if rl else None,
        "goal_wall_over_rl": 1.3,
        "diffusion_models_trained": len(stages.get("diffusion", [])),
        "goal_diffusion_models_trained": 1,
        "stage_seconds_sum": {k: round(sum(v), 1) for k, v in sorted(stages.items())},
        "stage_builds": {k: len(v) for k, v in sorted(stages.items())},
        "cpus": os.cpu_count(),
        "load_avg_1min_start": load_start,
        "load_avg_1min_end": os.getloadavg()[0],
        "python": platform.python_version(),
        "ray": ray.__version__,
    }
    for key, value in result.items():
        print(f"{key:30s} {value}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
