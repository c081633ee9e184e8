"""Kernel rewards on k-NN distances, and the scaling applied before offline RL.

Pure functions: they take the (N, k) *Euclidean* distances from each transition's embedding to
its k nearest expert embeddings and return one reward per transition. Faiss' ``IndexFlatL2``
returns *squared* distances; :func:`euclidean_from_squared` is the one place that converts them
(``tge_ray.reward.knn`` calls it, so everything downstream of the index is Euclidean).

    log (default):  r = -log(1 + (1/k) * sum_j d_j / sigma)             in (-inf, 0]
    gaussian:       r = (1/k) * sum_j exp(-d_j^2 / (2 sigma^2))          in [0, 1]

The gaussian's terms underflow float32 below exp(-87): every window farther than about 13.2 sigma
from all its k expert windows gets exactly 0, and those windows tie. L2-normalised embeddings (the
default) lie at most 2 apart, so sigma >= 0.16 keeps every gaussian reward above 0 and ordered.

Both accept NumPy arrays or torch tensors and return the same kind (float32 for NumPy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

KERNELS = ("log", "gaussian")
SCALE_MODES = ("rank", "minmax", "standard", "none")
RANK_KNOTS = 1001  # quantiles kept by ``rank`` scaling: scaled values are exact to 1/1000

Kernel = Literal["log", "gaussian"]
ScaleMode = Literal["rank", "minmax", "standard", "none"]
ArrayLike = Any  # np.ndarray or torch.Tensor


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def euclidean_from_squared(squared_distances: np.ndarray) -> np.ndarray:
    """Squared L2 distances (as faiss returns them) -> Euclidean distances, float32, in place.

    Faiss computes ||x||^2 + ||y||^2 - 2<x, y> for batches, which can come out slightly below
    zero for (near-)identical vectors; those are clamped to 0 before the square root.
    """
    out = np.asarray(squared_distances, dtype=np.float32)
    np.maximum(out, 0.0, out=out)
    np.sqrt(out, out=out)
    return out


def _check_distances(distances: Any) -> None:
    if distances.ndim != 2:
        raise ValueError(f"distances must be (N, k), got shape {tuple(distances.shape)}")
    if distances.shape[1] < 1:
        raise ValueError("distances must hold at least one neighbour per row (k >= 1)")


def log_kernel(distances: ArrayLike, sigma: float = 1.0) -> ArrayLike:
    """r = -log(1 + mean_j(d_j) / sigma); distances (N, k) Euclidean -> rewards (N,)."""
    _check_distances(distances)
    if _is_torch(distances):
        import torch

        return -torch.log1p(distances.mean(dim=1) / sigma)
    mean = np.asarray(distances, dtype=np.float64).mean(axis=1)  # (N,)
    return (-np.log1p(mean / sigma)).astype(np.float32)


def gaussian_kernel(distances: ArrayLike, sigma: float = 1.0) -> ArrayLike:
    """r = mean_j exp(-d_j^2 / (2 sigma^2)); distances (N, k) Euclidean -> rewards (N,)."""
    _check_distances(distances)
    if _is_torch(distances):
        import torch

        return torch.exp(-(distances**2) / (2.0 * sigma**2)).mean(dim=1)
    d = np.asarray(distances, dtype=np.float64)
    return np.exp(-(d**2) / (2.0 * sigma**2)).mean(axis=1).astype(np.float32)


def kernel_reward(distances: ArrayLike, kernel: Kernel = "log", sigma: float = 1.0) -> ArrayLike:
    """Reward per row of ``distances`` (N, k), Euclidean, with the named kernel -> (N,)."""
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    if kernel == "log":
        return log_kernel(distances, sigma)
    if kernel == "gaussian":
        return gaussian_kernel(distances, sigma)
    raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")


@dataclass(frozen=True)
class RewardScaling:
    """How raw rewards were scaled: ``scaled = (raw - shift) / divisor``, or by rank.

    ``rank``: a reward's quantile among D_mu's, in [0, 1]: ``knots`` holds D_mu's raw rewards at
    the quantiles 0, 1/1000, ..., 1, and a raw reward maps to its linear interpolation there
    (clipped to [0, 1] outside them). Ties share one value. Only the reward's order counts, so one
    outlying window cannot squeeze the rest into a narrow band as it can under min-max.
    ``minmax``: shift = min, divisor = max - min over D_mu, so D_mu's rewards span [0, 1].
    ``standard``: shift = mean, divisor = std (population), zero mean and unit std.
    ``none``: shift = 0, divisor = 1.
    A constant reward vector (max == min, or std == 0) keeps divisor = 1, so it maps to 0
    rather than dividing by zero; ``degenerate`` says so.
    """

    mode: ScaleMode
    shift: float
    divisor: float
    degenerate: bool = False
    knots: tuple[float, ...] | None = None

    def apply(self, rewards: np.ndarray) -> np.ndarray:
        """Scale ``rewards`` (any shape) with these parameters; float32."""
        r = np.asarray(rewards, dtype=np.float64)
        if self.mode == "rank" and not self.degenerate:
            return _rank_scale(r, np.asarray(self.knots, np.float64))
        return ((r - self.shift) / self.divisor).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain form for reports and result files."""
        plain = {"mode": self.mode, "shift": self.shift, "divisor": self.divisor, "degenerate": self.degenerate}
        if self.knots is not None:
            plain["knots"] = list(self.knots)
        return plain


def _rank_scale(raw: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Quantile of each raw reward among ``knots`` (D_mu's quantiles), ties sharing the middle."""
    levels = np.linspace(0.0, 1.0, len(knots))
    lower = np.interp(raw, knots, levels, left=0.0, right=1.0)
    upper = 1.0 - np.interp(-raw, -knots[::-1], levels, left=0.0, right=1.0)
    return ((lower + upper) / 2).astype(np.float32)


def scale_rewards(rewards: np.ndarray, mode: ScaleMode = "minmax") -> tuple[np.ndarray, RewardScaling]:
    """Scale raw rewards (N,) of D_mu for the backbone; returns (scaled float32, parameters)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"rewards must be (N,), got shape {r.shape}")
    if mode not in SCALE_MODES:
        raise ValueError(f"scale mode must be one of {SCALE_MODES}, got {mode!r}")
    if mode == "none" or r.size == 0:
        scaling = RewardScaling(mode, 0.0, 1.0)
    elif not np.all(np.isfinite(r)):
        raise ValueError("rewards hold NaN or inf values; cannot scale them")
    elif mode == "rank":
        knots = np.quantile(r, np.linspace(0.0, 1.0, RANK_KNOTS))
        if knots[0] == knots[-1]:
            scaling = RewardScaling(mode, float(knots[0]), 1.0, degenerate=True)
        else:
            scaling = RewardScaling(mode, float(knots[0]), 1.0, knots=tuple(float(k) for k in knots))
    elif mode == "minmax":
        low, high = float(r.min()), float(r.max())
        spread = high - low
        scaling = RewardScaling(mode, low, spread if spread > 0 else 1.0, degenerate=spread <= 0)
    else:
        mean, std = float(r.mean()), float(r.std())
        scaling = RewardScaling(mode, mean, std if std > 0 else 1.0, degenerate=std <= 0)
    return scaling.apply(r), scaling
