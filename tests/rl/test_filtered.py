"""TGE-filtered BC's episode selection, against selections worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tge_ray.rl.buffer import Transitions
from tge_ray.rl.filtered import top_episodes

# Four episodes: mean rewards 1.0 (2 rows), 0.0 (3 rows), 0.9 (1 row), 0.5 (2 rows).
REWARDS = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 0.9, 0.5, 0.5])
EPISODES = np.array([0, 0, 1, 1, 1, 2, 3, 3])


@pytest.mark.parametrize(
    ("fraction", "rows", "threshold"),
    [
        (0.25, [0, 1], 1.0),  # 2 of 8 rows needed: episode 0 alone
        (0.3, [0, 1, 5], 0.9),  # 2.4 needed: episodes 0 and 2
        (0.5, [0, 1, 5, 6, 7], 0.5),  # 4 needed: 0, 2, then 3 (whole, 5 rows)
        (1.0, list(range(8)), 0.0),
    ],
)
def test_best_episodes_first_until_the_fraction_is_held(fraction, rows, threshold):
    selection = top_episodes(REWARDS, EPISODES, fraction)
    assert np.flatnonzero(selection.mask).tolist() == rows
    assert selection.threshold == threshold and selection.episodes_total == 4
    assert selection.episodes == len(set(EPISODES[rows].tolist()))


def test_mean_not_sum_ranks_episodes_and_ties_go_to_the_lower_id():
    # Episode 7 (long, mean 0.5, sum 5) against episode 3 (short, mean 0.6, sum 0.6).
    rewards = np.r_[np.full(10, 0.5), [0.6], [0.6]]
    ids = np.r_[np.full(10, 7), [3], [9]]  # ids need not be contiguous or sorted
    selection = top_episodes(rewards, ids, 1 / 12)
    assert np.flatnonzero(selection.mask).tolist() == [10]  # episode 3 beats its tie with 9


def test_expert_share_and_counts():
    flags = np.array([1, 1, 0, 0, 0, 1, 0, 0], bool)
    info = top_episodes(REWARDS, EPISODES, 0.5).to_dict(flags)
    assert info == {"episodes": 3, "episodes_total": 4, "transitions": 5, "transitions_total": 8,
                    "threshold": 0.5, "expert_share": pytest.approx(3 / 5)}
    assert "expert_share" not in top_episodes(REWARDS, EPISODES, 0.5).to_dict()


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match="fraction must lie in"):
        top_episodes(REWARDS, EPISODES, fraction)


def test_subset_keeps_every_field_in_order():
    n = len(REWARDS)
    obs = np.arange(n + 1, dtype=np.float32)[:, None]
    transitions = Transitions(obs[:-1], obs[:-1] * 2, REWARDS, obs[1:], np.zeros(n)).with_next_actions()
    kept = transitions.subset(top_episodes(REWARDS, EPISODES, 0.3).mask)
    assert kept.observations[:, 0].tolist() == [0, 1, 5] and kept.actions[:, 0].tolist() == [0, 2, 10]
    assert kept.next_observations[:, 0].tolist() == [1, 2, 6] and kept.next_actions[:, 0].tolist() == [2, 4, 12]
    assert kept.rewards.tolist() == pytest.approx([1.0, 1.0, 0.9])
