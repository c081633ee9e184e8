"""Learners on random data of Hopper's shapes: metrics, acting, the registry, per-learner rules."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from tge_ray.config import BCConfig, IQLConfig, ReBRACConfig
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.learner import PolicySpec, Problem
from tge_ray.rl.nets import StackedPolicy
from tge_ray.rl.registry import learner_entry, learner_names
from tge_ray.rl.table import PolicyData, TransitionTable
from tge_ray.rl.train import build_learner

OBS, ACT = 11, 3
KEYS = {
    "iql": {"value_loss", "q_loss", "actor_loss", "q_mean", "adv_mean"},
    "rebrac": {"critic_loss", "q_mean", "actor_loss", "bc_mse", "bc_weight_max"},
    "bc": {"bc_loss"},
}
CONFIGS = {"iql": IQLConfig(hidden=16, batch_size=8), "rebrac": ReBRACConfig(hidden=16, batch_size=8),
           "bc": BCConfig(hidden=16, batch_size=8)}


@pytest.fixture(scope="module")
def transitions() -> Transitions:
    rng = np.random.default_rng(0)
    n = 64
    obs = rng.normal(size=(n + 1, OBS)) * 3 + 1
    return Transitions(obs[:-1], rng.uniform(-1, 1, (n, ACT)), rng.uniform(0, 1, n), obs[1:],
                       (np.arange(n) == n - 1).astype(np.float32))


def build(name, transitions, cfg=None, seeds=(0,), low=-1.0, high=1.0, steps=10, rewards=None):
    low, high = np.full(ACT, low, np.float32), np.full(ACT, high, np.float32)
    table = TransitionTable.build(transitions, {"r": transitions.rewards if rewards is None else rewards}, low, high)
    specs = [PolicySpec(cfg or CONFIGS[name], seed, PolicyData("r"), *transitions.observation_stats()) for seed in seeds]
    return build_learner(name, Problem(OBS, ACT, low, high, steps), specs, table)


def test_registry_knows_every_learner_and_its_section():
    assert set(learner_names()) >= {"iql", "rebrac", "bc"}
    assert learner_entry("iql").section == "rl.iql" and learner_entry("bc").config_type is BCConfig
    with pytest.raises(ValueError, match="unknown learner 'sac'.*registered learners are"):
        learner_entry("sac")


@pytest.mark.parametrize("name", ["iql", "rebrac", "bc"])
def test_update_gives_finite_metrics_per_policy(name, transitions):
    learner = build(name, transitions, seeds=(0, 1))
    learner.run(3)
    rows = learner.metrics()
    assert len(rows) == 2 and learner.step == 3
    for row in rows:
        assert set(row) == KEYS[name]
        assert all(isinstance(v, float) and math.isfinite(v) for v in row.values())


@pytest.mark.parametrize("name", ["iql", "rebrac", "bc"])
def test_actor_state_acts_like_the_learner(name, transitions):
    learner = build(name, transitions, seeds=(0, 1), low=-2.0, high=3.0)
    learner.run(2)
    policy = StackedPolicy(learner.actor_state())
    obs = np.stack([transitions.observations[:5], transitions.observations[5:10]])  # (P=2, 5, obs)
    actions = policy.act(obs)
    assert actions.shape == (2, 5, ACT) and np.all(actions >= -2.0) and np.all(actions <= 3.0)
    # by hand: normalise with the policy's statistics, run its MLP, map tanh into [-2, 3]
    from tge_ray.rl.stacked import mlp_forward

    shape, params = learner.actor_params()
    mean, std = transitions.observation_stats()
    unit = mlp_forward(params, "actor", shape, torch.as_tensor((obs - mean) / std, dtype=torch.float32))
    np.testing.assert_allclose(actions, 0.5 + 2.5 * unit.detach().numpy(), rtol=1e-5, atol=1e-6)
    one = StackedPolicy(learner.actor_state([1]))
    np.testing.assert_allclose(one.act(obs[1]), actions[1], rtol=1e-6)
    assert one.act(obs[1, 0]).shape == (ACT,)


def test_adaptive_bc_weights_use_each_policys_reward_range(transitions):
    rewards = np.linspace(-1.0, 3.0, len(transitions)).astype(np.float32)
    learner = build("rebrac", transitions, rewards=rewards)
    assert learner.reward_low.item() == pytest.approx(-1.0) and learner.reward_high.item() == pytest.approx(3.0)
    coef = learner.bc_coefficients(torch.tensor([[-1.0, 3.0]]))  # r~ = [0, 1], mean 0.5
    assert coef.tolist()[0] == pytest.approx([0.01 / 1.5, 0.02 / 1.5])
    fixed = build("rebrac", transitions, cfg=dataclasses.replace(CONFIGS["rebrac"], adaptive_bc=False))
    assert fixed.bc_coefficients(torch.rand(1, 5)).tolist() == [[pytest.approx(0.01)]]
    sharp = build("rebrac", transitions, rewards=rewards,
                  cfg=dataclasses.replace(CONFIGS["rebrac"], bc_sharpness=math.log(3.0)))
    assert sharp.bc_coefficients(torch.tensor([[-1.0, 3.0]])).tolist()[0] == pytest.approx([0.005, 0.015])


def test_rebrac_updates_its_actor_every_policy_freq(transitions):
    learner = build("rebrac", transitions)
    actor = {k: v.clone() for k, v in learner.params.items() if k.startswith("actor.")}
    learner.run(1)  # step 0: critic and actor
    moved = {k: v.clone() for k, v in learner.params.items() if k.startswith("actor.")}
    assert any(not torch.equal(actor[k], moved[k]) for k in actor)
    learner.run(1)  # step 1: critic only
    assert all(torch.equal(moved[k], learner.params[k]) for k in moved)


def test_rebrac_s_targets_follow_the_actor_before_its_step_and_the_critics_after_theirs(transitions):
    """CORL's update_actor: the target actor moves towards the actor's parameters before the
    actor's step, the target critics towards the critics after this update's critic step."""
    learner = build("rebrac", transitions, cfg=dataclasses.replace(CONFIGS["rebrac"], tau=0.3), seeds=(0, 1))
    before = {k: v.clone() for k, v in learner.params.items()}
    targets = {k: v.clone() for k, v in learner.targets.items()}
    learner.run(1)  # step 0: critic step, actor step, both targets
    for name in learner.actor_names:
        assert not torch.equal(before[name], learner.params[name])
        assert torch.equal(learner.targets[name], targets[name].lerp(before[name], learner.tau_actor))
    for name in learner.critic_names:
        assert not torch.equal(before[name], learner.params[name])
        assert torch.equal(learner.targets[name], targets[name].lerp(learner.params[name], learner.tau_critic))


def test_gaussian_actor_learns_its_log_std(transitions):
    learner = build("iql", transitions, cfg=dataclasses.replace(CONFIGS["iql"], actor="gaussian"))
    assert learner.params["log_std"].shape == (1, 1, ACT)
    learner.run(3)
    assert not torch.equal(learner.params["log_std"], torch.zeros(1, 1, ACT))
    assert "log_std" not in learner.actor_params()[1]  # acting uses the mean
