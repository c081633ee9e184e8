"""Diffuser-style temporal U-Net over state windows, and its encoder half used as the embedding.

The network follows ``TemporalUnet`` of Janner et al. (2022), github jannerm/diffuser
``diffuser/models/temporal.py``: residual blocks of Conv1d + GroupNorm(8) + Mish with the
diffusion-step embedding added after the first convolution, a sinusoidal step embedding + MLP,
strided Conv1d down-sampling, ConvTranspose1d up-sampling, two mid blocks and skip connections.
At dim 32, multipliers 1-2-4-8, horizon 32 and 11-dim states it has 3.96M parameters, as in
Diffuser (no attention, no conditioning).

Differences from Diffuser, on purpose:
- A horizon that cannot be halved ``len(dim_mults) - 1`` times (1, 2, 4 with four levels) uses
  fewer down steps (:meth:`DiffusionConfig.down_steps_for`): the levels beyond replace their
  Downsample/Upsample with the identity, so H = 1 runs the same blocks without any resampling.
- The skip output of the first level, which Diffuser computes but never reads, is not kept.
- Convolutions over fewer than 5 time steps (the bottleneck) run as one dense GEMM
  (:class:`TemporalConv1d`); same parameters, same result up to float rounding, less work.
- The Mish of the step embedding, which every block's time MLP starts with, is computed once.
- :meth:`TemporalUnet.embed` runs only the down path and the mid blocks at diffusion step 0 and
  pools the bottleneck (B, C, H') over time: z = phi_theta(tau, 0) of the TGE paper.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from tge_ray.config import DiffusionConfig

Pool = Literal["mean", "max", "flatten"]
GROUPS = 8
KERNEL = 5


class SinusoidalPosEmb(nn.Module):
    """Transformer-style sinusoidal embedding of the diffusion step: (B,) -> (B, dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        scale = math.log(10000) / max(half - 1, 1)
        self.register_buffer("freqs", torch.exp(torch.arange(half) * -scale), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None, :]  # (B, dim/2)
        return torch.cat((angles.sin(), angles.cos()), dim=-1)


class TemporalConv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters and state dict) that runs short inputs as one dense GEMM.

    With padding k // 2, an input of length H < k makes most taps hit zeros: H = 4, k = 5 wastes
    30% of the multiply-adds and H = 1 wastes 80%. For such lengths the convolution is written as
    its (C_in*H, C_out*H) block-Toeplitz matrix, so one GEMM does only H*H*C_in*C_out work. The
    bottleneck levels of the U-Net (H' = 4 at H = 32, every level at H = 1) hold most of the
    network's arithmetic, so this is a sizeable share of the whole.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def dense_weight(self, length: int) -> torch.Tensor:
        """(C_in*H, C_out*H) matrix M with M[(i, h_in), (o, h_out)] = w[o, i, h_in - h_out + k//2]."""
        k = self.kernel_size[0]
        # Zero-pad the taps by H - 1 on each side; output position h_out then reads the slice
        # starting at H + k//2 - 1 - h_out. Slices and one stack: a cheap backward (no scatter).
        padded = F.pad(self.weight.transpose(0, 1), (length - 1, length - 1))  # (C_in, C_out, k+2H-2)
        first = length + k // 2 - 1
        columns = [padded[:, :, first - h: first - h + length].transpose(1, 2) for h in range(length)]
        dense = torch.stack(columns, dim=-1)  # (C_in, H_in, C_out, H_out), contiguous
        return dense.view(self.in_channels * length, self.out_channels * length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        if length >= self.kernel_size[0]:
            return super().forward(x)
        batch = x.shape[0]
        out = torch.addmm(
            self.bias.repeat_interleave(length),
            x.reshape(batch, self.in_channels * length),
            self.dense_weight(length),
        )
        return out.view(batch, self.out_channels, length)


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm(8) -> Mish on (B, C, H)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = KERNEL) -> None:
        super().__init__()
        self.conv = TemporalConv1d(in_channels, out_channels, kernel_size)
        # 8 groups as in Diffuser; gcd keeps widths that 8 does not divide legal.
        self.norm = nn.GroupNorm(math.gcd(GROUPS, out_channels), out_channels)

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        out = F.mish(self.norm(self.conv(x)))
        # Diffuser adds the step embedding after the activation of the first block.
        return out if shift is None else out + shift


class ResidualTemporalBlock(nn.Module):
    """Two Conv1dBlocks with the step embedding injected between them, plus a 1x1 residual."""

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.block1 = Conv1dBlock(in_channels, out_channels)
        self.block2 = Conv1dBlock(out_channels, out_channels)
        self.time_mlp = nn.Linear(embed_dim, out_channels)  # applied to mish(t_emb)
        self.residual_conv = (
            nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor, t_act: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, H); t_act: (B, embed_dim), already passed through Mish (shared by blocks).
        out = self.block1(x, self.time_mlp(t_act)[:, :, None])
        return self.block2(out) + self.residual_conv(x)


class TemporalUnet(nn.Module):
    """Epsilon network: windows (B, H, obs_dim) and steps (B,) -> noise estimate (B, H, obs_dim)."""

    def __init__(self, obs_dim: int, horizon: int, cfg: DiffusionConfig) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.horizon = horizon
        self.n_down = cfg.down_steps_for(horizon)  # raises ConfigError naming allowed horizons
        dim = cfg.dim
        dims = [obs_dim, *(dim * m for m in cfg.dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:]))
        levels = len(in_out)

        self.time_mlp = nn.Sequential(
            SinusoidalPosEmb(dim), nn.Linear(dim, dim * 4), nn.Mish(), nn.Linear(dim * 4, dim)
        )
        self.downs = nn.ModuleList()
        for level, (dim_in, dim_out) in enumerate(in_out):
            self.downs.append(
                nn.ModuleList(
                    [
                        ResidualTemporalBlock(dim_in, dim_out, dim),
                        ResidualTemporalBlock(dim_out, dim_out, dim),
                        nn.Conv1d(dim_out, dim_out, 3, 2, 1) if level < self.n_down else nn.Identity(),
                    ]
                )
            )
        mid = dims[-1]
        self.mid_block1 = ResidualTemporalBlock(mid, mid, dim)
        self.mid_block2 = ResidualTemporalBlock(mid, mid, dim)
        self.ups = nn.ModuleList()
        for j, (dim_in, dim_out) in enumerate(reversed(in_out[1:])):
            # Up j meets the skip of level levels-1-j and must reach the resolution of level
            # levels-2-j, so it up-samples exactly when that level down-sampled.
            upsample = (levels - 2 - j) < self.n_down
            self.ups.append(
                nn.ModuleList(
                    [
                        ResidualTemporalBlock(dim_out * 2, dim_in, dim),
                        ResidualTemporalBlock(dim_in, dim_in, dim),
                        nn.ConvTranspose1d(dim_in, dim_in, 4, 2, 1) if upsample else nn.Identity(),
                    ]
                )
            )
        self.final_block = Conv1dBlock(dim, dim)
        self.final_conv = nn.Conv1d(dim, obs_dim, 1)
        self.embed_dim_per_step = mid
        self.bottleneck_length = horizon // 2**self.n_down

    # ------------------------------------------------------------------ forward paths

    def _step_features(self, t: torch.Tensor) -> torch.Tensor:
        # Every block's time MLP starts with Mish(t_emb); computing it once is the same maths.
        return F.mish(self.time_mlp(t))

    def _encode(self, x: torch.Tensor, t_act: torch.Tensor, keep_skips: bool) -> tuple[torch.Tensor, list]:
        # x: (B, H, obs_dim) -> bottleneck (B, C_mid, H / 2**n_down) and skips for the up path.
        h = x.transpose(1, 2)  # (B, obs_dim, H)
        skips = []
        for level, (res1, res2, down) in enumerate(self.downs):
            h = res2(res1(h, t_act), t_act)
            if keep_skips and level > 0:  # Diffuser never reads the first level's skip
                skips.append(h)
            h = down(h)
        h = self.mid_block2(self.mid_block1(h, t_act), t_act)
        return h, skips

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: (B, H, obs_dim) noisy windows; t: (B,) integer steps -> epsilon (B, H, obs_dim)."""
        t_act = self._step_features(t)
        h, skips = self._encode(x, t_act, keep_skips=True)
        for res1, res2, up in self.ups:
            h = torch.cat((h, skips.pop()), dim=1)
            h = up(res2(res1(h, t_act), t_act))
        h = self.final_conv(self.final_block(h))
        return h.transpose(1, 2)

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder half at diffusion step 0: (B, H, obs_dim) -> (B, C_mid, H / 2**n_down)."""
        t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return self._encode(x, self._step_features(t), keep_skips=False)[0]

    def embed(self, x: torch.Tensor, pool: Pool = "mean", normalize: bool = True) -> torch.Tensor:
        """z = phi(x, 0) pooled over time: (B, H, obs_dim) -> (B, D).

        D is C_mid for ``mean``/``max`` and C_mid * H' for ``flatten`` (time order kept).
        The up path is not run.
        """
        h = self.bottleneck(x)
        if pool == "mean":
            z = h.mean(dim=2)
        elif pool == "max":
            z = h.amax(dim=2)
        elif pool == "flatten":
            z = h.flatten(1)
        else:
            raise ValueError(f"pool={pool!r}: use mean, max or flatten")
        z = z.float()
        return F.normalize(z, dim=1) if normalize else z

    def embedding_dim(self, pool: Pool = "mean") -> int:
        """D of :meth:`embed` for this network and pooling."""
        return self.embed_dim_per_step * (self.bottleneck_length if pool == "flatten" else 1)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


if __name__ == "__main__":
    net = TemporalUnet(11, 32, DiffusionConfig())
    print(f"TemporalUnet(obs_dim=11, horizon=32, dim=32, mults=1-2-4-8): {count_parameters(net):,} parameters")
