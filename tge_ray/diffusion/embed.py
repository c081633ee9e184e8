"""Embedding stage: windows -> z = phi_theta(tau, 0), pooled and L2-normalised, through Ray Data.

One window's way: a row ``{"index": t, "window": (H, obs_dim)}`` of the windows dataset reaches an
:class:`EmbedActor` (one per pool slot, one GPU each where there are GPUs), which holds the EMA
encoder loaded once and returns ``{"index": t, "embedding": (D,)}``; the reward stage takes it
from there. :func:`embed_array` is the same computation in-process, for small inputs and tests.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tge_ray.config import ExperimentConfig
from tge_ray.diffusion.checkpoint import encoder_from_checkpoint, read_checkpoint
from tge_ray.diffusion.train import resolve_use_gpu
from tge_ray.diffusion.unet import TemporalUnet
from tge_ray.errors import DataError
from tge_ray.pipeline.session import map_actor_pool

WINDOW_COLUMN = "window"
EMBEDDING_COLUMN = "embedding"


def embed_batch(encoder: TemporalUnet, windows: np.ndarray | torch.Tensor, pool: str, normalize: bool) -> np.ndarray:
    """(B, H, obs_dim) windows -> (B, D) float32 embeddings; bf16 autocast on GPU, exact fp32 on CPU."""
    device = next(encoder.parameters()).device
    x = torch.as_tensor(np.asarray(windows, dtype=np.float32)).to(device, non_blocking=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    with torch.inference_mode(), autocast:
        z = encoder.embed(x, pool=pool, normalize=normalize)  # (B, D), float32
    return z.cpu().numpy()


def embed_array(windows_np: np.ndarray, encoder: TemporalUnet, cfg: ExperimentConfig, batch_size: int | None = None) -> np.ndarray:
    """Embed windows (N, H, obs_dim) in this process, ``batch_size`` at a time -> (N, D) float32."""
    batch_size = batch_size or cfg.reward.batch_size
    if windows_np.ndim != 3:
        raise DataError(f"windows must be (N, H, obs_dim), got shape {windows_np.shape}")
    dim = encoder.embedding_dim(cfg.embedding.pool)
    out = np.empty((windows_np.shape[0], dim), dtype=np.float32)
    for start in range(0, windows_np.shape[0], batch_size):
        stop = start + batch_size
        out[start:stop] = embed_batch(encoder, windows_np[start:stop], cfg.embedding.pool, cfg.embedding.normalize)
    return out


class EmbedActor:
    """Ray Data callable class: a batch of windows -> its embeddings (encoder loaded once).

    The checkpoint's contents arrive as an ObjectRef wrapped in a list (so Ray Data does not
    resolve it per batch); the actor does not read the driver's file system.
    """

    def __init__(self, checkpoint: Any, pool: str, normalize: bool, use_gpu: bool, torch_threads: int | None = None):
        import ray

        if torch_threads:
            torch.set_num_threads(torch_threads)
        if isinstance(checkpoint, (list, tuple)):
            (checkpoint,) = checkpoint
        if isinstance(checkpoint, ray.ObjectRef):
            checkpoint = ray.get(checkpoint)
        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.encoder = encoder_from_checkpoint(checkpoint, device)
        self.pool = pool
        self.normalize = normalize

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if WINDOW_COLUMN not in batch:
            raise DataError(f"the windows dataset needs a column {WINDOW_COLUMN!r}, got {sorted(batch)}")
        out = {name: column for name, column in batch.items() if name != WINDOW_COLUMN}
        out[EMBEDDING_COLUMN] = embed_batch(self.encoder, batch[WINDOW_COLUMN], self.pool, self.normalize)
        return out


def embed_dataset(windows: Any, checkpoint: Path, cfg: ExperimentConfig) -> Any:
    """Lazily map a windows dataset to embeddings with a pool of :class:`EmbedActor`.

    Args:
        windows: ``ray.data.Dataset`` with a column ``window`` ((H, obs_dim) float32) and any
            others (e.g. ``index``), which pass through unchanged.
        checkpoint: a checkpoint of :func:`tge_ray.diffusion.train.train_diffusion` (:mod:`tge_ray.diffusion.checkpoint`).
        cfg: uses ``embedding.pool``/``normalize``, ``reward.batch_size`` and ``resources``.

    Returns:
        ``ray.data.Dataset`` with ``embedding`` ((D,) float32) in place of ``window``. Row order
        is not guaranteed; keep an ``index`` column to re-order.
    """
    import ray

    data = read_checkpoint(checkpoint)
    source = f"diffusion checkpoint {str(checkpoint)!r}"
    # Checked here, on the driver, so a bad checkpoint is one line and not a failed actor pool.
    encoder_from_checkpoint(data, "cpu", source=source, horizon=cfg.windows.horizon)
    slim = {k: v for k, v in data.items() if k not in ("model_state_dict", "losses")}
    gpu = resolve_use_gpu(cfg.resources.use_gpu)
    return map_actor_pool(
        windows,
        EmbedActor,
        fn_constructor_kwargs=dict(
            checkpoint=[ray.put(slim)],
            pool=cfg.embedding.pool,
            normalize=cfg.embedding.normalize,
            use_gpu=gpu,
            torch_threads=cfg.resources.torch_threads,
        ),
        batch_size=cfg.reward.batch_size,
        compute=ray.data.ActorPoolStrategy(size=cfg.resources.embed_actors),
        num_cpus=cfg.resources.stage_cpus,
        num_gpus=1 if gpu else 0,
        batch_format="numpy",
    )
