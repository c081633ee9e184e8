"""Evaluation rollouts (one policy, a batch of them, as a Ray task) and tiny end-to-end training."""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from tge_ray.config import BCConfig, EvaluationConfig, IQLConfig
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.evaluation import (
    evaluate_policies,
    evaluate_policy,
    evaluate_remote,
    normalized_score,
)
from tge_ray.rl.learner import PolicySpec, Problem
from tge_ray.rl.nets import StackedPolicy, select_actor
from tge_ray.rl.table import PolicyData, TransitionTable
from tge_ray.rl.train import build_learner, train_batch, train_policy

ENV = "Hopper-v5"
REF = dict(ref_min=-20.0, ref_max=3234.0)


def zero_policy(observations: np.ndarray) -> np.ndarray:
    return np.zeros((len(observations), 3))


def test_normalized_score():
    assert normalized_score(1000.0, 0.0, 2000.0) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        normalized_score(1.0, 1.0, 1.0)


def test_trivial_policy_counts_episodes_and_is_seeded():
    kwargs = dict(episodes=3, num_envs=2, seed=0, max_episode_steps=15, **REF)
    result = evaluate_policy(zero_policy, ENV, **kwargs)
    assert math.isfinite(result.score) and math.isfinite(result.return_std)
    assert len(result.returns) == 3 and all(n <= 15 for n in result.lengths)
    assert result.score == pytest.approx(float(normalized_score(np.mean(result.returns), **REF)))
    assert evaluate_policy(zero_policy, ENV, **kwargs) == result
    assert evaluate_policy(zero_policy, ENV, **{**kwargs, "seed": 1}).returns != result.returns


def test_more_envs_than_episodes():
    result = evaluate_policy(zero_policy, ENV, episodes=1, num_envs=4, seed=0, max_episode_steps=5, **REF)
    assert result.lengths == (5,)


# A fresh interpreter: the policy stage's driver and Ray's evaluation workers import only what
# they need, and a PointMaze id is unknown there until something imports gymnasium_robotics.
FRESH_POINTMAZE = """
import gymnasium, sys
from tge_ray.rl.evaluation import make_eval_env
from tge_ray.rl.train import action_box
assert "gymnasium_robotics" not in sys.modules
low, high = action_box("PointMaze_UMaze-v3", None)
envs = make_eval_env("PointMaze_UMaze-v3", 1, max_episode_steps=5)
single = gymnasium.make("PointMaze_UMaze-v3").observation_space
print(low.tolist(), high.tolist(), envs.single_observation_space.shape, gymnasium.spaces.flatdim(single))
"""


def test_pointmaze_envs_are_made_in_a_fresh_process_with_dict_observations_flattened():
    out = subprocess.run([sys.executable, "-c", FRESH_POINTMAZE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[-1.0,", "-1.0]", "[1.0,", "1.0]", "(8,)", "8"]


def random_hopper_transitions(n: int = 64) -> Transitions:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, 11))
    return Transitions(obs[:-1], rng.uniform(-1, 1, (n, 3)), rng.uniform(size=n), obs[1:],
                       np.zeros(n, np.float32))


def bc_actors(seeds=(0, 1, 2)) -> dict:
    transitions = random_hopper_transitions()
    table = TransitionTable.build(transitions, {"r": transitions.rewards}, -np.ones(3), np.ones(3))
    specs = [PolicySpec(BCConfig(hidden=16), s, PolicyData("r"), *transitions.observation_stats()) for s in seeds]
    return build_learner("bc", Problem(11, 3, -np.ones(3), np.ones(3), 10), specs, table).actor_state()


def test_batched_evaluation_equals_each_policy_alone():
    state = bc_actors()
    kwargs = dict(episodes=3, num_envs=2, max_episode_steps=12, **REF)
    batch = evaluate_policies(state, ENV, seeds=[10, 20, 30], step=4, **kwargs)
    assert len(batch) == 3 and all(r.step == 4 for r in batch)
    for policy, seed in enumerate((10, 20, 30)):
        alone = evaluate_policy(StackedPolicy(select_actor(state, [policy])).act, ENV, seed=seed, **kwargs)
        assert batch[policy].returns == pytest.approx(alone.returns) and batch[policy].lengths == alone.lengths


def test_evaluate_remote_through_ray(ray_session):
    state = bc_actors((0, 1))
    ref = evaluate_remote(state, ENV, episodes=2, num_envs=2, seeds=[0, 1], max_episode_steps=10, step=5, **REF)
    results = ray_session.get(ref)
    assert [r.step for r in results] == [5, 5] and all(len(r.returns) == 2 for r in results)
    local = evaluate_policies(state, ENV, episodes=2, num_envs=2, seeds=[0, 1], max_episode_steps=10, **REF)
    assert [r.returns for r in results] == [pytest.approx(r.returns) for r in local]


@pytest.mark.parametrize("use_ray", [True, False])
def test_train_policy_tiny(ray_session, tmp_path, use_ray):
    eval_cfg = EvaluationConfig(episodes=2, every=10, num_envs=2, max_episode_steps=10)
    reports = []
    result = train_policy("iql", IQLConfig(hidden=16, batch_size=16), eval_cfg, random_hopper_transitions(),
                          steps=20, env_id=ENV, env_kwargs={}, seed=0, checkpoint=tmp_path / "batch.pt",
                          progress=False, report=reports.append, log_every=5, use_ray=use_ray, **REF)
    assert result.learner == "iql" and result.steps == 20 and result.batch_size == 1
    assert [step for step, _ in result.eval_history] == [10, 20]
    assert [[r.step for r in rs] for rs in reports] == [[10], [20]]
    assert result.score == result.eval_history[-1][1] and math.isfinite(result.score)
    assert [m["step"] for m in result.metrics] == [5, 10, 15, 20]
    saved = torch.load(tmp_path / "batch.pt", weights_only=False)
    assert saved["complete"] and saved["learner"]["step"] == 20


