"""The diffusion checkpoint format, ``tge-diffusion-v1``: one file the diffusion stage writes
and the embedding stage (and any reader of a run) loads the encoder from.

    {"format": "tge-diffusion-v1", "obs_dim", "horizon", "diffusion_config": {...},
     "ema_state_dict", "model_state_dict", "step", "losses": [[step, loss], ...]}

Written atomically (:func:`tge_ray.io.torch_save`); read with ``weights_only=True``, and every
problem (missing, truncated, another format, a config its weights do not fit) is one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tge_ray.config import DiffusionConfig, to_dict
from tge_ray.diffusion.unet import TemporalUnet
from tge_ray.errors import TGEError
from tge_ray.io import torch_save
from tge_ray.pipeline.upgrade import checkpoint_diffusion_config

FORMAT = "tge-diffusion-v1"
FIELDS = ("obs_dim", "horizon", "diffusion_config", "ema_state_dict", "model_state_dict", "step")


def diffusion_config_from_dict(data: dict[str, Any]) -> DiffusionConfig:
    """Rebuild a DiffusionConfig from its saved dict (lists back to tuples), older files included."""
    data = checkpoint_diffusion_config(data)
    data["dim_mults"] = tuple(data["dim_mults"])
    return DiffusionConfig(**data)


def write_checkpoint(
    path: Path,
    *,
    obs_dim: int,
    horizon: int,
    cfg: DiffusionConfig,
    ema_state_dict: dict[str, torch.Tensor],
    model_state_dict: dict[str, torch.Tensor],
    step: int,
    losses: list[tuple[int, float]] | list[list[float]],
) -> Path:
    """Write a ``tge-diffusion-v1`` file atomically (temporary file + ``os.replace``)."""
    torch_save(
        {
            "format": FORMAT,
            "obs_dim": int(obs_dim),
            "horizon": int(horizon),
            "diffusion_config": to_dict(cfg),
            "ema_state_dict": ema_state_dict,
            "model_state_dict": model_state_dict,
            "step": int(step),
            "losses": [[int(s), float(v)] for s, v in losses],
        },
        Path(path),
    )
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checked contents of a diffusion checkpoint; TGEError (one line) if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise TGEError(f"diffusion checkpoint {str(path)!r} does not exist: train the diffusion stage first")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TGEError(f"diffusion checkpoint {str(path)!r} cannot be read (corrupt or truncated?): {reason}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise TGEError(f"{str(path)!r} is not a {FORMAT} diffusion checkpoint (format {found!r}): retrain it")
    missing = [k for k in FIELDS if k not in data]
    if missing:
        raise TGEError(f"diffusion checkpoint {str(path)!r} lacks {', '.join(missing)}: retrain it")
    return data


def encoder_from_checkpoint(
    data: dict[str, Any],
    device: str | torch.device = "cpu",
    *,
    source: str = "diffusion checkpoint",
    obs_dim: int | None = None,
    horizon: int | None = None,
) -> TemporalUnet:
    """The EMA U-Net of checked checkpoint contents (:func:`read_checkpoint`), eval mode, frozen."""
    for name, expected in (("obs_dim", obs_dim), ("horizon", horizon)):
        if expected is not None and data[name] != expected:
            raise TGEError(
                f"{source} was trained with {name}={data[name]}, but the windows have "
                f"{name}={expected}: retrain it for these windows"
            )
    try:
        cfg = diffusion_config_from_dict(data["diffusion_config"])
        model = TemporalUnet(int(data["obs_dim"]), int(data["horizon"]), cfg)
        model.load_state_dict(data["ema_state_dict"])
    except (TGEError, TypeError, KeyError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TGEError(f"{source} does not match its own config: {reason}") from None
    return model.to(device).eval().requires_grad_(False)


def load_encoder(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    obs_dim: int | None = None,
    horizon: int | None = None,
) -> TemporalUnet:
    """The EMA U-Net of a diffusion checkpoint in eval mode, without gradients.

    ``obs_dim`` / ``horizon``, when given, must match the checkpoint's (the windows to embed).
    Raises TGEError with one line for a missing, corrupt or mismatched checkpoint.
    """
    data = read_checkpoint(path)
    source = f"diffusion checkpoint {str(path)!r}"
    return encoder_from_checkpoint(data, device, source=source, obs_dim=obs_dim, horizon=horizon)
