"""The CPU benchmarks' smoke runs: each script runs end to end in seconds (tiny sizes, no JSON);
the local suite's queue and its refusals.

A speed figure is only as good as the script that prints it; these catch a benchmark that no
longer runs (bench_unet.py's CPU path once called bench_rl's matmul probe without its device).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(("script", "args", "expected"), [
    ("bench_unet.py", [], ["bound = 256^3 fp32 matmul, 2 threads"]),
    ("bench_rl.py", ["--matmul", "fp32,bf16"], ["iql_p8_bound_share", "256^3 matmul, bf16", "iql x8 ", "bf16_bound_share"]),
])
def test_benchmark_smoke_run(script, args, expected, tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke-test", "--threads", "2", *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(line in done.stdout for line in expected), done.stdout[-2000:]
    assert not list(tmp_path.iterdir())  # a smoke run writes nothing


# Packages of the pipeline that a GPU machine's image lacks (the lent device's package list has
# none of them; docs/notes/gpu-h200.md), which benchmarks/gpu.sh must therefore not need. A module set to None in sys.modules fails to import.
NOT_ON_THE_GPU_MACHINE = ("ray", "gymnasium", "gymnasium_robotics", "mujoco", "faiss", "minari", "optuna", "mlflow",
                          "wandb", "stable_baselines3", "sbx")


def test_the_gpu_script_needs_none_of_the_pipeline_s_other_packages():
    """benchmarks/gpu.sh imports the gpu tests and both benchmarks and trains learners; with Ray,
    Gymnasium, MuJoCo and faiss unimportable all of that still runs (a top-level Gymnasium import
    in the policy stage's module once stopped the whole script at collection)."""
    script = f"""
import sys
for name in {NOT_ON_THE_GPU_MACHINE!r}:
    sys.modules[name] = None
sys.path.insert(0, {str(BENCHMARKS)!r})
import numpy as np
import bench_rl, bench_unet  # noqa: F401
import tests.gpu.test_gpu_paths  # noqa: F401
from tge_ray.config import BCConfig, IQLConfig, ReBRACConfig
from tge_ray.rl.learner import PolicySpec, Problem
from tge_ray.rl.table import PolicyData, TransitionTable
from tge_ray.rl.train import build_learner
transitions = bench_rl.random_transitions(500)
table = TransitionTable.build(transitions, {{"r": transitions.rewards}}, -np.ones(3), np.ones(3), "cpu")
for name, config in (("iql", IQLConfig), ("rebrac", ReBRACConfig), ("bc", BCConfig)):
    spec = PolicySpec(config(hidden=16, batch_size=8), 0, PolicyData("r"), *transitions.observation_stats())
    learner = build_learner(name, Problem(11, 3, -np.ones(3), np.ones(3), 10), [spec], table)
    learner.run(2)
    print(name, "trained")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=BENCHMARKS.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["iql", "trained", "rebrac", "trained", "bc", "trained"]


def local_suite(tmp_path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(BENCHMARKS / "local_suite.sh"), str(tmp_path / "store"), *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60, env={**os.environ, **env})


def test_local_suite_picks_rows_by_quality_and_n(tmp_path):
    done = local_suite(tmp_path, {"DRY_RUN": "1", "NS": "30 200", "QUALITIES": "random"}, "0 1", "2", "hopper halfcheetah")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "cell hopper random 200 0", "cell hopper random 30 0", "cell halfcheetah random 200 0",
        "cell halfcheetah random 30 0",
        "ablation hopper-N30-H1 0 windows.horizon=1", "ablation hopper-N30-gaussian 0 reward.kernel=gaussian",
        "cell hopper random 200 1", "cell hopper random 30 1", "cell halfcheetah random 200 1",
        "cell halfcheetah random 30 1",
        "ablation hopper-N30-H1 1 windows.horizon=1", "ablation hopper-N30-gaussian 1 reward.kernel=gaussian",
    ]
    # without N = 30, no ablations (they are N = 30 rows)
    done = local_suite(tmp_path, {"DRY_RUN": "1", "NS": "0"}, "0", "2", "hopper")
    assert done.stdout.splitlines() == ["cell hopper random 0 0", "cell hopper medium 0 0"]
    # NS unset: every N the tasks have; PointMaze has no N = 200 row, and that is no reason to refuse
    done = local_suite(tmp_path, {"DRY_RUN": "1"}, "0", "2", "pointmaze-medium")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["cell pointmaze-medium random 30 0", "cell pointmaze-medium random 0 0"]
    # ABLATIONS=only: the ablation pairs alone, for a store that has the cells already
    done = local_suite(tmp_path, {"DRY_RUN": "1", "ABLATIONS": "only"}, "0", "2", "halfcheetah walker2d")
    assert done.returncode == 0, done.stderr
    walker = "task.offline=tge/walker2d/random-v0 task.expert=tge/walker2d/expert-v0 evaluation.episodes=50"
    assert done.stdout.splitlines() == [f"ablation walker2d-N30-H1 0 {walker} windows.horizon=1",
                                        f"ablation walker2d-N30-gaussian 0 {walker} reward.kernel=gaussian"]
    assert not list(tmp_path.iterdir())


def test_local_suite_splits_the_cores_between_its_lanes(tmp_path):
    # each lane's runs get nproc / LANES torch threads, at least one; EXTRA still has the last word
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # nproc's count
    for lanes in ("1", "2", str(4 * cores)):
        done = local_suite(tmp_path, {"DRY_RUN": "1", "NS": "0", "QUALITIES": "random"}, "0", lanes, "hopper")
        assert done.returncode == 0, done.stderr
        threads = max(1, cores // int(lanes))
        assert "every run adds: rl.steps=5000 " in done.stderr
        assert done.stderr.split()[-1] == f"resources.torch_threads={threads}", done.stderr
    done = local_suite(tmp_path, {"DRY_RUN": "1", "NS": "0", "QUALITIES": "random",
                                  "EXTRA": "resources.torch_threads=3"}, "0", "2", "hopper")
    two_lanes = max(1, cores // 2)
    assert done.stderr.split()[-2:] == [f"resources.torch_threads={two_lanes}", "resources.torch_threads=3"], done.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("lanes", ["0", "two"])
def test_local_suite_refuses_a_bad_lane_count_in_one_line(tmp_path, lanes):
    done = local_suite(tmp_path, {}, "0", lanes, "hopper")
    assert done.returncode == 2
    assert done.stderr.strip() == f"local_suite: LANES={lanes} is not a number of runs at once >= 1 (e.g. 2, the default)"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("env", "message"), [
    ({"NS": "30 50"}, 'NS="30 50" holds 50'),
    ({"NS": "200", "QUALITIES": "medium"}, 'no rows of TASKS="hopper" have QUALITIES="medium" and NS="200"'),
    ({"ABLATIONS": "maybe"}, "ABLATIONS=maybe is not yes, no or only"),
    ({"ABLATIONS": "only", "NS": "0"}, "ABLATIONS=only, but the ablations need hopper or walker2d"),
    ({"DRY_RUN": "yes"}, "DRY_RUN=yes is neither 1 (print the queue) nor 0 (run it)"),
    ({"STEPS": "ten"}, "STEPS=ten is not a number of RL updates"),
])
def test_local_suite_refuses_bad_settings_in_one_line(tmp_path, env, message):
    done = local_suite(tmp_path, env, "0", "2", "hopper")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()] and message in done.stderr
    assert not list(tmp_path.iterdir())
