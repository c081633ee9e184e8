"""Exact k-NN search over the expert embeddings Z_E with faiss (``IndexFlatL2``).

:func:`build_index` puts Z_E (M, D) into a flat (exact) index, on the GPU only when faiss was
built with GPU support, a GPU is visible, and a self-test that compares the GPU index with the
CPU index on a small random set passes; otherwise on the CPU. The choice is recorded in
``ExpertIndex.device``. Choosing by a self-test rather than by the presence of a GPU keeps a
broken CUDA install from silently producing wrong rewards.

Distances. Faiss finds the neighbours; their distances are then recomputed directly as
||z - z_E^j|| in NumPy (``refine=True``, the default). Faiss' batched path computes
||x||^2 + ||y||^2 - 2<x, y>, whose last bits depend on how queries are grouped into a batch (and
which loses precision near 0); the direct recomputation depends only on the query and its
neighbours, so a transition's reward is the same whatever the Ray Data batching or actor count,
up to near-ties: where the k-th and (k+1)-th neighbours are equally far at float32 precision,
which one faiss keeps can depend on the batch (its BLAS path for larger batches, its direct one
for a few queries) and, across devices, on the index (on an H200, 1M random rows against 1000
experts: rewards differed by at most 6e-8). It costs O(N k D), under 1% of
the CPU search's O(N M D) for the usual M >> k; next to a GPU search it is most of the stage's
time (``docs/notes/gpu-h200.md``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import faiss
import numpy as np

from tge_ray.errors import ConfigError
from tge_ray.reward.kernels import euclidean_from_squared

logger = logging.getLogger(__name__)

UseGpu = bool | Literal["auto"]
_REFINE_ROWS = 512


def check_k(k: int, n_expert: int) -> None:
    """Raise ConfigError when ``k`` neighbours cannot be drawn from ``n_expert`` expert windows."""
    if k > n_expert:
        raise ConfigError(
            f"reward.k={k} exceeds the {n_expert} expert windows: lower reward.k to at most "
            f"{n_expert} or add expert demos (task.n_demos)"
        )


def faiss_built_with_gpu() -> bool:
    """True when this faiss build has GPU support (faiss-gpu), whether or not a GPU is visible."""
    return hasattr(faiss, "StandardGpuResources")


def faiss_has_gpu() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    if not faiss_built_with_gpu():
        return False
    try:
        return faiss.get_num_gpus() > 0
    except Exception:  # a broken CUDA runtime counts as no GPU
        return False


def _as_matrix(array: Any, name: str, dim: int | None = None) -> np.ndarray:
    """float32, C-contiguous (N, D) view of ``array`` (copies only when it must)."""
    matrix = np.ascontiguousarray(array, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be (N, D), got shape {matrix.shape}")
    if dim is not None and matrix.shape[1] != dim:
        raise ValueError(f"{name} have dimension {matrix.shape[1]}, the expert index has {dim}")
    return matrix


def gpu_flat_index(dim: int) -> tuple[Any, Any]:
    """An empty exact L2 index on GPU 0, and the faiss resources that must outlive it."""
    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, 0, faiss.IndexFlatL2(dim)), resources


def _gpu_self_test(dim: int, seed: int = 0) -> tuple[bool, str]:
    """Build CPU and GPU flat indexes on one small random set and compare their k-NN results."""
    try:
        rng = np.random.default_rng(seed)
        database = rng.standard_normal((512, dim)).astype(np.float32)
        queries = rng.standard_normal((64, dim)).astype(np.float32)
        k = 8
        cpu = faiss.IndexFlatL2(dim)
        cpu.add(database)
        cpu_sq, _ = cpu.search(queries, k)
        gpu, _resources = gpu_flat_index(dim)
        gpu.add(database)
        gpu_sq, gpu_ids = gpu.search(queries, k)
        if (gpu_ids < 0).any() or (gpu_ids >= len(database)).any():
            return False, "GPU index returned neighbour ids outside the database"
        # The GPU may order near-ties differently, so check distances, not ids: the ids it
        # returns must be at the distances it claims, and those must equal the CPU's.
        true_sq = ((queries[:, None, :] - database[gpu_ids]) ** 2).sum(-1)
        if not np.allclose(gpu_sq, cpu_sq, rtol=1e-3, atol=1e-3):
            return False, f"GPU and CPU distances differ by up to {np.abs(gpu_sq - cpu_sq).max():.3g}"
        if not np.allclose(true_sq, gpu_sq, rtol=1e-3, atol=1e-3):
            return False, "GPU distances do not match the neighbours it returned"
        return True, "ok"
    except Exception as exc:  # any failure means: do not trust the GPU index
        return False, f"{type(exc).__name__}: {exc}".splitlines()[0]


@dataclass
class ExpertIndex:
    """Z_E in an exact faiss index; answers k-NN queries with Euclidean distances.

    Attributes:
        index: the faiss index (``IndexFlatL2`` or its GPU twin).
        expert_embeddings: Z_E, (M, D) float32, kept for the exact distance recomputation.
        device: ``"cpu"`` or ``"gpu"``, where the search runs.
    """

    index: Any
    expert_embeddings: np.ndarray
    device: str
    _gpu_resources: Any = field(default=None, repr=False)  # must outlive a GPU index

    @property
    def n_expert(self) -> int:
        return int(self.expert_embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.expert_embeddings.shape[1])

    def kneighbors(self, queries: np.ndarray, k: int, refine: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Distances (N, k) float32 Euclidean, ascending, and ids (N, k) int64 of the k nearest.

        ``refine=True`` recomputes the distances directly (see the module docstring);
        ``refine=False`` returns faiss' own distances, converted from squared.
        """
        check_k(k, self.n_expert)
        queries = _as_matrix(queries, "queries", self.dim)  # (N, D)
        if queries.shape[0] == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        squared, ids = self.index.search(queries, k)  # (N, k) squared L2, (N, k)
        if not refine:
            return euclidean_from_squared(squared), ids
        distances = np.empty(ids.shape, np.float32)  # (N, k)
        # One small reused buffer, cache-sized: a fresh (N, k, D) gather would cost more in
        # page faults than the arithmetic.
        buffer = np.empty((min(_REFINE_ROWS, len(ids)), k, self.dim), np.float32)
        for start in range(0, len(ids), _REFINE_ROWS):
            rows = slice(start, start + _REFINE_ROWS)
            diff = buffer[: len(ids[rows])]  # (rows, k, D)
            np.take(self.expert_embeddings, ids[rows], axis=0, out=diff)
            np.subtract(diff, queries[rows, None, :], out=diff)
            np.multiply(diff, diff, out=diff)
            # A reduction over the contiguous last axis: each (row, j) is summed on its own, in
            # the same order whatever the batch: a kept neighbour's distance is batch-independent.
            np.sqrt(diff.sum(axis=2), out=distances[rows])
        order = np.argsort(distances, axis=1, kind="stable")
        return np.take_along_axis(distances, order, 1), np.take_along_axis(ids, order, 1)

    def search(self, queries: np.ndarray, k: int, refine: bool = True) -> np.ndarray:
        """Euclidean distances (N, k) float32 from each query to its k nearest expert embeddings."""
        return self.kneighbors(queries, k, refine)[0]


