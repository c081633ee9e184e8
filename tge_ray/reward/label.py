"""Label every transition of D_mu with its kernel reward, through a Ray Data actor pool.

One window, step by step: the embedding dataset holds rows ``{"index": t, "embedding": z_t}``;
each :class:`RewardActor` holds the faiss index of Z_E (built once, when the actor starts),
finds z_t's k nearest expert embeddings, applies the kernel and returns ``{"index", "reward"}``;
the driver gathers the rewards and orders them by ``index``.

:func:`label_array` does the same in-process on NumPy arrays (the reference the Ray path is
tested against, and handy on a laptop). Both give the same rewards up to near-ties: the
distances are recomputed per query (see ``tge_ray.reward.knn``), but which of two almost equally
near expert windows faiss keeps can depend on how the queries are batched, and the reward then
differs in its last bits.

Rewards returned here are *raw*; ``tge_ray.reward.kernels.scale_rewards`` scales them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from tge_ray.config import ResourcesConfig, RewardConfig
from tge_ray.errors import DataError
from tge_ray.pipeline.session import map_actor_pool
from tge_ray.reward.kernels import Kernel, kernel_reward
from tge_ray.reward.knn import UseGpu, build_index, check_k, faiss_built_with_gpu

logger = logging.getLogger(__name__)

# Rows per faiss call in label_array; bounded so memory stays flat for any N.
_ARRAY_CHUNK = 65536


def _expert_matrix(expert_embeddings: Any) -> np.ndarray:
    experts = np.ascontiguousarray(expert_embeddings, dtype=np.float32)
    if experts.ndim != 2:
        raise DataError(f"expert embeddings must be (M, D), got shape {experts.shape}")
    return experts


class RewardActor:
    """Ray Data callable class: batch of embeddings -> batch of raw kernel rewards.

    The index is built once per actor, from Z_E passed as an ObjectRef (one copy in the object
    store, read zero-copy by every actor on a node, never pickled per batch).
    """

    def __init__(self, expert_embeddings: Any, k: int, kernel: Kernel, sigma: float,
                 use_gpu: UseGpu = False, threads: int | None = 1) -> None:
        import ray

        if isinstance(expert_embeddings, ray.ObjectRef):
            expert_embeddings = ray.get(expert_embeddings)
        self.index = build_index(expert_embeddings, use_gpu=use_gpu, threads=threads)
        self.k, self.kernel, self.sigma = k, kernel, sigma
        logger.info("reward actor: exact %s k-NN over %d expert windows of dim %d",
                    self.index.device, self.index.n_expert, self.index.dim)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "embedding" not in batch or "index" not in batch:
            raise DataError(f"the embedding dataset needs columns 'index' and 'embedding', got {sorted(batch)}")
        distances = self.index.search(batch["embedding"], self.k)  # (B, k) Euclidean
        reward = kernel_reward(distances, self.kernel, self.sigma)  # (B,)
        return {"index": np.asarray(batch["index"], dtype=np.int64), "reward": reward}


def use_gpu_index(use_gpu: UseGpu) -> bool:
    """Whether the reward actors should ask Ray for a GPU (each then still self-tests faiss).

    Needs ``use_gpu`` not false, a faiss with GPU support in this environment, and GPUs in the
    Ray cluster. The driver itself may have no GPU, so it looks at the cluster, not at CUDA.
    """
    if use_gpu is False:
        return False
    import ray

    gpus_in_cluster = ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
    ok = faiss_built_with_gpu() and gpus_in_cluster
    if use_gpu is True and not ok:
        logger.warning("resources.use_gpu=true, but the reward stage cannot use a GPU (faiss "
                       "without GPU support or no GPU in the cluster); labelling on CPUs")
    return ok


def _order_by_index(index: np.ndarray, reward: np.ndarray) -> np.ndarray:
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    if sorted_index.size > 1 and (np.diff(sorted_index) == 0).any():
        duplicate = int(sorted_index[np.flatnonzero(np.diff(sorted_index) == 0)[0]])
        raise DataError(f"the embedding dataset holds transition index {duplicate} more than once")
    return reward[order]


def label_rewards(embeddings: Any, expert_embeddings: np.ndarray, cfg: RewardConfig,
                  resources: ResourcesConfig) -> np.ndarray:
    """Raw kernel rewards (N,) float32 of every row of ``embeddings``, ordered by its ``index``.

    Args:
        embeddings: ``ray.data.Dataset`` with columns ``index`` (int64 transition index) and
            ``embedding`` ((D,) float32).
        expert_embeddings: Z_E, (M, D) float32.
        cfg: kernel, k, sigma and ``batch_size`` (rows per actor call; large batches keep
            faiss on its BLAS path and Ray's per-batch overhead small).
        resources: ``reward_actors`` (pool size; ``stage_cpus`` CPUs each, and one GPU each
            when the GPU index is used) and ``use_gpu``.
    """
    import ray

    experts = _expert_matrix(expert_embeddings)
    check_k(cfg.k, experts.shape[0])  # here, not in the actors, so the error stays one line
    gpu = use_gpu_index(resources.use_gpu)
    labelled = map_actor_pool(
        embeddings,
        RewardActor,
        # Z_E goes to the object store once; each actor ray.get()s it (zero-copy on its node).
        fn_constructor_kwargs=dict(expert_embeddings=ray.put(experts), k=cfg.k, kernel=cfg.kernel,
                                   sigma=cfg.sigma, use_gpu="auto" if gpu else False, threads=1),
        compute=ray.data.ActorPoolStrategy(size=resources.reward_actors),
        batch_size=cfg.batch_size,
        batch_format="numpy",
        zero_copy_batch=True,  # the actor only reads the batch
        udf_modifying_row_count=False,
        num_cpus=resources.stage_cpus,
        num_gpus=1 if gpu else 0,
    )
    indices, rewards = [], []
    for batch in labelled.iter_batches(batch_size=None, batch_format="numpy"):
        indices.append(batch["index"])
        rewards.append(batch["reward"])
    if not indices:
        return np.zeros(0, np.float32)
    return _order_by_index(np.concatenate(indices).astype(np.int64, copy=False),
                           np.concatenate(rewards).astype(np.float32, copy=False))


def label_array(embeddings: np.ndarray, expert_embeddings: np.ndarray, cfg: RewardConfig,
                use_gpu: UseGpu = False) -> np.ndarray:
    """In-process reference: raw kernel rewards (N,) float32 for embeddings (N, D), in row order."""
    experts = _expert_matrix(expert_embeddings)
    check_k(cfg.k, experts.shape[0])
    index = build_index(experts, use_gpu=use_gpu)
    queries = np.asarray(embeddings)
    rewards = np.empty(len(queries), np.float32)
    for start in range(0, len(queries), _ARRAY_CHUNK):
        rows = slice(start, start + _ARRAY_CHUNK)
        rewards[rows] = kernel_reward(index.search(queries[rows], cfg.k), cfg.kernel, cfg.sigma)
    return rewards
