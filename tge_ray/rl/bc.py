"""Behaviour cloning on all of D_mu: a tanh MLP actor regressed onto the dataset's actions.

    L = E[ ||pi(s) - a||^2 ]   (actions in [-1, 1], observations normalised)

The baseline that says how much of a score comes from the data alone, without any reward.
"""

from __future__ import annotations

import numpy as np
import torch

from tge_ray.rl import losses
from tge_ray.rl.buffer import Batch
from tge_ray.rl.learner import Learner, make_adam, seeded_init


class BC(Learner):
    """MSE behaviour cloning with the same interface as IQL and ReBRAC."""

    method = "bc"

    def __init__(
        self,
        *,
        hidden: int,
        n_layers: int,
        lr: float,
        batch_size: int,
        obs_dim: int,
        act_dim: int,
        action_low: np.ndarray,
        action_high: np.ndarray,
        obs_mean: np.ndarray,
        obs_std: np.ndarray,
        total_steps: int,
        device: str = "cpu",
        seed: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__(obs_dim, act_dim, action_low, action_high, obs_mean, obs_std,
                         batch_size, total_steps, device, seed, compile)
        with seeded_init(seed):
            self.policy = self._make_policy(hidden, n_layers)
        self.policy.to(device)
        self.optimizer = make_adam(self.policy.net.parameters(), lr, device)
        self._modules = {"policy": self.policy}
        self._optimizers = {"optimizer": self.optimizer}
        self._loss_fn = self._maybe_compile(self._loss)

    def _loss(self, batch: Batch) -> torch.Tensor:
        return losses.bc_loss(self.policy.net(batch.observations), batch.actions)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = self._loss_fn(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"bc_loss": loss.detach()}