def two_policy_batch():
    """Two tiny IQL policies for 30 updates, evaluated every 10 (specs, table, problem, evaluation)."""
    transitions = random_hopper_transitions()
    table = TransitionTable.build(transitions, {"r": transitions.rewards}, -np.ones(3), np.ones(3))
    specs = [PolicySpec(IQLConfig(hidden=16, batch_size=16), s, PolicyData("r"), *transitions.observation_stats())
             for s in (0, 1)]
    problem = Problem(11, 3, -np.ones(3), np.ones(3), 30)
    eval_cfg = EvaluationConfig(episodes=1, every=10, num_envs=1, max_episode_steps=5)
    return specs, table, problem, eval_cfg


def test_interrupted_batch_resumes_to_the_same_policies(tmp_path):
    specs, table, problem, eval_cfg = two_policy_batch()
    common = dict(env_id=ENV, env_kwargs={}, progress=False, use_ray=False, **REF)
    straight = train_batch("iql", specs, table, problem, eval_cfg, checkpoint=tmp_path / "a.pt", **common)

    def stop_at_20(results):
        if results[0].step == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_batch("iql", specs, table, problem, eval_cfg, checkpoint=tmp_path / "b.pt", report=stop_at_20, **common)
    assert not torch.load(tmp_path / "b.pt", weights_only=False)["complete"]
    resumed = train_batch("iql", specs, table, problem, eval_cfg, checkpoint=tmp_path / "b.pt", **common)
    assert resumed[0].steps == 20  # the first 10 came from the checkpoint written at step 10
    for a, b in zip(straight, resumed):
        assert a.eval_history == b.eval_history
        for key, value in a.actor_state["params"].items():
            assert torch.equal(value, b.actor_state["params"][key]), key


def test_a_complete_checkpoint_gives_its_results_without_training_again(tmp_path):
    """A batch stopped after its final checkpoint (before its artifacts were moved into place)."""
    specs, table, problem, eval_cfg = two_policy_batch()
    common = dict(env_id=ENV, env_kwargs={}, progress=False, use_ray=False, **REF)
    first = train_batch("iql", specs, table, problem, eval_cfg, checkpoint=tmp_path / "a.pt", **common)
    mtime = (tmp_path / "a.pt").stat().st_mtime_ns
    reports = []
    again = train_batch("iql", specs, table, problem, eval_cfg, checkpoint=tmp_path / "a.pt", report=reports.append,
                        **common)
    assert [r.steps for r in again] == [0, 0] and reports == []  # no update, no evaluation
    for a, b in zip(first, again):
        assert (a.eval_history, a.metrics, a.score) == (b.eval_history, b.metrics, b.score)
        for key, value in a.actor_state["params"].items():
            assert torch.equal(value, b.actor_state["params"][key]), key
    assert (tmp_path / "a.pt").stat().st_mtime_ns == mtime  # nothing to write again
    # not those policies: other hyper-parameters, rewards or evaluations
    other = [dataclasses.replace(spec, config=IQLConfig(hidden=16, batch_size=16, beta=1.0)) for spec in specs]
    transitions = random_hopper_transitions()
    rewards = TransitionTable.build(transitions, {"r": transitions.rewards + 1}, -np.ones(3), np.ones(3))
    for case in ((other, table, eval_cfg), (specs, rewards, eval_cfg), (specs, table, dataclasses.replace(eval_cfg, every=15))):
        shutil.copy(tmp_path / "a.pt", tmp_path / "b.pt")
        retrained = train_batch("iql", case[0], case[1], problem, case[2], checkpoint=tmp_path / "b.pt", **common)
        assert [r.steps for r in retrained] == [30, 30]


def test_a_batch_stopped_with_an_evaluation_in_flight_runs_it_again_on_resume(ray_session, tmp_path, monkeypatch):
    """Through Ray, the checkpoint at an evaluation step is written while that evaluation still
    runs; a batch stopped right then must not lose it (its history would skip the step)."""
    import tge_ray.rl.train as train

    specs, table, problem, eval_cfg = two_policy_batch()
    common = dict(env_id=ENV, env_kwargs={}, progress=False, use_ray=True, **REF)
    straight = train_batch("iql", specs, table, problem, eval_cfg, checkpoint=tmp_path / "a.pt", **common)

    real_save = train.torch_save

    def save_then_stop_at_20(data, path):
        real_save(data, path)
        if data["learner"]["step"] == 20:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "torch_save", save_then_stop_at_20)
    with pytest.raises(KeyboardInterrupt):
        train_batch("iql", specs, table, problem, eval_cfg, checkpoint=tmp_path / "b.pt", **common)
    monkeypatch.setattr(train, "torch_save", real_save)
    stopped = torch.load(tmp_path / "b.pt", weights_only=False)
    in_flight = [item["step"] for item in stopped["pending_evals"]]
    done = [r["step"] for r in stopped["eval_history"][0]]
    assert 20 in in_flight and sorted(done + in_flight) == [10, 20]
    resumed = train_batch("iql", specs, table, problem, eval_cfg, checkpoint=tmp_path / "b.pt", **common)
    assert [step for step, _ in resumed[0].eval_history] == [10, 20, 30]
    for a, b in zip(straight, resumed):
        assert a.eval_history == b.eval_history
