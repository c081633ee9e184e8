"""ReBRAC (Tarasov et al., 2023), following CORL's ``algorithms/offline/rebrac.py``, plus an
adaptive actor BC weight for TGE rewards.

    critic: L_Q  = sum_j E[ (Q_j(s, a) - y)^2 ],
            y    = r + gamma (1 - d) ( min_j Q'_j(s', a'~) - beta_2 ||a'~ - a'||^2 ),
            a'~  = clip(pi'(s') + clip(N(0, 0.2^2), -0.5, 0.5), -1, 1),  a' = dataset next action
    actor:  L_pi = E[ beta_1,i ||pi(s) - a||^2 - lambda min_j Q_j(s, pi(s)) ],  lambda = 1/E|Q| (no grad)
            every ``policy_freq`` updates (the first one included), followed by Polyak updates
            of the target actor and target critics, as in CORL.

Adaptive BC weight (``rebrac.adaptive_bc=true``, the default; ``false`` uses beta_1,i = beta_1):

    r~_i      = clip((r_i - r_min) / (r_max - r_min), 0, 1)     (r_min, r_max: the dataset's rewards)
    beta_1,i  = beta_1 * (1 + r~_i) / (1 + mean_batch r~)

Why: the TGE reward says how expert-like the window starting at s_i is. The BC term pulls the
policy towards the dataset's action a_i; that is the right pull where the data are expert-like
(imitation is the goal there), and a poor one on low-reward, suboptimal transitions, where the
critic should have more say. The weight is normalised to batch mean beta_1, so the tuned overall
strength of ReBRAC's constraint is unchanged, and bounded to [beta_1/2, 2 beta_1], so no
transition ever leaves the support constraint (the protection against out-of-distribution
actions that ReBRAC relies on). It adds no hyper-parameter. The function is
:func:`tge_ray.rl.losses.adaptive_bc_weights`.

A sharper rule, off by default (``rebrac.bc_sharpness`` = kappa > 0):

    beta_1,i  = beta_1 * exp(kappa r~_i) / mean_batch exp(kappa r~)

TGE rewards of expert and random transitions can differ by only a fifth of the reward range
(hopper, N = 30, seed 0: min-max scaled means 0.94 and 0.75), so the linear rule weighs them almost
alike (1.94 against 1.75). kappa = 10 imitates the expert-like ones about 7 times harder and
still keeps every weight well above zero at such a spread; a kappa of 30 releases most random
transitions from the constraint, and scored lower. It is off by default: kappa = 10 raised
TGE-ReBRAC's mean score over the late evaluations on hopper at N = 30 from 22 to 52, not to the
expert, and did not help walker2d at N = 30 (RESULTS.md, "TGE-ReBRAC with a sharper BC weight").
:func:`tge_ray.rl.losses.sharp_bc_weights`.

Differences from CORL, written down: PyTorch instead of JAX; observations are always
normalised (CORL's locomotion default is off); LayerNorm epsilon is Flax's 1e-6; the dataset's
next action at an episode's last row is the row's own action (CORL drops time-out rows).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from tge_ray.config import ReBRACConfig
from tge_ray.rl import losses
from tge_ray.rl.buffer import Batch
from tge_ray.rl.learner import Learner, make_adam, seeded_init, soft_update
from tge_ray.rl.nets import EnsembleMLP


class ReBRAC(Learner):
    """ReBRAC learner: deterministic tanh actor, twin LayerNorm critics, BC in actor and critic."""

    method = "rebrac"

    def __init__(
        self,
        cfg: ReBRACConfig,
        *,
        reward_range: tuple[float, float] | None = None,
        **problem: Any,
    ) -> None:
        super().__init__(batch_size=cfg.batch_size, **problem)  # the problem's dims, box, stats, seed
        obs_dim, act_dim, device, seed = self.obs_dim, self.act_dim, self.device, self.seed
        self.cfg = cfg
        self.reward_range = (0.0, 1.0) if reward_range is None else tuple(map(float, reward_range))
        with seeded_init(seed):
            # CORL: actor without LayerNorm, EDAC init, last layer U(-1e-3, 1e-3)
            self.policy = self._make_policy(cfg.hidden, cfg.n_layers, init="edac", last_init_bound=1e-3)
            self.critic = EnsembleMLP(obs_dim + act_dim, cfg.hidden, cfg.n_layers, members=2,
                                      layer_norm=True, init="edac", last_init_bound=3e-3)
        self.policy.to(device)
        self.critic.to(device)
        self.target_actor = copy.deepcopy(self.policy.net).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = make_adam(self.policy.net.parameters(), cfg.actor_lr, device)
        self.critic_optimizer = make_adam(self.critic.parameters(), cfg.critic_lr, device)
        self._actor_params = list(self.policy.net.parameters())
        self._online = [*self._actor_params, *self.critic.parameters()]
        self._target = [*self.target_actor.parameters(), *self.target_critic.parameters()]
        self._modules = {"policy": self.policy, "critic": self.critic, "target_actor": self.target_actor,
                         "target_critic": self.target_critic}
        self._optimizers = {"actor": self.actor_optimizer, "critic": self.critic_optimizer}
        self._critic_loss_fn = self._maybe_compile(self._critic_loss)
        self._actor_loss_fn = self._maybe_compile(self._actor_loss)
        zero = torch.zeros((), device=device)
        self._last_actor_metrics = {"actor_loss": zero, "bc_mse": zero, "bc_weight_max": zero}

    def bc_coefficients(self, rewards: torch.Tensor) -> torch.Tensor | float:
        """beta_1,i per sample (adaptive) or the constant beta_1."""
        if not self.cfg.adaptive_bc:
            return self.cfg.actor_bc_coef
        low, high = self.reward_range
        if self.cfg.bc_sharpness > 0:
            return losses.sharp_bc_weights(rewards, self.cfg.actor_bc_coef, low, high, self.cfg.bc_sharpness)
        return losses.adaptive_bc_weights(rewards, self.cfg.actor_bc_coef, low, high)

    def _critic_loss(self, batch: Batch, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Critic loss and the mean Q; ``noise`` (B, act_dim) is standard normal."""
        cfg = self.cfg
        with torch.no_grad():
            next_actions = self.target_actor(batch.next_observations)
            noise = (noise * cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            next_actions = (next_actions + noise).clamp(-1.0, 1.0)
            next_q = self.target_critic(torch.cat([batch.next_observations, next_actions], 1)).min(0).values
            targets = losses.rebrac_td_target(batch.rewards, batch.terminals, cfg.discount, next_q,
                                              next_actions, batch.next_actions, cfg.critic_bc_coef)
        q = self.critic(batch.observation_actions)  # (2, B)
        return losses.td_loss(q, targets, reduction="sum"), q.detach().mean()

    def _actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        actions = self.policy.net(batch.observations)
        q_pi = self.critic(torch.cat([batch.observations, actions], 1)).min(0).values
        bc_coef = self.bc_coefficients(batch.rewards)
        actor_loss = losses.rebrac_actor_loss(q_pi, actions, batch.actions, bc_coef)
        bc_max = bc_coef.max() if torch.is_tensor(bc_coef) else torch.full_like(actor_loss, bc_coef)
        return actor_loss, {
            "actor_loss": actor_loss.detach(),
            "bc_mse": (actions.detach() - batch.actions).square().mean(),
            "bc_weight_max": bc_max.detach(),
        }

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        noise = torch.randn(batch.actions.shape, generator=self.generator, device=batch.actions.device)
        critic_loss, q_mean = self._critic_loss_fn(batch, noise)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        if self.step % cfg.policy_freq == 0:
            actor_loss, self._last_actor_metrics = self._actor_loss_fn(batch)
            self.actor_optimizer.zero_grad(set_to_none=True)
            # Only the actor's gradients: autograd skips the critic's weight gradients.
            actor_loss.backward(inputs=self._actor_params)
            self.actor_optimizer.step()
            soft_update(self._target, self._online, cfg.tau)
        self.step += 1
        return {"critic_loss": critic_loss.detach(), "q_mean": q_mean, **self._last_actor_metrics}

    def _extra_state(self) -> dict[str, Any]:
        return {"last_actor_metrics": {k: v.detach().cpu() for k, v in self._last_actor_metrics.items()}}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        if "last_actor_metrics" in state:
            self._last_actor_metrics = {k: v.to(self.device) for k, v in state["last_actor_metrics"].items()}
