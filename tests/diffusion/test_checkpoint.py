"""The diffusion checkpoint format: a round trip, and one line for every way a file can be wrong."""

from __future__ import annotations

import pytest
import torch

from tge_ray.config import DiffusionConfig
from tge_ray.diffusion.checkpoint import load_encoder, write_checkpoint
from tge_ray.diffusion.unet import TemporalUnet
from tge_ray.errors import TGEError

OBS_DIM, HORIZON = 3, 8


def _write_tiny(path, **changes):
    cfg = DiffusionConfig(dim=8, dim_mults=(1, 2))
    model = TemporalUnet(OBS_DIM, HORIZON, cfg)
    kwargs = dict(obs_dim=OBS_DIM, horizon=HORIZON, cfg=cfg, ema_state_dict=model.state_dict(),
                  model_state_dict=model.state_dict(), step=0, losses=[])
    kwargs.update(changes)
    return write_checkpoint(path, **kwargs)


def test_load_encoder_round_trip(tmp_path):
    cfg = DiffusionConfig(dim=8, dim_mults=(1, 2))
    ema = TemporalUnet(OBS_DIM, HORIZON, cfg).state_dict()  # other weights than _write_tiny's model
    encoder = load_encoder(_write_tiny(tmp_path / "model.pt", ema_state_dict=ema))
    assert isinstance(encoder, TemporalUnet) and not encoder.training
    assert all(torch.equal(encoder.state_dict()[name], value) for name, value in ema.items())
    assert not list(tmp_path.glob(".*.tmp")), "the atomic write left no temporary file"


def test_missing_checkpoint(tmp_path):
    with pytest.raises(TGEError, match="does not exist"):
        load_encoder(tmp_path / "nope.pt")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_checkpoint(tmp_path, damage):
    path = _write_tiny(tmp_path / "model.pt")
    if damage == "garbage":
        path.write_bytes(b"not a torch file")
    else:
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(TGEError, match="cannot be read") as info:
        load_encoder(path)
    assert "\n" not in str(info.value)


def test_wrong_format(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, path)
    with pytest.raises(TGEError, match="is not a tge-diffusion-v1"):
        load_encoder(path)


def test_shape_mismatch(tmp_path):
    wrong = TemporalUnet(OBS_DIM, HORIZON, DiffusionConfig(dim=16, dim_mults=(1, 2))).state_dict()
    path = _write_tiny(tmp_path / "model.pt", ema_state_dict=wrong)
    with pytest.raises(TGEError, match="does not match its own config") as info:
        load_encoder(path)
    assert "\n" not in str(info.value)


def test_windows_mismatch(tmp_path):
    path = _write_tiny(tmp_path / "model.pt")
    with pytest.raises(TGEError, match="horizon=8, but the windows have horizon=16"):
        load_encoder(path, horizon=16)


def test_a_checkpoint_written_before_the_embedding_section_loads(tmp_path):
    """Until record version 3 the checkpoint's diffusion_config held the embedding's pool and normalize."""
    path = _write_tiny(tmp_path / "model.pt")
    saved = torch.load(path, weights_only=True)
    saved["diffusion_config"].update(pool="max", normalize=False)
    torch.save(saved, path)
    assert isinstance(load_encoder(path, horizon=HORIZON), TemporalUnet)
