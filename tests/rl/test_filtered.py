"""TGE-filtered BC's episode selection, against selections worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tge_ray.reward.kernels import scale_rewards
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.filtered import otsu_count, top_episodes

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
                    "threshold": 0.5, "rule": "0.5", "expert_share": pytest.approx(3 / 5)}
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


# Otsu's cut, worked by hand: between(k) = W_k (W - W_k) (mu_k - mu_rest)^2 over best-first splits.
# Scores 1.0, 0.6, 0.5, 0.0 with equal weights: k=1 -> 1*3*(1 - 0.3667)^2 = 1.203,
# k=2 -> 2*2*(0.8 - 0.25)^2 = 1.21, k=3 -> 3*1*(0.7 - 0)^2 = 1.47: three kept.
# Weights 10, 1, 1, 1: k=1 -> 10*3*(1 - 0.3667)^2 = 12.03, k=2 -> 11*2*(0.9636 - 0.25)^2 = 11.20,
# k=3 -> 12*1*(0.925 - 0)^2 = 10.27: one kept.
@pytest.mark.parametrize(("weights", "kept"), [([1, 1, 1, 1], 3), ([10, 1, 1, 1], 1)])
def test_otsu_count_by_hand(weights, kept):
    assert otsu_count(np.array([1.0, 0.6, 0.5, 0.0]), np.array(weights)) == kept


@pytest.mark.parametrize("scores", [[0.3], [0.3, 0.3, 0.3]])
def test_otsu_keeps_everything_when_nothing_separates(scores):
    assert otsu_count(np.array(scores), np.ones(len(scores))) == len(scores)


def test_auto_cut_keeps_episodes_whole_and_weighs_them_by_length():
    # Episode means 1.0 (2 rows), 0.0 (3 rows), 0.9 (1 row), 0.5 (2 rows): best first 1.0, 0.9,
    # 0.5, 0.0 with weights 2, 1, 2, 3. k=1: 2*6*(1 - 0.3167)^2 = 5.60; k=2: 3*5*(0.9667 - 0.2)^2
    # = 8.82; k=3: 5*3*(0.78 - 0)^2 = 9.13: episodes 0, 2 and 3.
    selection = top_episodes(REWARDS, EPISODES, "auto")
    assert np.flatnonzero(selection.mask).tolist() == [0, 1, 5, 6, 7]
    assert selection.rule == "auto" and selection.threshold == 0.5


# Episode 0: 10 rows of 0.6; episode 1: one row of 0.9; episode 2: 9 rows of 0. Mean reward
# 6.9 / 20 = 0.345. Prior 0: means 0.6, 0.9, 0. Prior 2 rows: (6 + 0.69) / 12 = 0.5575 and
# (0.9 + 0.69) / 3 = 0.53: the long episode now outranks the one-row one.
PRIOR_REWARDS = np.r_[np.full(10, 0.6), [0.9], np.zeros(9)]
PRIOR_EPISODES = np.r_[np.zeros(10, int), [1], np.full(9, 2)]


@pytest.mark.parametrize(("prior", "rows", "threshold"), [(0.0, [10], 0.9), (2.0, list(range(10)), 0.5575)])
def test_prior_pulls_short_episodes_towards_the_mean(prior, rows, threshold):
    selection = top_episodes(PRIOR_REWARDS, PRIOR_EPISODES, 0.05, prior=prior)
    assert np.flatnonzero(selection.mask).tolist() == rows
    assert selection.threshold == pytest.approx(threshold)


def test_bad_cut_or_prior():
    with pytest.raises(ValueError, match="or be 'auto'"):
        top_episodes(REWARDS, EPISODES, "most")
    with pytest.raises(ValueError, match="prior must be >= 0"):
        top_episodes(REWARDS, EPISODES, "auto", prior=-1.0)


def _start_state_d_mu() -> tuple[np.ndarray, np.ndarray]:
    """Raw rewards shaped as on hopper: 3 expert episodes of 100 steps near the demo (-0.05), and
    300 short random episodes whose reward falls off with the step, since every episode starts
    where the demo starts."""
    rng = np.random.default_rng(0)
    rewards, ids = [], []
    for e in range(3):
        rewards.append(-0.05 + 0.01 * rng.standard_normal(100))
        ids.append(np.full(100, e))
    for e in range(3, 303):
        t = np.arange(int(rng.integers(5, 40)))
        rewards.append(-0.1 - 0.4 * (1 - np.exp(-t / 8)) + 0.02 * rng.standard_normal(t.size))
        ids.append(np.full(t.size, e))
    return np.concatenate(rewards), np.concatenate(ids)


def test_the_auto_cut_is_the_raw_reward_s_under_an_affine_scale_and_not_under_rank():
    """Why ``reward.scale=auto`` gives filtered BC min-max (docs/notes/fbc-scale.md): an episode's
    score is affine in the rewards, so Otsu's cut on min-max or standardised rewards is the raw
    reward's, which here keeps the 3 expert episodes; rank spreads the random episodes' rewards
    over [0, 1] and the cut takes 137 of them as well (16% of its rows expert)."""
    raw, ids = _start_state_d_mu()
    cuts = {mode: top_episodes(scale_rewards(raw, mode)[0], ids, "auto", prior=8.0)
            for mode in ("none", "minmax", "standard", "rank")}
    for mode in ("minmax", "standard"):
        np.testing.assert_array_equal(cuts[mode].mask, cuts["none"].mask)
    assert cuts["none"].episodes == 3 and (ids[cuts["none"].mask] < 3).all()
    assert cuts["rank"].episodes == 140 and (ids[cuts["rank"].mask] < 3).mean() < 0.2
