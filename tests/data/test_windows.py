"""Windows: contents at episode ends by hand, streaming equals gathering, every horizon."""

from __future__ import annotations

import numpy as np
import pytest

from tge_ray.data.windows import Windows, after_start, complete_after_start, complete_windows, window_of
from tge_ray.errors import ConfigError, DataError


def test_three_step_episode_by_hand():
    # Episode 0 has states 1, 2, 3 (one feature); episode 1 has states 10, 20.
    observations = np.array([[1.0], [2.0], [3.0], [10.0], [20.0]], dtype=np.float32)
    episode_ids = np.array([0, 0, 0, 1, 1])
    windows = Windows(observations, episode_ids, horizon=4).gather(np.arange(5))[..., 0]
    expected = np.array(
        [
            [1, 2, 3, 3],  # t=0: the last state repeats past the end
            [2, 3, 3, 3],
            [3, 3, 3, 3],
            [10, 20, 20, 20],  # never crosses into the next episode
            [20, 20, 20, 20],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(windows, expected)


def test_horizon_one_is_the_state_itself():
    observations = np.arange(12, dtype=np.float32).reshape(6, 2)
    windows = Windows(observations, np.array([0, 0, 1, 1, 1, 2]), horizon=1).gather(np.arange(6))
    np.testing.assert_array_equal(windows[:, 0], observations)


@pytest.mark.parametrize("horizon", [1, 2, 5, 32])
@pytest.mark.parametrize("reuse", [False, True])
def test_streamed_batches_equal_reference(horizon, reuse):
    rng = np.random.default_rng(horizon)
    lengths = rng.integers(1, 9, size=12)
    episode_ids = np.repeat(np.arange(12), lengths)
    observations = rng.standard_normal((episode_ids.size, 3)).astype(np.float32)
    windows = Windows(observations, episode_ids, horizon)
    streamed = np.concatenate([batch.copy() for _, batch in windows.iter_batches(7, reuse_buffer=reuse)])
    reference = np.stack([window_of(observations, episode_ids, horizon, t) for t in range(episode_ids.size)])
    np.testing.assert_array_equal(streamed, reference)
    assert streamed.shape == (episode_ids.size, horizon, 3)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="windows.horizon=0"):
        Windows(np.zeros((3, 2), np.float32), np.zeros(3, int), horizon=0)
    with pytest.raises(DataError, match="empty"):
        Windows(np.zeros((0, 2), np.float32), np.zeros(0, int), horizon=2)


def test_complete_windows_keep_windows_inside_their_episode():
    ids = np.array([0, 0, 0, 0, 0, 3, 3, 7, 7, 7])  # lengths 5, 2 (< H) and 3 (= H)
    expected = [True, True, True, False, False, True, False, True, False, False]
    np.testing.assert_array_equal(complete_windows(ids, 3), expected)
    assert complete_windows(ids, 1).all()
    windows = Windows(np.arange(10, dtype=np.float32)[:, None], ids, 3)
    kept = windows.gather(np.flatnonzero(complete_windows(ids, 3)))
    assert all(len(np.unique(w)) == 3 for w in kept[[0, 1, 2, 4]])  # no repeated (padded) state


def _dataset_rows(dataset):
    """(index, window) rows in the order the dataset gives them."""
    batches = list(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    return np.concatenate([b["index"] for b in batches]), np.concatenate([b["window"] for b in batches])


def test_ray_dataset_in_order_or_one_seeded_permutation(ray_session):
    from tge_ray.data.windows import to_ray_dataset

    rng = np.random.default_rng(0)
    episode_ids = np.repeat(np.arange(20), 15)
    windows = Windows(rng.normal(size=(300, 3)).astype(np.float32), episode_ids, horizon=4)

    index, rows = _dataset_rows(to_ray_dataset(windows, batch_size=64))
    np.testing.assert_array_equal(np.sort(index), np.arange(300))  # any order, every row once
    np.testing.assert_array_equal(rows, windows.gather(index))

    shuffled = to_ray_dataset(windows, batch_size=64, shuffle_seed=7)
    assert shuffled.context.execution_options.preserve_order  # its readers keep its order
    index, rows = _dataset_rows(shuffled.materialize())  # as the diffusion stage may read it
    np.testing.assert_array_equal(np.sort(index), np.arange(300))  # every window once
    np.testing.assert_array_equal(rows, windows.gather(index))  # each row is its index's window
    # Shuffled across the whole set, not in blocks: the first 64 rows reach past the first
    # quarter of the indices.
    assert index[:64].max() > 75 and not np.array_equal(index, np.arange(300))
    again, _ = _dataset_rows(to_ray_dataset(windows, batch_size=64, shuffle_seed=7))
    np.testing.assert_array_equal(again, index)  # same seed, same order
    other, _ = _dataset_rows(to_ray_dataset(windows, batch_size=64, shuffle_seed=8))
    assert not np.array_equal(other, index)


def test_after_start_drops_each_episodes_first_rows():
    ids = np.array([0, 0, 0, 0, 0, 3, 3, 7])  # lengths 5, 2 and 1
    expected = [False, False, False, True, True, False, True, True]  # short episodes keep their last row
    np.testing.assert_array_equal(after_start(ids, 3), expected)
    assert after_start(ids, 0).all()
    with pytest.raises(DataError, match="non-empty"):
        after_start(np.array([]), 3)


def test_complete_after_start_keeps_every_episode_in_the_index():
    ids = np.array([0] * 6 + [1] * 3 + [2] * 8)  # lengths 6, 3 and 8; H = 4: last complete windows 2, 0, 4
    kept = complete_after_start(ids, 4, 3)
    # episode 0: complete rows 0..2, rows from 3 on: none, so its last complete window (row 2);
    # episode 1 (shorter than H): its first window; episode 2: rows 3 and 4, as both rules say.
    expected = np.zeros(ids.size, dtype=bool)
    expected[[2, 6, 9 + 3, 9 + 4]] = True
    np.testing.assert_array_equal(kept, expected)
    np.testing.assert_array_equal(complete_after_start(ids, 4, 1), complete_windows(ids, 4) & after_start(ids, 1)
                                  | np.isin(np.arange(ids.size), [6]))
