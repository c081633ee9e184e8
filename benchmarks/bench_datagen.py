"""Throughput of local dataset generation (``tge data make``): env steps per second.

Measures the rollout loop alone (:func:`tge_ray.data.rollouts.collect_parallel`, vectorised envs, one
batched policy call per step) for the random policy and the shipped expert, in one process and
over ``--workers`` processes (what ``tge data make`` uses, default 2), and one whole
``make_dataset`` (rollouts + Minari hdf5 write + atomic move) for random data, at ``tge data make``'s default
size (200k steps; worker start-up is a few seconds, so small sizes understate the workers), per wall second,
beside the floor: the bare vector env stepped with a fixed action in one process.
Single-process figures also come per CPU second of the process (what other load on a shared
machine changes least). Prints the figures and writes them to ``benchmarks/datagen.json``.
Targets on 2 cores: random >= 5k steps/s, expert >= 2k steps/s.

    .venv/bin/python benchmarks/bench_datagen.py            # 200k steps per figure
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

from tge_ray.data import experts, make, rollouts


def _rates(name: str, run, steps: int, cpu_rate: bool = True) -> dict[str, float]:
    """Steps per wall second, and per CPU second of this process (unaffected by other load)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    rates = {f"{name}_steps_per_s": steps / (time.perf_counter() - wall)}
    if cpu_rate:
        rates[f"{name}_steps_per_cpu_s"] = steps / (time.process_time() - cpu)
    return rates


def _raw_env(task: rollouts.Task, steps: int) -> None:
    """The floor: the same vector env stepped with one fixed action, nothing recorded."""
    envs = gym.make_vec(task.env_id, task.num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    envs.reset(seed=0)
    action = envs.action_space.sample()
    for _ in range(steps // task.num_envs):
        envs.step(action)
    envs.close()


def _collect(task: rollouts.Task, spec: make.PolicySpec, steps: int, workers: int) -> None:
    buffers = rollouts.collect_parallel(task, spec, seed=0, size=steps, workers=workers, progress=False)
    assert sum(len(b.rewards) for b in buffers) == steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="hopper", choices=sorted(experts.LOCOMOTION_ENVS))
    parser.add_argument("--steps", type=int, default=200_000, help="per figure (tge data make's default size)")
    parser.add_argument("--workers", type=int, default=make.DEFAULT_WORKERS, help="rollout processes")
    parser.add_argument("--smoke-test", action="store_true", help="2k steps, for a quick check")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "datagen.json")
    args = parser.parse_args()
    steps = 2_000 if args.smoke_test else args.steps
    workers = args.workers
    # Below STEPS_PER_WORKER steps per worker make uses fewer workers; the smoke test may.
    torch.set_num_threads(1)

    task = make.TASKS[args.task]
    action_space = gym.make(task.env_id).action_space
    random_spec = make.PolicySpec(args.task, "random", action_space)
    expert_spec = make.PolicySpec(args.task, "expert", action_space)
    figures = {**_rates("raw_vector_env", lambda: _raw_env(task, steps), steps)}
    for name, spec in (("random", random_spec), ("expert", expert_spec)):
        figures.update(_rates(f"{name}_collect_1_worker", lambda spec=spec: _collect(task, spec, steps, 1), steps))
        figures.update(_rates(f"{name}_collect_{workers}_workers", lambda spec=spec: _collect(task, spec, steps, workers),
                              steps, cpu_rate=False))
    with tempfile.TemporaryDirectory() as root:
        os.environ["MINARI_DATASETS_PATH"] = root
        for count in (1, workers):
            figures.update(_rates(f"random_make_dataset_{count}_worker{'s' * (count > 1)}", lambda count=count: make.make_dataset(
                f"tge/{args.task}/random-v0", size=steps, progress=False, force=True, workers=count), steps,
                cpu_rate=count == 1))

    result = {"task": args.task, "env_id": task.env_id, "steps": steps, "num_envs": task.num_envs,
              "workers": workers, "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
              "python": platform.python_version(),
              **{k: round(v, 1) for k, v in figures.items()}}
    for name, value in figures.items():
        print(f"{name:46s} {value:10.0f}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
