"""Implicit Q-Learning (Kostrikov et al., 2021), following CORL's ``algorithms/offline/iql.py``.

    L_V  = E[ |tau - 1(u < 0)| u^2 ],            u = min_j Q'_j(s, a) - V(s)
    L_Q  = mean_j E[ (Q_j(s, a) - r - gamma (1 - d) V(s'))^2 ]
    L_pi = E[ min(exp(beta (min_j Q'_j(s, a) - V(s))), max_weight) * -log pi(a | s) ]

Choices and differences from CORL, written down:
- Actor: CORL's default Gaussian policy (``iql_deterministic=False``): mean = tanh(MLP(s)), a
  state-independent log-std clamped to [-20, 2]; evaluation uses the mean. Kept because it is
  what CORL's locomotion results use.
- One optimiser step per update instead of three: the three losses touch disjoint parameters,
  next_V and the advantage are taken with the pre-update V and target Q (as in CORL), so summing
  them and running one backward and one fused Adam (actor in its own parameter group, with the
  cosine schedule) gives the same parameters as CORL's three sequential steps, in fewer kernels.
- Twin critics are one batched ensemble (``EnsembleMLP``), not two MLPs.
- Actions are trained in [-1, 1] (mapped from the action box); observations normalised.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from tge_ray.config import IQLConfig
from tge_ray.rl import losses
from tge_ray.rl.buffer import Batch
from tge_ray.rl.learner import Learner, cosine_lr, make_adam, seeded_init, soft_update
from tge_ray.rl.nets import EnsembleMLP, mlp


class IQL(Learner):
    """IQL learner; the oracle baseline is this class trained on the dataset's true rewards."""

    method = "iql"

    def __init__(
        self,
        cfg: IQLConfig,
        **problem: Any,
    ) -> None:
        super().__init__(batch_size=cfg.batch_size, **problem)  # the problem's dims, box, stats, seed
        obs_dim, act_dim, device, seed = self.obs_dim, self.act_dim, self.device, self.seed
        self.cfg = cfg
        with seeded_init(seed):
            self.policy = self._make_policy(cfg.hidden, cfg.n_layers)
            self.log_std = nn.Parameter(torch.zeros(act_dim))
            self.critic = EnsembleMLP(obs_dim + act_dim, cfg.hidden, cfg.n_layers, members=2)
            self.value = mlp(obs_dim, 1, cfg.hidden, cfg.n_layers)
        self.policy.to(device)
        self.log_std = nn.Parameter(self.log_std.detach().to(device))
        self.critic.to(device)
        self.value.to(device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_params = [*self.policy.net.parameters(), self.log_std]
        self.optimizer = make_adam(
            [
                {"params": [*self.critic.parameters(), *self.value.parameters()]},
                {"params": self.actor_params},  # group 1: cosine schedule
            ],
            cfg.lr,
            device,
        )
        self._online = list(self.critic.parameters())
        self._target = list(self.target_critic.parameters())
        self._modules = {"policy": self.policy, "critic": self.critic, "target_critic": self.target_critic,
                         "value": self.value}
        self._optimizers = {"optimizer": self.optimizer}
        self._loss_fn = self._maybe_compile(self._losses)

    def _losses(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum of the value, critic and actor losses (disjoint parameters), and metrics."""
        cfg = self.cfg
        with torch.no_grad():
            target_q = self.target_critic(batch.observation_actions).min(0).values  # (B,)
            next_v = self.value(batch.next_observations).squeeze(-1)  # (B,)
        v = self.value(batch.observations).squeeze(-1)  # (B,)
        advantages = target_q - v
        value_loss = losses.asymmetric_l2_loss(advantages, cfg.expectile)

        targets = losses.td_target(batch.rewards, batch.terminals, cfg.discount, next_v)
        q = self.critic(batch.observation_actions)  # (2, B)
        q_loss = losses.td_loss(q, targets, reduction="mean")

        weights = losses.awr_weights(advantages, cfg.beta, cfg.max_weight)
        mean = self.policy.net(batch.observations)  # (B, act_dim) in [-1, 1]
        nll = losses.gaussian_nll(mean, self.log_std, batch.actions)
        actor_loss = losses.awr_actor_loss(weights, nll)
        metrics = {
            "value_loss": value_loss.detach(),
            "q_loss": q_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "q_mean": q.detach().mean(),
            "adv_mean": advantages.detach().mean(),
        }
        return value_loss + q_loss + actor_loss, metrics

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        total, metrics = self._loss_fn(batch)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.step += 1
        self.optimizer.param_groups[1]["lr"] = cosine_lr(self.cfg.lr, self.step, self.total_steps)
        soft_update(self._target, self._online, self.cfg.tau)
        return metrics

    def _extra_state(self) -> dict[str, Any]:
        return {"log_std": self.log_std.detach().clone()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_std.copy_(state["log_std"])