def build_index(expert_embeddings: np.ndarray, use_gpu: UseGpu = "auto",
                threads: int | None = None) -> ExpertIndex:
    """Exact flat L2 index over Z_E (M, D).

    Args:
        expert_embeddings: Z_E, (M, D); converted to C-contiguous float32.
        use_gpu: ``"auto"`` or ``True``: the GPU index when faiss has GPU support, a GPU is
            visible and the self-test passes, the CPU index otherwise (``True`` logs a warning
            when it cannot have the GPU; a failed self-test always does). ``False``: CPU.
        threads: OpenMP threads for faiss in this process (``None`` leaves faiss' setting; under
            Ray that is the task's CPU count via OMP_NUM_THREADS).
    """
    experts = _as_matrix(expert_embeddings, "expert_embeddings")
    if experts.shape[0] == 0:
        raise ConfigError("the expert embeddings Z_E are empty: D_E needs at least one window (task.n_demos)")
    if not np.all(np.isfinite(experts)):
        raise ValueError("expert_embeddings hold NaN or inf values")
    if threads is not None:
        faiss.omp_set_num_threads(int(threads))
    dim = experts.shape[1]
    if use_gpu not in (True, False, "auto"):
        raise ValueError(f"use_gpu must be true, false or 'auto', got {use_gpu!r}")
    if use_gpu is not False:
        if faiss_has_gpu():
            ok, why = _gpu_self_test(dim)
            if ok:
                gpu_index, resources = gpu_flat_index(dim)
                gpu_index.add(experts)
                return ExpertIndex(gpu_index, experts, "gpu", resources)
            logger.warning("faiss GPU self-test failed (%s); using the CPU index", why)
        elif use_gpu is True:
            logger.warning("GPU k-NN asked for, but this faiss has no GPU support or sees no GPU "
                           "(install the 'gpu' extra: faiss-gpu); using the CPU index")
    index = faiss.IndexFlatL2(dim)
    index.add(experts)
    return ExpertIndex(index, experts, "cpu")
