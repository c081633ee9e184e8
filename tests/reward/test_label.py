"""Ray Data labelling equals the in-process reference, bit for bit, and is repeatable."""

from __future__ import annotations

import numpy as np
import pytest

from tge_ray.config import ResourcesConfig, RewardConfig
from tge_ray.errors import ConfigError, DataError
from tge_ray.reward.knn import faiss_built_with_gpu
from tge_ray.reward.label import _order_by_index, label_array, label_rewards, use_gpu_index


def _data(n: int = 600, dim: int = 16, n_expert: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((n, dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    experts = rng.standard_normal((n_expert, dim)).astype(np.float32)
    experts /= np.linalg.norm(experts, axis=1, keepdims=True)
    return embeddings, experts


def test_ray_data_labelling_equals_in_process_and_repeats(ray_session):
    ray = ray_session
    embeddings, experts = _data()
    order = np.random.default_rng(1).permutation(len(embeddings))  # rows arrive out of order
    dataset = ray.data.from_items([{"index": int(i), "embedding": embeddings[i]} for i in order])
    cfg = RewardConfig(k=5, sigma=0.5, batch_size=64)
    resources = ResourcesConfig(reward_actors=1, use_gpu="auto")
    first = label_rewards(dataset, experts, cfg, resources)
    expected = label_array(embeddings, experts, cfg)
    assert first.dtype == np.float32 and first.shape == (600,)
    assert np.array_equal(first, expected)
    # again, cut into other batches: the same bits (distances do not depend on batching)
    again = label_rewards(dataset, experts, RewardConfig(k=5, sigma=0.5, batch_size=100), resources)
    assert np.array_equal(again, first)


def test_in_process_labelling_matches_kernels_and_is_deterministic():
    embeddings, experts = _data(n=100, n_expert=10, seed=3)
    for kernel in ("log", "gaussian"):
        cfg = RewardConfig(kernel=kernel, k=3, sigma=1.0)
        rewards = label_array(embeddings, experts, cfg)
        distances = np.sort(np.linalg.norm(embeddings[:, None] - experts[None], axis=-1), axis=1)[:, :3]
        expected = (-np.log1p(distances.mean(1)) if kernel == "log"
                    else np.exp(-distances**2 / 2).mean(1))
        np.testing.assert_allclose(rewards, expected, rtol=1e-5, atol=1e-6)
        assert np.array_equal(label_array(embeddings, experts, cfg), rewards)


def test_k_above_expert_count_fails_before_any_work():
    embeddings, experts = _data(n=10, n_expert=3)
    with pytest.raises(ConfigError, match=r"^reward.k=5 exceeds the 3 expert windows: "):
        label_rewards(None, experts, RewardConfig(k=5), ResourcesConfig())
    with pytest.raises(ConfigError):
        label_array(embeddings, experts, RewardConfig(k=5))


def test_rewards_are_ordered_by_index_and_duplicates_rejected():
    index = np.array([2, 0, 1], np.int64)
    np.testing.assert_array_equal(_order_by_index(index, np.array([0.2, 0.0, 0.1])), [0.0, 0.1, 0.2])
    with pytest.raises(DataError, match="index 1 more than once"):
        _order_by_index(np.array([1, 0, 1]), np.zeros(3))


def test_no_gpu_index_without_gpu_faiss():
    assert use_gpu_index(False) is False
    if not faiss_built_with_gpu():
        assert use_gpu_index("auto") is False
