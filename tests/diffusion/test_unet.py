"""Temporal U-Net: shapes over horizons, the encoder-only embedding, horizon errors."""

from __future__ import annotations

import pytest
import torch

from tge_ray.config import DiffusionConfig
from tge_ray.diffusion.unet import TemporalUnet, count_parameters
from tge_ray.errors import ConfigError

torch.set_num_threads(1)
TINY = DiffusionConfig(dim=8, dim_mults=(1, 2, 4, 8))


@pytest.mark.parametrize("horizon", [1, 4, 8, 16, 32, 64])
def test_shapes_over_horizons(horizon):
    torch.manual_seed(0)
    net = TemporalUnet(obs_dim=5, horizon=horizon, cfg=TINY)
    x = torch.randn(3, horizon, 5)
    eps = net(x, torch.tensor([0, 3, 19]))
    assert eps.shape == x.shape
    for pool in ("mean", "max", "flatten"):
        z = net.embed(x, pool=pool)
        assert z.shape == (3, net.embedding_dim(pool))
        torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    assert net.embed(x, normalize=False).norm(dim=1).gt(0).all()


def test_down_steps_follow_the_config():
    assert TemporalUnet(5, 1, TINY).n_down == 0
    assert TemporalUnet(5, 4, TINY).n_down == 2
    assert TemporalUnet(5, 32, TINY).bottleneck_length == 4


def test_bad_horizon_names_allowed_horizons():
    with pytest.raises(ConfigError, match=r"windows.horizon=12 .*1, 2, 4 or a multiple of 8"):
        TemporalUnet(5, 12, TINY)


def test_reference_size_matches_diffuser():
    net = TemporalUnet(obs_dim=11, horizon=32, cfg=DiffusionConfig())
    n = count_parameters(net)
    print(f"reference TemporalUnet parameters: {n:,}")
    assert abs(n - 3.96e6) < 0.01e6


def test_embed_is_the_bottleneck_at_step_zero_and_skips_the_up_path():
    torch.manual_seed(0)
    net = TemporalUnet(5, 16, TINY).eval()
    x = torch.randn(4, 16, 5)
    called = []
    for module in net.ups.modules():
        module.register_forward_hook(lambda *_: called.append(1))
    net.final_conv.register_forward_hook(lambda *_: called.append(1))
    z = net.embed(x, pool="mean", normalize=False)
    assert not called
    # Same bottleneck as the full forward pass at t = 0 computes on its way down.
    seen = {}
    net.mid_block2.register_forward_hook(lambda m, i, out: seen.setdefault("h", out))
    net(x, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(z, seen["h"].mean(dim=2))
