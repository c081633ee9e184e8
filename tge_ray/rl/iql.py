"""Implicit Q-Learning (Kostrikov et al., 2021), following CORL's ``algorithms/offline/iql.py``.

    L_V  = E[ |tau - 1(u < 0)| u^2 ],            u = min_j Q'_j(s, a) - V(s)
    L_Q  = mean_j E[ (Q_j(s, a) - r - gamma (1 - d) V(s'))^2 ]
    L_pi = E[ min(exp(beta (min_j Q'_j(s, a) - V(s))), max_weight) * l(s, a) ]
           l = ||pi(s) - a||^2 (deterministic actor) or -log pi(a | s) (Gaussian actor)

Choices and differences from CORL, written down:
- Actor (``rl.iql.actor``): CORL's deterministic actor (``iql_deterministic=True``, its
  hopper-medium config) or its Gaussian one (mean = tanh(MLP(s)), a state-independent log-std
  clamped to [-20, 2]); evaluation uses the mean.
- One optimiser step per update instead of three: the three losses touch disjoint parameters,
  next_V and the advantage are taken with the pre-update V and target Q (as in CORL), so the
  gradient of their sum is CORL's three gradients, and one Adam over all of them (the actor's
  learning rate on CORL's cosine schedule) gives CORL's three steps.
- P policies at once (:mod:`tge_ray.rl.learner`); the twin critics are two more members per
  policy of one stacked MLP.
- Actions are trained in [-1, 1] (mapped from the action box); observations normalised.
"""

from __future__ import annotations

import torch

from tge_ray.config import IQLConfig
from tge_ray.config.learners import PER_POLICY_FIELDS
from tge_ray.rl import losses
from tge_ray.rl.learner import StackedLearner, polyak_
from tge_ray.rl.optim import ParamGroup, StackedAdam
from tge_ray.rl.registry import register_learner
from tge_ray.rl.stacked import MLPShape, init_mlp, mlp_forward
from tge_ray.rl.table import Batch

TWIN = 2


@register_learner("iql", IQLConfig, section="rl.iql")
class IQL(StackedLearner):
    """IQL; the oracle baseline is this learner on the dataset's true rewards."""

    name = "iql"
    per_policy = PER_POLICY_FIELDS["iql"]

    def _build(self) -> None:
        cfg, problem = self.cfg, self.problem
        obs, act = problem.obs_dim, problem.act_dim
        self.actor_shape = MLPShape(obs, act, cfg.hidden, cfg.n_layers, tanh_output=True, matmul=cfg.matmul)
        self.critic_shape = MLPShape(obs + act, 1, cfg.hidden, cfg.n_layers, matmul=cfg.matmul)
        self.value_shape = MLPShape(obs, 1, cfg.hidden, cfg.n_layers, matmul=cfg.matmul)
        generators = self.generators()
        params = {
            **init_mlp("actor", self.actor_shape, generators),
            **init_mlp("critic", self.critic_shape, generators, TWIN),
            **init_mlp("value", self.value_shape, generators),
        }
        if cfg.actor == "gaussian":
            params["log_std"] = torch.zeros(self.n_policies, 1, act)
        self.params = self._to_device(params)
        self.critic_names = [k for k in self.params if k.startswith("critic.")]
        self.targets = {k: self.params[k].clone() for k in self.critic_names}
        lr = self.hyper("lr").view(-1)
        actor_names = [k for k in self.params if k.startswith("actor.") or k == "log_std"]
        other = [k for k in self.params if k not in actor_names]
        self.optimizers = {"adam": StackedAdam(self.params, [
            ParamGroup([k for k in other if k.startswith("value.")], lr),
            ParamGroup([k for k in other if k.startswith("critic.")], lr, members_per_policy=TWIN),
            ParamGroup(actor_names, lr, schedule="cosine"),
        ], problem.total_steps)}
        self.beta, self.expectile = self.hyper("beta"), self.hyper("expectile")
        self.tau = self.hyper("tau").repeat_interleave(TWIN).view(-1, 1, 1)  # (P*2, 1, 1)

    def _loss(self, params: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum over policies of the value, critic and actor losses, and (P,) metrics."""
        cfg, n = self.cfg, self.n_policies
        state_actions = torch.cat([batch.observations, batch.actions], -1)  # (P, B, obs + act)
        twin_inputs = state_actions.unsqueeze(1).expand(n, TWIN, *state_actions.shape[1:])
        twin_inputs = twin_inputs.reshape(n * TWIN, *state_actions.shape[1:])  # (P*2, B, obs + act)
        with torch.no_grad():
            target_q = mlp_forward(self.targets, "critic", self.critic_shape, twin_inputs)
            target_q = target_q.view(n, TWIN, -1).min(1).values  # (P, B)
            next_v = mlp_forward(params, "value", self.value_shape, batch.next_observations).squeeze(-1)
        v = mlp_forward(params, "value", self.value_shape, batch.observations).squeeze(-1)  # (P, B)
        advantages = target_q - v
        value_loss = losses.asymmetric_l2_loss(advantages, self.expectile)  # (P,)

        targets = losses.td_target(batch.rewards, batch.terminals, cfg.discount, next_v)
        q = mlp_forward(params, "critic", self.critic_shape, twin_inputs).view(n, TWIN, -1)  # (P, 2, B)
        q_loss = losses.td_loss(q, targets, reduction="mean")

        weights = losses.awr_weights(advantages, self.beta, cfg.max_weight)
        mean = mlp_forward(params, "actor", self.actor_shape, batch.observations)  # (P, B, act) in [-1, 1]
        if cfg.actor == "gaussian":
            per_sample = losses.gaussian_nll(mean, params["log_std"], batch.actions)
        else:
            per_sample = (mean - batch.actions).square().sum(-1)
        actor_loss = losses.awr_actor_loss(weights, per_sample)
        metrics = {
            "value_loss": value_loss.detach(),
            "q_loss": q_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "q_mean": q.detach().mean((1, 2)),
            "adv_mean": advantages.detach().mean(-1),
        }
        return (value_loss + q_loss + actor_loss).sum(), metrics

    def _update(self, phase: int) -> dict[str, torch.Tensor]:
        batch = self.view.sample(self.seeds, self.step_tensor)
        grads, metrics = torch.func.grad(self._loss, has_aux=True)(self.params, batch)
        self.optimizers["adam"].step(self.params, grads)
        polyak_([self.targets[k] for k in self.critic_names], [self.params[k] for k in self.critic_names], self.tau)
        self.step_tensor += 1
        return metrics

    def actor_params(self) -> tuple[MLPShape, dict[str, torch.Tensor]]:
        return self.actor_shape, {k: v for k, v in self.params.items() if k.startswith("actor.")}
