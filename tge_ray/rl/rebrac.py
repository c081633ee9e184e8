"""ReBRAC (Tarasov et al., 2023), following CORL's ``algorithms/offline/rebrac.py``, plus an
adaptive actor BC weight for TGE rewards.

    critic: L_Q  = sum_j E[ (Q_j(s, a) - y)^2 ],
            y    = r + gamma (1 - d) ( min_j Q'_j(s', a'~) - beta_2 ||a'~ - a'||^2 ),
            a'~  = clip(pi'(s') + clip(N(0, 0.2^2), -0.5, 0.5), -1, 1),  a' = dataset next action
    actor:  L_pi = E[ beta_1,i ||pi(s) - a||^2 - lambda min_j Q_j(s, pi(s)) ],  lambda = 1/E|Q| (no grad)
            every ``policy_freq`` updates (the first one included), after that update's critic
            step, with Polyak updates of the target actor (towards the actor before its step) and
            of the target critics (towards the critics after theirs), as in CORL.

Adaptive BC weight (``rebrac.adaptive_bc=true``, the default; ``false`` uses beta_1,i = beta_1):

    r~_i      = clip((r_i - r_min) / (r_max - r_min), 0, 1)     (r_min, r_max: the policy's rewards)
    beta_1,i  = beta_1 * (1 + r~_i) / (1 + mean_batch r~)

The TGE reward says how expert-like the window starting at s_i is; the BC term pulls the policy
towards the dataset's action there. The weight imitates expert-like transitions up to twice as
hard, keeps the batch mean at beta_1 (ReBRAC's tuned constraint strength) and every weight in
[beta_1/2, 2 beta_1], so no transition leaves the support constraint. ``rebrac.bc_sharpness`` =
kappa > 0 uses beta_1 exp(kappa r~_i) / mean exp(kappa r~) instead (up to e^kappa times harder).

Differences from CORL, written down: PyTorch instead of JAX; observations are always
normalised (CORL's locomotion default is off); LayerNorm epsilon is Flax's 1e-6; the dataset's
next action at an episode's last row is the row's own action (CORL drops time-out rows); the
target-policy noise comes from a counter-based generator (:mod:`tge_ray.rl.rng`).
"""

from __future__ import annotations

import torch

from tge_ray.config import ReBRACConfig
from tge_ray.config.learners import PER_POLICY_FIELDS
from tge_ray.rl import losses
from tge_ray.rl.learner import StackedLearner, polyak_
from tge_ray.rl.optim import ParamGroup, StackedAdam
from tge_ray.rl.registry import register_learner
from tge_ray.rl.rng import random_normal
from tge_ray.rl.stacked import MLPShape, init_mlp, mlp_forward
from tge_ray.rl.table import Batch

TWIN = 2
ACTOR_METRICS = ("actor_loss", "bc_mse", "bc_weight_max")


