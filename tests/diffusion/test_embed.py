"""Ray Data embedding through the actor pool equals the in-process embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tge_ray.config import DiffusionConfig, load_config
from tge_ray.diffusion.checkpoint import load_encoder, write_checkpoint
from tge_ray.diffusion.embed import embed_array, embed_dataset
from tge_ray.diffusion.unet import TemporalUnet
from tge_ray.errors import TGEError

torch.set_num_threads(1)


def _checkpoint(path, horizon, obs_dim, cfg):
    torch.manual_seed(0)
    model = TemporalUnet(obs_dim, horizon, cfg)
    return write_checkpoint(path, obs_dim=obs_dim, horizon=horizon, cfg=cfg, ema_state_dict=model.state_dict(),
                            model_state_dict=model.state_dict(), step=0, losses=[])


def test_ray_data_embedding_equals_in_process(ray_session, tmp_path):
    # One actor-pool run (actors are slow to start on 2 cores); other poolings are
    # checked in-process in test_unet.py.
    import ray

    cfg = load_config(None, ["windows.horizon=8", "diffusion.dim=8", "diffusion.dim_mults=[1,2]",
                             "reward.batch_size=32", "resources.use_gpu=false"])
    path = _checkpoint(tmp_path / "model.pt", 8, 3, cfg.diffusion)
    windows = np.random.default_rng(1).standard_normal((100, 8, 3)).astype(np.float32)
    index = np.arange(100, dtype=np.int64)
    dataset = ray.data.from_items([{"index": i, "window": w, "episode": i // 10} for i, w in zip(index, windows)])

    rows = embed_dataset(dataset, path, cfg).to_pandas()
    assert set(rows.columns) == {"index", "embedding", "episode"}
    order = np.argsort(rows["index"].to_numpy())
    from_ray = np.stack(rows["embedding"].to_numpy()[order])
    assert from_ray.dtype == np.float32
    np.testing.assert_array_equal(rows["episode"].to_numpy()[order], index // 10)

    in_process = embed_array(windows, load_encoder(path), cfg, batch_size=17)
    assert in_process.shape == (100, 16)
    np.testing.assert_allclose(from_ray, in_process, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(in_process, axis=1), 1.0, rtol=1e-5)


def test_embed_dataset_checks_the_checkpoint_on_the_driver(tmp_path):
    cfg = load_config(None, ["windows.horizon=16", "diffusion.dim=8", "diffusion.dim_mults=[1,2]"])
    path = _checkpoint(tmp_path / "model.pt", 8, 3, DiffusionConfig(dim=8, dim_mults=(1, 2)))
    with pytest.raises(TGEError, match="horizon=8, but the windows have horizon=16"):
        embed_dataset(None, path, cfg)
