"""Evaluation rollouts (inline and as a Ray task) and the tiny end-to-end policy training."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
import torch

from tge_ray.config import EvaluationConfig, IQLConfig, RLConfig
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.evaluation import evaluate_policy, evaluate_remote, make_eval_env, normalized_score
from tge_ray.rl.learner import make_learner
from tge_ray.rl.train import train_policy

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


def test_dict_observations_are_flattened():
    import gymnasium_robotics

    gymnasium.register_envs(gymnasium_robotics)
    envs = make_eval_env("PointMaze_UMaze-v3", 1, max_episode_steps=5)
    try:
        single = gymnasium.make("PointMaze_UMaze-v3").observation_space
        assert envs.single_observation_space.shape == (gymnasium.spaces.flatdim(single),)
    finally:
        envs.close()


def random_hopper_transitions(n: int = 64) -> Transitions:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, 11))
    return Transitions(obs[:-1], rng.uniform(-1, 1, (n, 3)), rng.uniform(size=n), obs[1:],
                       np.zeros(n, np.float32))


def test_evaluate_remote_through_ray(ray_session):
    transitions = random_hopper_transitions()
    learner = make_learner("bc", RLConfig(bc_hidden=16), 11, 3, -np.ones(3), np.ones(3),
                           *transitions.observation_stats())
    ref = evaluate_remote(learner.actor_state(), ENV, episodes=2, num_envs=2, seed=0,
                          max_episode_steps=10, step=5, **REF)
    result = ray_session.get(ref)
    assert result.step == 5 and len(result.returns) == 2 and math.isfinite(result.score)
    local = evaluate_policy(learner.act, ENV, episodes=2, num_envs=2, seed=0, max_episode_steps=10, **REF)
    assert result.returns == pytest.approx(local.returns)


@pytest.mark.parametrize("use_ray", [True, False])
def test_train_policy_tiny(ray_session, tmp_path, use_ray):
    rl_cfg = RLConfig(steps=20, iql=IQLConfig(hidden=16, batch_size=16))
    eval_cfg = EvaluationConfig(episodes=2, every=10, num_envs=2, max_episode_steps=10)
    reports = []
    result = train_policy("oracle", rl_cfg, eval_cfg, random_hopper_transitions(), env_id=ENV, env_kwargs={},
                          seed=0, out_dir=tmp_path, progress=False, report=reports.append, log_every=5,
                          use_ray=use_ray, **REF)
    assert result.method == "iql" and result.steps == 20
    assert [step for step, _ in result.eval_history] == [10, 20]
    assert [r["step"] for r in reports] == [10, 20]
    assert result.score == result.eval_history[-1][1] and math.isfinite(result.score)
    assert [m["step"] for m in result.metrics] == [5, 10, 15, 20]
    saved = torch.load(result.checkpoint, weights_only=True)
    assert saved["complete"] and saved["learner"]["step"] == 20
