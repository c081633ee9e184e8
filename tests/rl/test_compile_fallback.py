"""A learner whose compile fails (no C++ compiler) falls back to eager and trains the same.

The default (``resources.compile=cpu``) compiles long CPU runs, and a fresh machine may lack the
compiler Inductor needs. The check runs in a child process whose ``CXX`` names no compiler and
whose Inductor cache is empty (a cached program would skip the compiler): its compiled BC learner
must warn once, train on eagerly, and end bit for bit where an eager learner with the same seed
ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import logging
    import numpy as np
    import torch
    from tge_ray.config import BCConfig
    from tge_ray.rl.buffer import Transitions
    from tge_ray.rl.learner import PolicySpec, Problem
    from tge_ray.rl.table import PolicyData, TransitionTable
    from tge_ray.rl.train import build_learner

    logging.basicConfig(level=logging.WARNING, format="WARNING %(message)s")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n, obs_dim, act_dim = 200, 5, 2
    obs = rng.normal(size=(n + 1, obs_dim))
    transitions = Transitions(obs[:-1], rng.uniform(-1, 1, (n, act_dim)), rng.uniform(size=n), obs[1:],
                              np.zeros(n, np.float32))
    table = TransitionTable.build(transitions, {"r": rng.uniform(size=n)}, -np.ones(act_dim), np.ones(act_dim))
    spec = PolicySpec(BCConfig(hidden=16, batch_size=8), 3, PolicyData("r", None), *transitions.observation_stats())
    problem = Problem(obs_dim, act_dim, -np.ones(act_dim), np.ones(act_dim), 10)
    learners = {mode: build_learner("bc", problem, [spec], table, compile=mode) for mode in (None, "default")}
    for learner in learners.values():
        learner.run(4)
    eager, fallen = learners[None], learners["default"]
    print("mode after the first update:", fallen.compile)
    print("equal:", all(torch.equal(eager.params[k], fallen.params[k]) for k in eager.params))
    """
)


def test_a_failed_compile_falls_back_to_eager(tmp_path):
    env = {**os.environ, "CXX": "/nonexistent/c++", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    warnings = [line for line in output.splitlines() if "torch.compile failed" in line]
    assert len(warnings) == 1, output[-3000:]
    assert "No working C++ compiler" in warnings[0] and "running eager" in warnings[0]
    assert "mode after the first update: None" in output
    assert "equal: True" in output


def test_an_update_dynamo_cannot_trace_falls_back_to_eager(caplog):
    # Another torch release may fail to trace an update: the first call warns, and the learner
    # trains on eagerly from the unchanged state. Here an explicit graph break (which the
    # learner's fullgraph=True refuses) stands in for such an op.
    import logging

    import numpy as np
    import torch

    from tge_ray.config import BCConfig
    from tge_ray.rl.buffer import Transitions
    from tge_ray.rl.learner import PolicySpec, Problem
    from tge_ray.rl.table import PolicyData, TransitionTable
    from tge_ray.rl.train import build_learner

    rng = np.random.default_rng(0)
    n, obs_dim, act_dim = 200, 5, 2
    obs = rng.normal(size=(n + 1, obs_dim))
    transitions = Transitions(obs[:-1], rng.uniform(-1, 1, (n, act_dim)), rng.uniform(size=n), obs[1:],
                              np.zeros(n, np.float32))
    table = TransitionTable.build(transitions, {"r": rng.uniform(size=n)}, -np.ones(act_dim), np.ones(act_dim))
    spec = PolicySpec(BCConfig(hidden=16, batch_size=8), 3, PolicyData("r", None), *transitions.observation_stats())
    problem = Problem(obs_dim, act_dim, -np.ones(act_dim), np.ones(act_dim), 10)
    learners = {}
    for mode in (None, "default"):
        learner = build_learner("bc", problem, [spec], table, compile=mode)
        update = learner._update

        def untraceable(phase, update=update):
            torch._dynamo.graph_break()  # nothing eagerly
            return update(phase)

        learner._update = untraceable
        learners[mode] = learner
    with caplog.at_level(logging.WARNING, logger="tge_ray.rl.learner"):
        for learner in learners.values():
            learner.run(4)
    warnings = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(warnings) == 1 and "running eager. Set resources.compile=false" in warnings[0], warnings
    eager, fallen = learners[None], learners["default"]
    assert fallen.compile is None
    assert all(torch.equal(eager.params[k], fallen.params[k]) for k in eager.params)
