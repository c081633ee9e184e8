"""Throughput of expert training (``tge data train-expert``): env steps per second with learning.

For each ``--algo`` candidate (:data:`tge_ray.data.expert_algos.ALGOS`) on ``--env``, in its own
process: the learner built as train-expert builds it (one torch thread for the torch learners),
``--learning-starts`` uniform random steps and ``--warmup`` learning steps (JAX compiles here),
then ``--steps`` timed steps, each one environment step and one gradient update. Reported per
wall second and per CPU second of the process (what other load on a shared machine changes least),
with the hours 1M steps would take at that rate. Speed only: which learner reaches the better
expert in a budget is `tge data train-expert --algo ALGO` with the same ``--max-seconds``,
compared on the records' returns. Prints the figures and writes ``benchmarks/expert_<env>.json``.

    .venv/bin/python benchmarks/bench_expert.py --env Ant-v5      # 5000 timed steps per learner
    .venv/bin/python benchmarks/bench_expert.py --smoke-test      # tiny, and writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from tge_ray.data.envs import slug
from tge_ray.data.expert_algos import ALGOS


def measure(algo: str, env_id: str, learning_starts: int, warmup: int, steps: int) -> dict[str, float]:
    """One learner's figures (runs in a worker process)."""
    import gymnasium as gym
    import torch

    from tge_ray.data.envs import check_env

    learner = ALGOS[algo]
    if learner.actor == "torch":
        torch.set_num_threads(1)  # as train-expert runs them
    env = check_env(env_id)
    started = time.perf_counter()
    model = learner.load()("MlpPolicy", env, learning_starts=learning_starts, seed=0, device="cpu", verbose=0)
    model.learn(learning_starts + warmup)
    setup = time.perf_counter() - started
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(steps, reset_num_timesteps=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert model.num_timesteps == learning_starts + warmup + steps and isinstance(env, gym.Env)
    return {"steps_per_s": steps / wall, "steps_per_cpu_s": steps / cpu, "hours_per_1m_steps": 1e6 / (steps / wall) / 3600,
            "setup_s": setup, "gradient_updates": int(model._n_updates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5", help="continuous-control Gymnasium env id")
    parser.add_argument("--algos", default=",".join(ALGOS), help=f"comma-separated, of {', '.join(ALGOS)}")
    parser.add_argument("--steps", type=int, default=5000, help="timed steps per learner")
    parser.add_argument("--learning-starts", type=int, default=1000, help="random steps before learning (untimed)")
    parser.add_argument("--warmup", type=int, default=500, help="learning steps before timing (JIT, allocations)")
    parser.add_argument("--smoke-test", action="store_true", help="200 + 20 + 100 steps, nothing written")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/expert_<env>.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one learner, figures as JSON on stdout
    args = parser.parse_args()
    if args.smoke_test:
        args.steps, args.learning_starts, args.warmup = 100, 200, 20
    if args.worker:
        print(json.dumps(measure(args.worker, args.env, args.learning_starts, args.warmup, args.steps)))
        return

    algos = [name.strip() for name in args.algos.split(",") if name.strip()]
    unknown = [name for name in algos if name not in ALGOS]
    if unknown:
        parser.error(f"unknown --algos {', '.join(unknown)}: use {', '.join(ALGOS)}")
    figures = {}
    for algo in algos:
        command = [sys.executable, __file__, "--worker", algo, "--env", args.env, "--steps", str(args.steps),
                   "--learning-starts", str(args.learning_starts), "--warmup", str(args.warmup)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"{algo} failed", file=sys.stderr)
            sys.exit(2)
        figures[algo] = {key: round(value, 2) for key, value in json.loads(done.stdout.splitlines()[-1]).items()}
        row = figures[algo]
        print(f"{algo:8s} {row['steps_per_s']:8.1f} steps/s  {row['steps_per_cpu_s']:8.1f} steps/cpu-s  "
              f"{row['hours_per_1m_steps']:6.2f} h per 1M steps  (setup {row['setup_s']:.0f} s)")

    if args.smoke_test:
        return
    result = {"env_id": args.env, "steps": args.steps, "learning_starts": args.learning_starts, "warmup": args.warmup,
              "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0], "python": platform.python_version(),
              "versions": {name: ALGOS[name].versions() for name in algos}, "algos": figures}
    out = args.out or Path(__file__).parent / f"expert_{slug(args.env)}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
