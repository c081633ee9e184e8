"""One seeding function for Python, NumPy and torch; environments and searchers take the seed."""

from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and CUDA).

    Environments are seeded where they are reset (``env.reset(seed=...)``, action spaces with
    ``space.seed``) and the Optuna sampler gets the seed in its constructor; both take it from
    the same config field. Returns a fresh NumPy ``Generator`` for local use.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
