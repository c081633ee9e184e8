"""Kernels and scaling against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tge_ray.reward.kernels import (
    RewardScaling,
    euclidean_from_squared,
    gaussian_kernel,
    kernel_reward,
    log_kernel,
    scale_rewards,
)


def test_squared_distances_become_euclidean_and_tiny_negatives_clamp_to_zero():
    squared = np.array([[4.0, 9.0], [-1e-7, 0.25]], dtype=np.float32)
    assert np.array_equal(euclidean_from_squared(squared), np.array([[2.0, 3.0], [0.0, 0.5]], np.float32))


def test_log_kernel_by_hand():
    distances = np.array([[1.0, 3.0], [0.0, 0.0], [2.0, 2.0]], dtype=np.float32)
    # mean 2 -> -log 3; mean 0 -> 0; with sigma = 2: mean/sigma 1 -> -log 2
    np.testing.assert_allclose(log_kernel(distances, 1.0), [-math.log(3.0), 0.0, -math.log(3.0)], rtol=1e-6)
    np.testing.assert_allclose(kernel_reward(distances, "log", 2.0), [-math.log(2.0), 0.0, -math.log(2.0)], rtol=1e-6)
    assert kernel_reward(distances, "log", 1.0).dtype == np.float32


def test_gaussian_kernel_by_hand():
    distances = np.array([[0.0, 2.0]], dtype=np.float32)
    # sigma 1: (exp(0) + exp(-4/2)) / 2; sigma 2: (1 + exp(-4/8)) / 2
    np.testing.assert_allclose(gaussian_kernel(distances, 1.0), [(1 + math.exp(-2.0)) / 2], rtol=1e-6)
    np.testing.assert_allclose(kernel_reward(distances, "gaussian", 2.0), [(1 + math.exp(-0.5)) / 2], rtol=1e-6)


def test_rewards_fall_as_distances_grow():
    distances = np.array([[0.0], [0.5], [1.0], [4.0]], dtype=np.float32)
    for kernel in ("log", "gaussian"):
        assert np.all(np.diff(kernel_reward(distances, kernel, 1.0)) < 0)


def test_torch_matches_numpy():
    distances = np.array([[0.1, 0.7, 1.3], [2.0, 0.0, 0.4]], dtype=np.float32)
    for kernel in ("log", "gaussian"):
        from_torch = kernel_reward(torch.from_numpy(distances), kernel, 0.7)
        assert isinstance(from_torch, torch.Tensor)
        np.testing.assert_allclose(from_torch.numpy(), kernel_reward(distances, kernel, 0.7), rtol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="kernel"):
        kernel_reward(np.ones((2, 1)), "cosine", 1.0)
    with pytest.raises(ValueError, match="sigma"):
        kernel_reward(np.ones((2, 1)), "log", 0.0)
    with pytest.raises(ValueError, match="N, k"):
        kernel_reward(np.ones(3), "log", 1.0)


def test_minmax_scaling_by_hand():
    scaled, params = scale_rewards(np.array([1.0, 2.0, 3.0, 5.0]), "minmax")
    np.testing.assert_allclose(scaled, [0.0, 0.25, 0.5, 1.0])
    assert params.to_dict() == {"mode": "minmax", "shift": 1.0, "divisor": 4.0, "degenerate": False}
    np.testing.assert_allclose(params.apply(np.array([3.0])), [0.5])


def test_standard_and_none_scaling_by_hand():
    scaled, params = scale_rewards(np.array([1.0, 3.0]), "standard")  # mean 2, std 1
    np.testing.assert_allclose(scaled, [-1.0, 1.0])
    assert (params.shift, params.divisor) == (2.0, 1.0)
    raw = np.array([-0.5, -2.0])
    scaled, params = scale_rewards(raw, "none")
    np.testing.assert_array_equal(scaled, raw.astype(np.float32))
    assert (params.mode, params.shift, params.divisor) == ("none", 0.0, 1.0)


def test_constant_rewards_scale_to_zero_and_say_so():
    for mode in ("minmax", "standard"):
        scaled, params = scale_rewards(np.array([2.0, 2.0, 2.0]), mode)
        np.testing.assert_array_equal(scaled, np.zeros(3, np.float32))
        assert params.degenerate


def test_rank_scaling_is_the_quantile_within_a_thousandth():
    from scipy.stats import rankdata

    raw = np.random.default_rng(0).standard_t(2, size=20_001)  # heavy tails: min-max squeezes them
    raw[:50] = raw[50]  # ties
    scaled, params = scale_rewards(raw, "rank")
    expected = (rankdata(raw) - 1) / (len(raw) - 1)
    assert np.abs(scaled - expected).max() < 1e-3
    assert scaled.min() == 0.0 and scaled.max() == 1.0 and len(set(scaled[:51].tolist())) == 1
    # new rewards (a policy's rollouts) land where D_mu's would, clipped outside D_mu's range
    again = RewardScaling(**params.to_dict())
    np.testing.assert_allclose(again.apply(raw), scaled, atol=1e-6)
    outside = again.apply(np.array([raw.min() - 1.0, raw.max() + 1.0]))
    np.testing.assert_array_equal(outside, [0.0, 1.0])


def test_rank_scaling_of_constant_rewards_is_degenerate():
    scaled, params = scale_rewards(np.full(4, 2.5), "rank")
    np.testing.assert_array_equal(scaled, np.zeros(4, np.float32))
    assert params.degenerate and params.knots is None