@register_learner("rebrac", ReBRACConfig, section="rl.rebrac", revision=1)
class ReBRAC(StackedLearner):
    """ReBRAC: deterministic tanh actor, twin LayerNorm critics, BC in actor and critic."""

    name = "rebrac"
    per_policy = PER_POLICY_FIELDS["rebrac"]

    @property
    def cycle(self) -> int:  # type: ignore[override]
        return self.cfg.policy_freq

    def _build(self) -> None:
        cfg, problem = self.cfg, self.problem
        obs, act = problem.obs_dim, problem.act_dim
        self.actor_shape = MLPShape(obs, act, cfg.hidden, cfg.n_layers, tanh_output=True, matmul=cfg.matmul)
        self.critic_shape = MLPShape(obs + act, 1, cfg.hidden, cfg.n_layers, layer_norm=True, matmul=cfg.matmul)
        generators = self.generators()
        # CORL: actor without LayerNorm, EDAC init, last layer U(-1e-3, 1e-3); critics U(-3e-3, 3e-3)
        params = {
            **init_mlp("actor", self.actor_shape, generators, init="edac", last_init_bound=1e-3),
            **init_mlp("critic", self.critic_shape, generators, TWIN, init="edac", last_init_bound=3e-3),
        }
        self.params = self._to_device(params)
        self.actor_names = [k for k in self.params if k.startswith("actor.")]
        self.critic_names = [k for k in self.params if k.startswith("critic.")]
        self.targets = {k: v.clone() for k, v in self.params.items()}
        self.optimizers = {
            "critic": StackedAdam(self.params, [ParamGroup(self.critic_names, self.hyper("critic_lr").view(-1), TWIN)],
                                  problem.total_steps),
            "actor": StackedAdam(self.params, [ParamGroup(self.actor_names, self.hyper("actor_lr").view(-1))],
                                 problem.total_steps),
        }
        self.actor_bc_coef, self.critic_bc_coef = self.hyper("actor_bc_coef"), self.hyper("critic_bc_coef")
        self.reward_low, self.reward_high = self._reward_ranges()
        tau = self.hyper("tau")  # (P, 1)
        self.tau_actor = tau.view(-1, 1, 1)
        self.tau_critic = tau.repeat_interleave(TWIN).view(-1, 1, 1)
        zero = torch.zeros(self.n_policies, device=self.device)
        self._actor_metrics = {name: zero.clone() for name in ACTOR_METRICS}

    def _reward_ranges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, 1) min and max of each policy's training rewards (its column over its rows)."""
        view, data = self.view, self.view.table.data
        lows, highs = [], []
        for p in range(self.n_policies):
            column = data[:, view.reward_columns[p]]
            if view.rows is not None:
                start = int(view.offsets[p])
                column = column[view.rows[start : start + int(view.sizes[p])]]
            lows.append(column.min())
            highs.append(column.max())
        return torch.stack(lows).view(-1, 1), torch.stack(highs).view(-1, 1)

    def bc_coefficients(self, rewards: torch.Tensor) -> torch.Tensor:
        """(P, B) beta_1,i (adaptive) or (P, 1) beta_1."""
        cfg = self.cfg
        if not cfg.adaptive_bc:
            return self.actor_bc_coef
        if cfg.bc_sharpness > 0:
            return losses.sharp_bc_weights(rewards, self.actor_bc_coef, self.reward_low, self.reward_high,
                                           cfg.bc_sharpness)
        return losses.adaptive_bc_weights(rewards, self.actor_bc_coef, self.reward_low, self.reward_high)

    def _twin(self, inputs: torch.Tensor) -> torch.Tensor:
        """(P, B, F) -> (P*2, B, F): each policy's input to both of its critics."""
        n = self.n_policies
        return inputs.unsqueeze(1).expand(n, TWIN, *inputs.shape[1:]).reshape(n * TWIN, *inputs.shape[1:])

    def _critic_loss(self, critic: dict[str, torch.Tensor], batch: Batch,
                     noise: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, n = self.cfg, self.n_policies
        with torch.no_grad():
            next_actions = mlp_forward(self.targets, "actor", self.actor_shape, batch.next_observations)
            noise = (noise * cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            next_actions = (next_actions + noise).clamp(-1.0, 1.0)
            next_inputs = self._twin(torch.cat([batch.next_observations, next_actions], -1))
            next_q = mlp_forward(self.targets, "critic", self.critic_shape, next_inputs).view(n, TWIN, -1).min(1).values
            targets = losses.rebrac_td_target(batch.rewards, batch.terminals, cfg.discount, next_q,
                                              next_actions, batch.next_actions, self.critic_bc_coef)
        inputs = self._twin(torch.cat([batch.observations, batch.actions], -1))
        q = mlp_forward(critic, "critic", self.critic_shape, inputs).view(n, TWIN, -1)  # (P, 2, B)
        loss = losses.td_loss(q, targets, reduction="sum")  # (P,)
        return loss.sum(), {"critic_loss": loss.detach(), "q_mean": q.detach().mean((1, 2))}

    def _actor_loss(self, actor: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = self.n_policies
        actions = mlp_forward(actor, "actor", self.actor_shape, batch.observations)  # (P, B, act)
        inputs = self._twin(torch.cat([batch.observations, actions], -1))
        q_pi = mlp_forward(self.params, "critic", self.critic_shape, inputs).view(n, TWIN, -1).min(1).values
        bc_coef = self.bc_coefficients(batch.rewards)
        loss = losses.rebrac_actor_loss(q_pi, actions, batch.actions, bc_coef)  # (P,)
        return loss.sum(), {
            "actor_loss": loss.detach(),
            "bc_mse": (actions.detach() - batch.actions).square().mean((1, 2)),
            "bc_weight_max": bc_coef.detach().expand(n, -1).max(-1).values,
        }

    def _update(self, phase: int) -> dict[str, torch.Tensor]:
        batch = self.view.sample(self.seeds, self.step_tensor)
        noise = random_normal(self.seeds, self.step_tensor, tuple(batch.actions.shape[1:]))
        critic = {k: self.params[k] for k in self.critic_names}
        grads, metrics = torch.func.grad(self._critic_loss, has_aux=True)(critic, batch, noise)
        self.optimizers["critic"].step(self.params, grads)
        if phase == 0:
            actor = {k: self.params[k] for k in self.actor_names}
            grads, actor_metrics = torch.func.grad(self._actor_loss, has_aux=True)(actor, batch)
            # CORL's target actor follows the actor as it was before this step (optax.incremental_update
            # of the old state's params), its target critics the critic after this update's critic step
            polyak_([self.targets[k] for k in self.actor_names], [self.params[k] for k in self.actor_names],
                    self.tau_actor)
            self.optimizers["actor"].step(self.params, grads)
            polyak_([self.targets[k] for k in self.critic_names], [self.params[k] for k in self.critic_names],
                    self.tau_critic)
            for name, value in actor_metrics.items():
                self._actor_metrics[name].copy_(value)
        self.step_tensor += 1
        return {**metrics, **{k: v.clone() for k, v in self._actor_metrics.items()}}

    def actor_params(self) -> tuple[MLPShape, dict[str, torch.Tensor]]:
        return self.actor_shape, {k: self.params[k] for k in self.actor_names}

    def _extra_state(self) -> dict:
        return {"actor_metrics": {k: v.clone() for k, v in self._actor_metrics.items()}}

    def _load_extra_state(self, state: dict) -> None:
        for name, value in state.get("actor_metrics", {}).items():
            self._actor_metrics[name].copy_(value)
