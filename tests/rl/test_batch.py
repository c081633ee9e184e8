"""The policy axis: a policy trained in a batch equals the same policy trained alone.

With one intra-op thread the equality is bit for bit: every op of an update either acts on each
policy's slice alone or reduces along the batch axis within one policy. With more threads, CPU
reductions and BLAS may split a single policy's sums differently by batch shape, so the same
weights agree to float32 rounding (checked at rtol 1e-4 after a few updates). With the hidden
layers' products in bfloat16 (``matmul: bf16``, the ``-bf16`` rows) the one-thread equality and
resume hold too.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tge_ray.config import BCConfig, IQLConfig, ReBRACConfig
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.learner import PolicySpec, Problem
from tge_ray.rl.table import PolicyData, TransitionTable
from tge_ray.rl.train import build_learner

OBS, ACT = 11, 3
CONFIGS = {
    "iql": IQLConfig(hidden=32, batch_size=16),
    "iql-gaussian": IQLConfig(hidden=32, batch_size=16, actor="gaussian"),
    "rebrac": ReBRACConfig(hidden=32, batch_size=16),
    "bc": BCConfig(hidden=32, batch_size=16),
    "iql-bf16": IQLConfig(hidden=32, batch_size=16, matmul="bf16"),  # bfloat16 hidden-layer products
    "rebrac-bf16": ReBRACConfig(hidden=32, batch_size=16, matmul="bf16"),
}


@pytest.fixture(scope="module")
def data() -> tuple[Transitions, TransitionTable]:
    rng = np.random.default_rng(0)
    n = 300
    obs = rng.normal(size=(n + 1, OBS)) * 3 + 1
    transitions = Transitions(obs[:-1], rng.uniform(-1, 1, (n, ACT)), rng.uniform(size=n), obs[1:],
                              (np.arange(n) % 50 == 49).astype(np.float32))
    table = TransitionTable.build(transitions, {"a": rng.uniform(size=n), "b": rng.uniform(-1, 2, size=n)},
                                  -np.ones(ACT), np.ones(ACT))
    return transitions, table


def make(name: str, data, seeds, columns, rows=None, configs=None, steps=50):
    transitions, table = data
    rows = rows or [None] * len(seeds)
    configs = configs or [CONFIGS[name]] * len(seeds)
    specs = []
    for cfg, seed, column, subset in zip(configs, seeds, columns, rows):
        stats = (transitions if subset is None else transitions.subset(subset)).observation_stats()
        specs.append(PolicySpec(cfg, seed, PolicyData(column, subset), *stats))
    return build_learner(name.split("-")[0], Problem(OBS, ACT, -np.ones(ACT), np.ones(ACT), steps), specs, table)


def member(learner, policy: int) -> dict[str, torch.Tensor]:
    """Policy ``policy``'s slice of every parameter, target and optimiser moment."""
    out = {}
    for group, tensors in (("p", learner.params), ("t", learner.targets)):
        for key, value in tensors.items():
            per = value.shape[0] // learner.n_policies
            out[f"{group}.{key}"] = value[policy * per : (policy + 1) * per]
    for opt_name, opt in learner.optimizers.items():
        for key, value in opt.exp_avg_sq.items():
            per = value.shape[0] // learner.n_policies
            out[f"v.{opt_name}.{key}"] = value[policy * per : (policy + 1) * per]
    return out


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_batched_policy_equals_alone_bit_for_bit(name, data, one_thread):
    subset = np.arange(0, 300, 3)  # one policy on a subset of rows (filtered BC's case)
    alone = make(name, data, [5], ["b"], [subset])
    batch = make(name, data, [3, 5, 9], ["a", "b", "a"], [None, subset, None])
    alone.run(5)  # odd: ReBRAC ends between an actor and a critic-only update
    batch.run(5)
    mine, theirs = member(alone, 0), member(batch, 1)
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    assert alone.metrics()[0] == batch.metrics()[1]


@pytest.mark.parametrize("name", ["iql", "rebrac"])
def test_batched_policy_equals_alone_within_rounding_on_two_threads(name, data):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        alone = make(name, data, [5], ["b"])
        batch = make(name, data, [3, 5, 9], ["a", "b", "a"])
        alone.run(4)
        batch.run(4)
    finally:
        torch.set_num_threads(threads)
    mine, theirs = member(alone, 0), member(batch, 1)
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize("name, own", [
    ("iql", {"beta": 10.0, "lr": 1e-3, "expectile": 0.9, "tau": 0.01}),
    ("rebrac", {"actor_lr": 3e-4, "critic_lr": 3e-4, "actor_bc_coef": 0.1, "critic_bc_coef": 0.05, "tau": 0.01}),
])
def test_per_policy_hyper_parameters(data, one_thread, name, own):
    """A policy with its own per-policy values in a batch equals it alone with that config."""
    base = CONFIGS[name]
    other = dataclasses.replace(base, **own)
    alone = make(name, data, [2], ["a"], configs=[other])
    batch = make(name, data, [1, 2], ["a", "a"], configs=[base, other])
    alone.run(4)
    batch.run(4)
    mine, theirs = member(alone, 0), member(batch, 1)
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    first = make(name, data, [1], ["a"], configs=[base])
    first.run(4)
    assert any(not torch.equal(member(first, 0)[k], member(batch, 1)[k]) for k in mine)


def test_policies_of_a_batch_must_share_the_rest(data):
    with pytest.raises(ValueError, match="differ in 'hidden'"):
        make("iql", data, [0, 1], ["a", "a"], configs=[CONFIGS["iql"], dataclasses.replace(CONFIGS["iql"], hidden=64)])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_resume_equals_uninterrupted(name, data):
    straight = make(name, data, [0, 1], ["a", "b"])
    straight.run(5)
    first = make(name, data, [0, 1], ["a", "b"])
    first.run(3)
    state = first.state_dict()
    resumed = make(name, data, [0, 1], ["a", "b"])
    resumed.load_state_dict(state)
    resumed.run(2)
    assert resumed.step == straight.step == 5
    a, b = member(straight, 1), member(resumed, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="seeds"):
        make(name, data, [7, 1], ["a", "b"]).load_state_dict(state)


def test_same_seed_same_policy_other_seed_another(data):
    runs = []
    for seed in (7, 7, 8):
        learner = make("rebrac", data, [seed], ["a"])
        learner.run(3)
        runs.append(member(learner, 0))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])
