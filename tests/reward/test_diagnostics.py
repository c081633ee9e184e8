"""Separation and rank-correlation diagnostics by hand; plots are written, atomically."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tge_ray.reward.diagnostics import (
    average_ranks,
    pca_2d,
    plot_embedding_projection,
    plot_reward_histogram,
    rank_correlation,
    roc_auc,
    separation,
    true_reward_correlation,
)


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(average_ranks(np.array([10.0, 20.0, 20.0, 5.0])), [2.0, 3.5, 3.5, 1.0])


@pytest.mark.parametrize(
    "rewards, flags, auc",
    [
        ([3.0, 4.0, 1.0, 2.0], [1, 1, 0, 0], 1.0),  # perfect separation
        ([1.0, 2.0, 3.0, 4.0], [1, 1, 0, 0], 0.0),  # reversed
        ([7.0, 7.0, 7.0, 7.0], [1, 0, 1, 0], 0.5),  # all tied
        ([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1], 0.75),  # pairs: (2>1) (2<3) (4>1) (4>3) -> 3/4
        ([1.0, 2.0, 2.0, 3.0], [0, 1, 0, 1], 0.875),  # (2>1) (2=2: 1/2) (3>1) (3>2) -> 3.5/4
    ],
)
def test_roc_auc_by_hand(rewards, flags, auc):
    assert roc_auc(np.array(rewards), np.array(flags, bool)) == pytest.approx(auc)


def test_separation_reports_means_counts_and_auc():
    stats = separation(np.array([-0.1, -0.2, -1.0, -2.0, -3.0]), np.array([1, 1, 0, 0, 0], bool))
    assert stats == pytest.approx(
        {"mean_expert": -0.15, "mean_other": -2.0, "auc": 1.0, "n_expert": 2, "n_other": 3})


def test_separation_with_no_expert_transitions_gives_nan():
    stats = separation(np.array([1.0, 2.0]), np.array([0, 0], bool))
    assert math.isnan(stats["mean_expert"]) and math.isnan(stats["auc"]) and stats["n_expert"] == 0


@pytest.mark.parametrize(
    "x, y, rho",
    [
        ([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 400.0], 1.0),  # any increasing map
        ([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], -1.0),
        # ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4), about their mean 2.5: the sums of
        # products and squares are 4.5, 4.5 and 5
        ([1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], 4.5 / math.sqrt(4.5 * 5.0)),
    ],
)
def test_rank_correlation_by_hand(x, y, rho):
    assert rank_correlation(np.array(x), np.array(y)) == pytest.approx(rho)


def test_rank_correlation_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    x = rng.normal(size=500).round(1)  # many ties
    y = x + rng.normal(size=500)
    assert rank_correlation(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


def test_rank_correlation_of_a_constant_is_nan_and_bad_input_raises():
    assert math.isnan(rank_correlation(np.ones(5), np.arange(5.0)))
    with pytest.raises(ValueError, match="equal"):
        rank_correlation(np.ones(5), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        rank_correlation(np.array([1.0, np.nan]), np.array([1.0, 2.0]))


def test_true_reward_correlation_per_transition_and_per_episode():
    # Episode 0 holds rows 0-1, episode 2 rows 2-4, episode 1 row 5 (ids need not be sorted).
    episodes = np.array([0, 0, 2, 2, 2, 1])
    tge = np.array([0.1, 0.3, 0.9, 0.8, 0.7, 0.5])
    true = np.array([1.0, 0.0, 5.0, 6.0, 7.0, 3.0])
    stats = true_reward_correlation(tge, true, episodes)
    assert stats["transitions"] == pytest.approx(rank_correlation(tge, true))
    # Episode means: TGE (0.2, 0.5, 0.8), true (0.5, 3.0, 6.0): the same order.
    assert stats["episodes"] == pytest.approx(1.0)
    assert stats["transitions"] < 1.0  # within episodes 0 and 2 the orders disagree
    with pytest.raises(ValueError, match="equal"):
        true_reward_correlation(tge, true, episodes[:-1])


def test_pca_finds_the_line():
    t = np.linspace(-1, 1, 50)
    points = np.stack([t, 2 * t, -t], axis=1)  # all on one line through the origin
    projected = pca_2d(points)
    np.testing.assert_allclose(np.abs(projected[:, 0]), np.sqrt(6) * np.abs(t), atol=1e-9)
    np.testing.assert_allclose(projected[:, 1], 0.0, atol=1e-9)


def test_plots_are_written_without_leftovers(tmp_path):
    rng = np.random.default_rng(0)
    flags = np.arange(300) < 50
    rewards = np.where(flags, -0.2, -1.0) + 0.1 * rng.standard_normal(300)
    embeddings = rng.standard_normal((300, 8)) + flags[:, None]
    histogram = plot_reward_histogram(rewards, flags, tmp_path / "hist.png", kernel="log")
    projection = plot_embedding_projection(embeddings, flags, tmp_path / "sub" / "pca.png",
                                           returns=rng.uniform(0, 100, 300), max_points=200)
    for path in (histogram, projection):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["hist.png", "pca.png"]
