"""Learners on random data of Hopper's shapes: metrics, acting, seeding, stop-and-resume."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from tge_ray.config import IQLConfig, ReBRACConfig, RLConfig
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.learner import make_learner
from tge_ray.rl.nets import EnsembleMLP, TanhPolicy, mlp

OBS, ACT = 11, 3
KEYS = {
    "iql": {"value_loss", "q_loss", "actor_loss", "q_mean", "adv_mean"},
    "rebrac": {"critic_loss", "q_mean", "actor_loss", "bc_mse", "bc_weight_max"},
    "bc": {"bc_loss"},
}


def tiny_cfg(**rebrac: object) -> RLConfig:
    return RLConfig(
        steps=10,
        iql=IQLConfig(hidden=16, batch_size=8),
        rebrac=ReBRACConfig(hidden=16, batch_size=8, **rebrac),
        bc_hidden=16,
        bc_batch_size=8,
    )


@pytest.fixture(scope="module")
def transitions() -> Transitions:
    rng = np.random.default_rng(0)
    n = 64
    obs = rng.normal(size=(n + 1, OBS)) * 3 + 1
    return Transitions(
        observations=obs[:-1],
        actions=rng.uniform(-1, 1, (n, ACT)),
        rewards=rng.uniform(0, 1, n),
        next_observations=obs[1:],
        terminals=(np.arange(n) == n - 1).astype(np.float32),
    )


def build(method: str, transitions: Transitions, seed: int = 0, cfg: RLConfig | None = None):
    learner = make_learner(method, cfg or tiny_cfg(), OBS, ACT, -np.ones(ACT), np.ones(ACT),
                           *transitions.observation_stats(), seed=seed)
    return learner, learner.make_sampler(transitions)


def weights(learner) -> dict[str, torch.Tensor]:
    return {f"{m}.{k}": v.clone() for m, mod in learner._modules.items() for k, v in mod.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("method", ["iql", "rebrac", "bc"])
def test_update_returns_finite_floats(method, transitions):
    learner, sampler = build(method, transitions)
    for _ in range(3):
        metrics = learner.update(sampler.sample())
    assert set(metrics) == KEYS[method]
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert learner.step == 3
    actions = learner.act(transitions.observations[:5])
    assert actions.shape == (5, ACT) and np.all(np.abs(actions) <= 1)
    assert learner.act(transitions.observations[0]).shape == (ACT,)


@pytest.mark.parametrize("method,bc_schedule", [("iql", None), ("rebrac", None), ("bc", "constant"), ("bc", "cosine")])
def test_resume_equals_uninterrupted(method, bc_schedule, transitions):
    cfg = dataclasses.replace(tiny_cfg(), bc_lr_schedule=bc_schedule) if bc_schedule else tiny_cfg()
    straight, straight_sampler = build(method, transitions, cfg=cfg)
    for _ in range(5):
        straight.update(straight_sampler.sample())

    first, first_sampler = build(method, transitions, cfg=cfg)
    for _ in range(3):  # odd: ReBRAC resumes between a critic-only and an actor step
        first.update(first_sampler.sample())
    buffer = io.BytesIO()
    torch.save({"learner": first.state_dict(), "sampler": first_sampler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed, resumed_sampler = build(method, transitions, seed=123, cfg=cfg)  # overwritten by the load
    resumed.load_state_dict(saved["learner"])
    resumed_sampler.load_state_dict(saved["sampler"])
    for _ in range(2):
        resumed.update(resumed_sampler.sample())
    assert resumed.step == straight.step == 5
    assert_same(weights(straight), weights(resumed))
    for a, b in zip(straight._optimizers.values(), resumed._optimizers.values()):
        assert [g["lr"] for g in a.param_groups] == [g["lr"] for g in b.param_groups]


@pytest.mark.parametrize("method", ["iql", "rebrac"])
def test_same_seed_same_weights(method, transitions):
    runs = []
    for seed in (7, 7, 8):
        learner, sampler = build(method, transitions, seed=seed)
        for _ in range(3):
            learner.update(sampler.sample())
        runs.append(weights(learner))
    assert_same(runs[0], runs[1])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_actor_state_rebuilds_policy(transitions):
    learner, sampler = build("rebrac", transitions)
    learner.update(sampler.sample())
    policy = TanhPolicy.from_state(learner.actor_state())
    obs = transitions.observations[:4]
    np.testing.assert_array_equal(policy.act(obs), learner.act(obs))


def test_act_maps_into_action_box(transitions):
    low, high = np.array([-2.0, 0.0, 1.0]), np.array([2.0, 1.0, 3.0])
    learner = make_learner("bc", tiny_cfg(), OBS, ACT, low, high, *transitions.observation_stats())
    actions = learner.act(transitions.observations)
    assert np.all(actions >= low) and np.all(actions <= high)


def test_adaptive_bc_switch(transitions):
    fixed, _ = build("rebrac", transitions, cfg=tiny_cfg(adaptive_bc=False))
    assert fixed.bc_coefficients(torch.rand(5)) == fixed.cfg.actor_bc_coef
    adaptive, _ = build("rebrac", transitions)
    coef = adaptive.bc_coefficients(torch.tensor([0.0, 1.0]))
    assert coef.tolist() == pytest.approx([0.01 / 1.5, 0.02 / 1.5])
    sharp, _ = build("rebrac", transitions, cfg=tiny_cfg(bc_sharpness=math.log(3.0)))
    coef = sharp.bc_coefficients(torch.tensor([0.0, 1.0]))  # [1, 3] / 2
    assert coef.tolist() == pytest.approx([0.005, 0.015])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_bc_lr_schedule(schedule, transitions):
    cfg = dataclasses.replace(tiny_cfg(), bc_lr_schedule=schedule)  # 10 updates
    learner, sampler = build("bc", transitions, cfg=cfg)
    used = []
    for _ in range(cfg.steps):
        learner.update(sampler.sample())
        used.append(learner.optimizer.param_groups[0]["lr"])  # the rate the update just used
    if schedule == "constant":
        assert used == [cfg.bc_lr] * cfg.steps
    else:
        assert used[0] == cfg.bc_lr and all(a > b for a, b in zip(used, used[1:]))
        assert used[-1] == pytest.approx(cfg.bc_lr * 0.5 * (1 + math.cos(math.pi * 0.9)))


def test_filtered_bc_has_its_own_learning_rate(transitions):
    cfg = tiny_cfg()
    assert cfg.fbc.lr != cfg.bc_lr
    for method, lr in (("bc", cfg.bc_lr), ("fbc", cfg.fbc.lr)):
        learner, _ = build(method, transitions, cfg=cfg)
        assert learner.optimizer.param_groups[0]["lr"] == lr, method


def test_unknown_method(transitions):
    with pytest.raises(ValueError, match="unknown learner"):
        make_learner("sac", tiny_cfg(), OBS, ACT, -1, 1, *transitions.observation_stats())


def test_next_actions_from_row_order(transitions):
    filled = transitions.with_next_actions()
    np.testing.assert_array_equal(filled.next_actions[:-1], transitions.actions[1:])
    np.testing.assert_array_equal(filled.next_actions[-1], transitions.actions[-1])


def test_ensemble_matches_separate_mlps():
    torch.manual_seed(0)
    ensemble = EnsembleMLP(5, 8, 3, members=2, layer_norm=True)
    x = torch.randn(4, 5)
    out = ensemble(x)
    for member in range(2):
        net = mlp(5, 1, 8, 3, layer_norm=True)
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        norms = [m for m in net if isinstance(m, torch.nn.LayerNorm)]
        with torch.no_grad():
            linears[0].weight.copy_(ensemble.first_weight[:, member * 8 : (member + 1) * 8].T)
            linears[0].bias.copy_(ensemble.first_bias[member * 8 : (member + 1) * 8])
            for lin, w, b in zip(linears[1:-1], ensemble.weights, ensemble.biases):
                lin.weight.copy_(w[member].T)
                lin.bias.copy_(b[member, 0])
            linears[-1].weight.copy_(ensemble.last_weight[member].T)
            linears[-1].bias.copy_(ensemble.last_bias[member, 0])
            for norm, scale, shift in zip(norms, ensemble.norm_scales, ensemble.norm_shifts):
                norm.weight.copy_(scale[member, 0])
                norm.bias.copy_(shift[member, 0])
        torch.testing.assert_close(out[member], net(x).squeeze(-1))
