"""DDPM maths over windows (cosine schedule, epsilon loss, EMA) and a resumable trainer state.

Pure helpers first (:func:`cosine_schedule`, :func:`q_sample`, :func:`diffusion_loss`), then the
:class:`EMA` of the weights, then :class:`DiffusionTrainerState`, whose ``state_dict`` holds the
model, the EMA model, the optimiser, the step counter and the RNG state, so that a run stopped
and resumed from it is the same run as one never stopped.

Step convention (as in Diffuser): the model sees integer steps t in [0, K-1]; step t carries the
noise level alpha_bar[t] = prod_{i<=t} (1 - beta_i), so t = 0 is the least noisy level, and the
embedding phi(tau, 0) feeds the clean window at that step.
"""

from __future__ import annotations

import copy
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tge_ray.config import DiffusionConfig

# ----------------------------------------------------------------------------- pure helpers


@dataclass(frozen=True)
class NoiseSchedule:
    """Per-step tensors of a DDPM schedule, each of shape (K,)."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor

    @property
    def n_timesteps(self) -> int:
        return int(self.betas.shape[0])

    def to(self, device: torch.device | str) -> NoiseSchedule:
        return NoiseSchedule(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def cosine_schedule(n_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
    """Cosine schedule of Nichol & Dhariwal (2021), eq. 17.

    f(t) = cos^2(((t / K) + s) / (1 + s) * pi / 2),  alpha_bar_t = f(t) / f(0),
    beta_t = min(1 - alpha_bar_t / alpha_bar_{t-1}, max_beta),  t = 1..K.
    Computed in float64, stored as float32.
    """
    steps = torch.arange(n_timesteps + 1, dtype=torch.float64)
    f = torch.cos(((steps / n_timesteps) + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(0, max_beta)
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    return NoiseSchedule(
        betas=betas.float(),
        alphas_cumprod=alphas_cumprod.float(),
        sqrt_alphas_cumprod=alphas_cumprod.sqrt().float(),
        sqrt_one_minus_alphas_cumprod=(1 - alphas_cumprod).sqrt().float(),
    )


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Forward process x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise.

    x0, noise: (B, H, D); t: (B,) integer steps in [0, K-1].
    """
    a = schedule.sqrt_alphas_cumprod[t].view(-1, *([1] * (x0.dim() - 1)))
    b = schedule.sqrt_one_minus_alphas_cumprod[t].view(-1, *([1] * (x0.dim() - 1)))
    return a * x0 + b * noise


def diffusion_loss(
    model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """Epsilon-prediction loss: mean over all elements of (model(x_t, t) - noise)^2 (a 0-dim tensor).

    The schedule is an argument (not global state) so the function stays pure.
    """
    prediction = model(q_sample(x0, t, noise, schedule), t)
    return F.mse_loss(prediction.float(), noise)


# ----------------------------------------------------------------------------- EMA


class EMA:
    """Exponential moving average of a model's weights (the weights used for embedding).

    Before ``start`` the EMA copies the weights (as Diffuser does), after it
    ema <- decay * ema + (1 - decay) * weights at every update.
    """

    def __init__(self, model: nn.Module, decay: float, start: int) -> None:
        self.decay = decay
        self.start = start
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        ema_params = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        if step < self.start:
            torch._foreach_copy_(ema_params, params)
        else:
            torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for ema_buffer, buffer in zip(self.model.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)


# ----------------------------------------------------------------------------- trainer state


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside a DDP / compiled wrapper."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def make_adam(params: Any, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device (CPU and CUDA in torch >= 2.4)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - old torch or exotic device
        return torch.optim.Adam(params, lr=lr, foreach=True)


class DiffusionTrainerState:
    """Model, EMA, optimiser, step counter and RNG of one DDPM training run.

    ``model`` may be wrapped (DDP from ``ray.train.torch.prepare_model``); the EMA and the
    checkpoint always hold the bare module. ``update`` returns the loss as a detached device
    tensor instead of a float: reading it would sync host and device every step, so the caller
    reads losses only when it reports them (see :meth:`mean_loss`).

    ``bf16`` runs the forward pass under bf16 autocast; ``None`` (the pipeline's choice) means on
    CUDA and off on CPU, where bf16 matmuls are slower than fp32 on the CPUs we measured.
    """

    def __init__(self, model: nn.Module, cfg: DiffusionConfig, *, seed: int, device: torch.device | str = "cpu",
                 bf16: bool | None = None):
        self.cfg = cfg
        self.device = torch.device(device)
        self.bf16 = self.device.type == "cuda" if bf16 is None else bf16
        self.model = model
        self.ema = EMA(unwrap(model), cfg.ema_decay, cfg.ema_start)
        self.optimizer = make_adam(model.parameters(), cfg.lr)
        self.schedule = cosine_schedule(cfg.n_timesteps).to(self.device)
        # One generator for steps and noise, on the device, so the RNG lives in the checkpoint.
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.step = 0
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_count = 0

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def update(self, x0: torch.Tensor) -> torch.Tensor:
        """One gradient step on clean windows x0 (B, H, D); returns the detached loss."""
        x0 = x0.to(self.device, non_blocking=True)
        t = torch.randint(0, self.cfg.n_timesteps, (x0.shape[0],), device=self.device, generator=self.generator)
        noise = torch.randn(x0.shape, device=self.device, dtype=x0.dtype, generator=self.generator)
        self.model.train()
        with self._autocast():
            loss = diffusion_loss(self.model, x0, t, noise, self.schedule)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        self.ema.update(unwrap(self.model), self.step)
        loss = loss.detach()
        self._loss_sum += loss
        self._loss_count += 1
        return loss

    def mean_loss(self) -> float:
        """Mean loss since the last call (one host sync), NaN if no step was taken."""
        if self._loss_count == 0:
            return float("nan")
        value = float(self._loss_sum) / self._loss_count
        self._loss_sum.zero_()
        self._loss_count = 0
        return value

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": unwrap(self.model).state_dict(),
            "ema": self.ema.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.model).load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.generator.set_state(state["rng"].cpu())
