"""Small BC learners for the compile tests, importable by their child processes too."""

from __future__ import annotations


def bc_learners(modes, n=200, hidden=16):
    """One BC learner per update mode in ``modes``, same data (``n`` transitions), seed and config."""
    import numpy as np

    from tge_ray.config import BCConfig
    from tge_ray.rl.buffer import Transitions
    from tge_ray.rl.learner import PolicySpec, Problem
    from tge_ray.rl.table import PolicyData, TransitionTable
    from tge_ray.rl.train import build_learner

    rng = np.random.default_rng(0)
    obs_dim, act_dim = 5, 2
    obs = rng.normal(size=(n + 1, obs_dim))
    transitions = Transitions(obs[:-1], rng.uniform(-1, 1, (n, act_dim)), rng.uniform(size=n), obs[1:],
                              np.zeros(n, np.float32))
    table = TransitionTable.build(transitions, {"r": rng.uniform(size=n)}, -np.ones(act_dim), np.ones(act_dim))
    spec = PolicySpec(BCConfig(hidden=hidden, batch_size=8), 3, PolicyData("r", None), *transitions.observation_stats())
    problem = Problem(obs_dim, act_dim, -np.ones(act_dim), np.ones(act_dim), 10)
    return {mode: build_learner("bc", problem, [spec], table, compile=mode) for mode in modes}


def same_params(a, b) -> bool:
    import torch

    return all(torch.equal(a.params[k], b.params[k]) for k in a.params)
