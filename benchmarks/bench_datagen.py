"""Throughput of local dataset generation (``tge data make``): env steps per second.

Measures the rollout loop alone (:func:`tge_ray.data.make.collect`, vectorised envs, one batched
policy call per step) for the random policy and the shipped expert, and one whole
``make_dataset`` (rollouts + Minari write + atomic move) for random data, per wall second and per
CPU second of the process (the latter is what other load on a shared machine changes least),
beside the floor: the bare vector env stepped with a fixed action.
Prints the figures and writes them to ``benchmarks/datagen.json``. Targets on 2 cores: random
>= 5k steps/s, expert >= 2k steps/s. Rollouts run in one process (synchronous vector envs).

    .venv/bin/python benchmarks/bench_datagen.py            # 40k steps per figure
    .venv/bin/python benchmarks/bench_datagen.py --smoke-test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch

from tge_ray.data import experts, make


def _rates(name: str, run, steps: int) -> dict[str, float]:
    """Steps per wall second, and per CPU second of this process (unaffected by other load)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return {f"{name}_steps_per_s": steps / (time.perf_counter() - wall),
            f"{name}_steps_per_cpu_s": steps / (time.process_time() - cpu)}


def _raw_env(task: make.Task, steps: int) -> None:
    """The floor: the same vector env stepped with one fixed action, nothing recorded."""
    envs = gym.make_vec(task.env_id, task.num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    envs.reset(seed=0)
    action = envs.action_space.sample()
    for _ in range(steps // task.num_envs):
        envs.step(action)
    envs.close()


def _collect(task: make.Task, policy, steps: int) -> None:
    buffers = make.collect(task, policy, seed=0, size=steps, progress=False)
    assert sum(len(b.rewards) for b in buffers) == steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="hopper", choices=sorted(experts.LOCOMOTION_ENVS))
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--smoke-test", action="store_true", help="2k steps, for a quick check")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "datagen.json")
    args = parser.parse_args()
    steps = 2_000 if args.smoke_test else args.steps
    torch.set_num_threads(1)

    task = make.TASKS[args.task]
    action_space = gym.make(task.env_id).action_space
    random_policy, expert_policy = experts.random_policy(action_space, 0), experts.load_policy(args.task, "expert")
    figures = {
        **_rates("raw_vector_env", lambda: _raw_env(task, steps), steps),
        **_rates("random_collect", lambda: _collect(task, random_policy, steps), steps),
        **_rates("expert_collect", lambda: _collect(task, expert_policy, steps), steps),
    }
    with tempfile.TemporaryDirectory() as root:
        os.environ["MINARI_DATASETS_PATH"] = root
        figures.update(_rates("random_make_dataset", lambda: make.make_dataset(
            f"tge/{args.task}/random-v0", size=steps, progress=False), steps))

    result = {"task": args.task, "env_id": task.env_id, "steps": steps, "num_envs": task.num_envs,
              "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0], "python": platform.python_version(),
              **{k: round(v, 1) for k, v in figures.items()}}
    for name, value in figures.items():
        print(f"{name:40s} {value:10.0f}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
