"""Minari data layer: round trip, cache, flattening, clear errors."""

from __future__ import annotations

import minari
import numpy as np
import pytest

from tests.conftest import write_minari_dataset
from tge_ray.data.minari_io import flatten_observations, list_datasets, open_dataset
from tge_ray.errors import DataError


def test_round_trip_matches_minari_episodes(tiny_datasets):
    data = open_dataset(tiny_datasets["offline"])
    reference = minari.load_dataset(tiny_datasets["offline"])
    starts = data.episode_starts
    assert data.n_episodes == reference.total_episodes == 6
    assert data.n_transitions == reference.total_steps
    for number, episode in enumerate(reference.iterate_episodes()):
        rows = slice(starts[number], starts[number + 1])
        np.testing.assert_array_equal(data.observations[rows], episode.observations[:-1].astype(np.float32))
        np.testing.assert_array_equal(data.next_observations[rows], episode.observations[1:].astype(np.float32))
        np.testing.assert_array_equal(data.actions[rows], episode.actions.astype(np.float32))
        np.testing.assert_array_equal(data.terminals[rows], episode.terminations)
        np.testing.assert_array_equal(data.timeouts[rows], episode.truncations)
        assert data.episode_returns[number] == pytest.approx(episode.rewards.sum(), rel=1e-5)
        assert (data.episode_ids[rows] == number).all()
    assert data.ref_min_score == -20.0 and data.ref_max_score == 3000.0
    assert data.eval_env_spec.id == "Hopper-v5"


def test_second_open_reads_cache(tiny_datasets, minari_root):
    first = open_dataset(tiny_datasets["offline"])
    caches = list((minari_root.parent).rglob("*.npz"))
    assert caches, "the first open writes a flat-array cache"
    second = open_dataset(tiny_datasets["offline"])
    np.testing.assert_array_equal(first.observations, second.observations)
    np.testing.assert_array_equal(first.episode_ids, second.episode_ids)


def test_list_datasets_shows_sizes_and_scores(tiny_datasets):
    rows = {row["id"]: row for row in list_datasets()}
    assert rows[tiny_datasets["offline"]]["episodes"] == 6
    assert rows[tiny_datasets["offline"]]["size_mb"] > 0
    assert rows[tiny_datasets["offline"]]["ref_max_score"] == 3000.0


def test_dict_observations_flatten_in_gymnasium_order():
    import gymnasium as gym

    space = gym.spaces.Dict(
        {"b": gym.spaces.Box(-1, 1, (2,)), "a": gym.spaces.Box(-1, 1, (1,))}
    )
    observations = {"b": np.array([[1.0, 2.0], [3.0, 4.0]]), "a": np.array([[9.0], [8.0]])}
    flat = flatten_observations(observations, space)
    expected = np.stack([gym.spaces.flatten(space, {k: v[i] for k, v in observations.items()}) for i in range(2)])
    np.testing.assert_array_equal(flat, expected.astype(np.float32))


@pytest.mark.parametrize(
    ("dataset_id", "message"),
    [
        ("not an id!", "malformed dataset id"),
        ("test/hopper/missing-v0", "not found in"),
        ("tge/hopper/missing-v0", "tge data make tge/hopper/missing-v0"),
    ],
)
def test_bad_ids_give_one_clear_line(minari_root, dataset_id, message):
    with pytest.raises(DataError, match=message) as info:
        open_dataset(dataset_id)
    assert "\n" not in str(info.value)


def test_nan_observations_are_rejected(minari_root):
    write_minari_dataset("test/hopper/nan-v0", episodes=2, corrupt="nan")
    with pytest.raises(DataError, match="NaN or inf in observations"):
        open_dataset("test/hopper/nan-v0")
