"""LfO task: the mix, the expert flags, disjoint demos, and the errors of bad requests."""

from __future__ import annotations

import numpy as np
import pytest

from tge_ray.data.minari_io import open_dataset
from tge_ray.data.task import build_task
from tge_ray.errors import DataError


def test_mix_flags_and_disjoint_demos(tiny_datasets):
    offline = open_dataset(tiny_datasets["offline"])
    expert = open_dataset(tiny_datasets["expert"])
    task = build_task(tiny_datasets["offline"], tiny_datasets["expert"], n_expert_trajs=3, n_demos=2)
    starts = expert.episode_starts
    n_mixed = starts[3]
    assert task.mixed.n_transitions == offline.n_transitions + n_mixed
    assert task.mixed.n_episodes == offline.n_episodes + 3
    assert task.expert_flags.sum() == n_mixed
    assert not task.expert_flags[: offline.n_transitions].any()
    np.testing.assert_array_equal(task.mixed.observations[offline.n_transitions :], expert.observations[:n_mixed])
    # D_E is the expert data's last two episodes (of 8): disjoint from the three mixed in.
    np.testing.assert_array_equal(task.demo_observations, expert.observations[starts[6] : starts[8]])
    assert set(np.unique(task.demo_episode_ids)) == {0, 1}
    assert task.summary()["demo_episodes"] == [6, 7]
    # Episode ids of D_mu stay contiguous and increasing.
    assert (np.diff(task.mixed.episode_ids) >= 0).all()
    assert task.mixed.episode_ids[-1] == task.mixed.n_episodes - 1
    # Standardisation uses D_mu's statistics.
    standardized = task.standardize(task.mixed.observations)
    np.testing.assert_allclose(standardized.mean(axis=0), 0.0, atol=1e-4)


def test_demos_last_are_the_same_for_every_n_and_next_follow_the_mix(tiny_datasets):
    expert = open_dataset(tiny_datasets["expert"])
    starts = expert.episode_starts
    demos = {n: build_task(tiny_datasets["offline"], tiny_datasets["expert"], n_expert_trajs=n, n_demos=1)
             for n in (0, 3, 7)}
    for n, task in demos.items():
        np.testing.assert_array_equal(task.demo_observations, expert.observations[starts[7] : starts[8]], err_msg=f"N={n}")
    following = build_task(tiny_datasets["offline"], tiny_datasets["expert"], n_expert_trajs=3, n_demos=2, demos="next")
    np.testing.assert_array_equal(following.demo_observations, expert.observations[starts[3] : starts[5]])
    assert following.summary()["demo_episodes"] == [3, 4]
    with pytest.raises(DataError, match="task.demos='first' is not allowed"):
        build_task(tiny_datasets["offline"], tiny_datasets["expert"], n_expert_trajs=3, n_demos=1, demos="first")


def test_zero_expert_trajectories_is_disjoint_support(tiny_datasets):
    task = build_task(tiny_datasets["offline"], tiny_datasets["expert"], n_expert_trajs=0, n_demos=1)
    assert not task.expert_flags.any()
    assert task.demo_observations.shape[0] > 0


@pytest.mark.parametrize(
    ("n_expert", "n_demos", "message"),
    [(8, 1, "exceeds the 8 episodes"), (2, 0, "at least one demo")],
)
def test_bad_requests(tiny_datasets, n_expert, n_demos, message):
    with pytest.raises(DataError, match=message):
        build_task(tiny_datasets["offline"], tiny_datasets["expert"], n_expert_trajs=n_expert, n_demos=n_demos)


def test_different_observation_spaces_are_rejected(tiny_datasets):
    from tests.conftest import write_minari_dataset

    write_minari_dataset("test/halfcheetah/random-v0", env_id="HalfCheetah-v5", episodes=1, max_steps=5)
    with pytest.raises(DataError, match="observation spaces differ"):
        build_task(tiny_datasets["offline"], "test/halfcheetah/random-v0", n_expert_trajs=0, n_demos=1)
