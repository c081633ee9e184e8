"""Exact k-NN: faiss against brute force, device choice, and the k > M error."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tge_ray.errors import ConfigError
from tge_ray.reward import knn
from tge_ray.reward.knn import build_index


def brute_force(queries: np.ndarray, experts: np.ndarray) -> np.ndarray:
    """All Euclidean distances (N, M), float32, computed pair by pair."""
    return np.sqrt(((queries[:, None, :] - experts[None, :, :]) ** 2).sum(-1)).astype(np.float32)


def test_faiss_equals_brute_force_exactly_on_integer_data():
    # Small integers keep every float32 operation exact, so both paths must agree bit for bit.
    rng = np.random.default_rng(0)
    experts = rng.integers(-8, 9, size=(50, 6)).astype(np.float32)
    queries = rng.integers(-8, 9, size=(40, 6)).astype(np.float32)
    index = build_index(experts, use_gpu=False)
    distances, ids = index.kneighbors(queries, 5)
    all_distances = brute_force(queries, experts)
    assert np.array_equal(distances, np.sort(all_distances, axis=1)[:, :5])
    # ties may pick different ids, but each id must sit at the distance reported for it
    assert np.array_equal(np.take_along_axis(all_distances, ids, 1), distances)


def test_faiss_neighbours_equal_brute_force_on_random_data():
    rng = np.random.default_rng(1)
    experts = rng.standard_normal((200, 16)).astype(np.float32)
    queries = rng.standard_normal((100, 16)).astype(np.float32)
    index = build_index(experts, use_gpu=False)
    distances, ids = index.kneighbors(queries, 4)
    all_distances = brute_force(queries, experts)
    assert np.array_equal(ids, np.argsort(all_distances, axis=1)[:, :4])
    np.testing.assert_allclose(distances, np.sort(all_distances, axis=1)[:, :4], rtol=1e-6)
    assert distances.dtype == np.float32 and distances.shape == (100, 4)
    np.testing.assert_allclose(index.search(queries, 4, refine=False), distances, rtol=1e-4, atol=1e-4)


def test_distances_do_not_depend_on_batching():
    rng = np.random.default_rng(2)
    experts = rng.standard_normal((300, 32)).astype(np.float32)
    queries = rng.standard_normal((100, 32)).astype(np.float32)
    index = build_index(experts, use_gpu=False)
    whole = index.search(queries, 5)
    for rows in (1, 7, 33):  # faiss takes its direct path below 20 queries, BLAS above
        pieces = np.concatenate([index.search(queries[i:i + rows], 5) for i in range(0, 100, rows)])
        assert np.array_equal(pieces, whole)


def test_k_above_the_expert_count_is_a_one_line_config_error():
    index = build_index(np.zeros((5, 3), np.float32), use_gpu=False)
    with pytest.raises(ConfigError) as caught:
        index.search(np.zeros((2, 3), np.float32), 6)
    message = str(caught.value)
    assert message.startswith("reward.k=6 exceeds the 5 expert windows: ") and "\n" not in message


def test_wrong_query_dimension_and_empty_queries():
    index = build_index(np.zeros((5, 3), np.float32), use_gpu=False)
    with pytest.raises(ValueError, match="dimension"):
        index.search(np.zeros((2, 4), np.float32), 1)
    assert index.search(np.zeros((0, 3), np.float32), 2).shape == (0, 2)


def test_cpu_chosen_without_gpu_faiss(caplog):
    experts = np.eye(4, dtype=np.float32)
    assert build_index(experts, use_gpu=False).device == "cpu"
    if not knn.faiss_has_gpu():
        assert build_index(experts, use_gpu="auto").device == "cpu"
        with caplog.at_level(logging.WARNING, logger=knn.__name__):
            assert build_index(experts, use_gpu=True).device == "cpu"
        assert len(caplog.records) == 1
        ok, why = knn._gpu_self_test(4)  # must fail cleanly, not raise
        assert not ok and why


def test_failed_gpu_self_test_falls_back_to_cpu_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(knn, "faiss_has_gpu", lambda: True)
    monkeypatch.setattr(knn, "_gpu_self_test", lambda dim: (False, "results differ"))
    with caplog.at_level(logging.WARNING, logger=knn.__name__):
        index = build_index(np.eye(4, dtype=np.float32), use_gpu="auto")
    assert index.device == "cpu"
    assert [r.getMessage() for r in caplog.records] == [
        "faiss GPU self-test failed (results differ); using the CPU index"]


class _FakeGpuFaiss:
    """The real faiss, but claiming one GPU whose 'GPU index' is a CPU one (optionally wrong)."""

    StandardGpuResources = object

    def __init__(self, corrupt: bool) -> None:
        self.corrupt = corrupt

    def __getattr__(self, name):
        import faiss

        return getattr(faiss, name)

    def get_num_gpus(self) -> int:
        return 1

    def index_cpu_to_gpu(self, resources, device, index):
        if not self.corrupt:
            return index

        class Corrupt:
            def add(self, x):
                index.add(x)

            def search(self, x, k):
                squared, ids = index.search(x, k)
                return squared + 1.0, ids

        return Corrupt()


@pytest.mark.parametrize("corrupt, device", [(False, "gpu"), (True, "cpu")])
def test_gpu_index_only_after_a_passing_self_test(monkeypatch, caplog, corrupt, device):
    monkeypatch.setattr(knn, "faiss", _FakeGpuFaiss(corrupt))
    experts = np.random.default_rng(3).standard_normal((20, 4)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger=knn.__name__):
        index = build_index(experts, use_gpu="auto")
    assert index.device == device
    assert len(caplog.records) == int(corrupt)
    if corrupt:
        assert "GPU and CPU distances differ" in caplog.records[0].getMessage()
    queries = experts[:3] + 0.01
    np.testing.assert_allclose(index.search(queries, 2)[:, 0], 0.02, rtol=1e-4)
