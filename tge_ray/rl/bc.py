"""Behaviour cloning on all of D_mu: a tanh MLP actor regressed onto the dataset's actions.

    L = E[ ||pi(s) - a||^2 ]   (actions in [-1, 1], observations normalised)

The baseline that says how much of a score comes from the data alone, without any reward.
With ``lr_schedule="cosine"`` the learning rate anneals to 0 at the last update (IQL's actor
schedule); ``constant`` is CORL's BC.
"""

from __future__ import annotations

from typing import Any

import torch

from tge_ray.rl import losses
from tge_ray.rl.buffer import Batch
from tge_ray.rl.learner import Learner, cosine_lr, make_adam, seeded_init


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
        lr_schedule: str = "constant",
        **problem: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **problem)  # the problem's dims, box, stats, seed
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown BC lr_schedule {lr_schedule!r}: use constant or cosine")
        self.lr, self.lr_schedule = lr, lr_schedule
        device, seed = self.device, self.seed
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
        if self.lr_schedule == "cosine":
            self.optimizer.param_groups[0]["lr"] = cosine_lr(self.lr, self.step, self.total_steps)
        loss = self._loss_fn(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"bc_loss": loss.detach()}
