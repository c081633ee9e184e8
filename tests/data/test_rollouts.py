"""Rollouts over worker processes: the seed, the size and the worker count fix the data."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from tge_ray.data import make, rollouts
from tge_ray.errors import DataError


def test_rollouts_over_two_worker_processes_are_fixed_by_the_seed():
    task, size = make.TASKS["hopper"], 2 * rollouts.STEPS_PER_WORKER  # just enough for two workers
    spec = make.PolicySpec("hopper", "random", gym.make(task.env_id).action_space)
    first = rollouts.collect_parallel(task, spec, seed=5, size=size, workers=2, progress=False)
    again = rollouts.collect_parallel(task, spec, seed=5, size=size, workers=2, progress=False)
    assert sum(len(b.actions) for b in first) == size
    assert [b.id for b in first] == list(range(len(first)))
    assert all(np.array_equal(a.observations, b.observations) and np.array_equal(a.actions, b.actions)
               for a, b in zip(first, again, strict=True))
    # Env i of the whole set is reset with seed + i, whichever worker steps it: the second
    # worker's envs (4..7 of 8) start where single envs reset with seeds 9..12 start.
    starts = {tuple(np.round(b.observations[0], 12)) for b in first}
    for i in range(task.num_envs):
        assert tuple(np.round(gym.make(task.env_id).reset(seed=5 + i)[0], 12)) in starts
    with pytest.raises(DataError, match="workers=0 must be >= 1"):
        rollouts.collect_parallel(task, spec, seed=5, size=size, workers=0, progress=False)
