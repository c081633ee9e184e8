"""Behaviour cloning: a tanh MLP actor regressed onto the dataset's actions.

    L = E[ ||pi(s) - a||^2 ]   (actions in [-1, 1], observations normalised)

The baseline that says how much of a score comes from the data alone, without any reward, and
the learner of TGE-filtered BC, which is BC on the episodes the TGE reward ranks highest (its
rows and learning rate are per policy, so the baseline and filtered BC train as one batch).
With ``lr_schedule="cosine"`` the learning rate anneals to 0 at the last update (IQL's actor
schedule); ``constant`` is CORL's BC.
"""

from __future__ import annotations

import torch

from tge_ray.config import BCConfig
from tge_ray.config.learners import PER_POLICY_FIELDS
from tge_ray.rl import losses
from tge_ray.rl.learner import StackedLearner
from tge_ray.rl.optim import ParamGroup, StackedAdam
from tge_ray.rl.registry import register_learner
from tge_ray.rl.stacked import MLPShape, init_mlp, mlp_forward
from tge_ray.rl.table import Batch


@register_learner("bc", BCConfig, section="rl.bc")
class BC(StackedLearner):
    """MSE behaviour cloning."""

    name = "bc"
    per_policy = PER_POLICY_FIELDS["bc"]

    def _build(self) -> None:
        cfg, problem = self.cfg, self.problem
        self.actor_shape = MLPShape(problem.obs_dim, problem.act_dim, cfg.hidden, cfg.n_layers, tanh_output=True,
                                  matmul=cfg.matmul)
        self.params = self._to_device(init_mlp("actor", self.actor_shape, self.generators()))
        group = ParamGroup(list(self.params), self.hyper("lr").view(-1), schedule=cfg.lr_schedule)
        self.optimizers = {"adam": StackedAdam(self.params, [group], problem.total_steps)}

    def _loss(self, params: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = losses.bc_loss(mlp_forward(params, "actor", self.actor_shape, batch.observations), batch.actions)
        return loss.sum(), {"bc_loss": loss.detach()}

    def _update(self, phase: int) -> dict[str, torch.Tensor]:
        batch = self.view.sample(self.seeds, self.step_tensor)
        grads, metrics = torch.func.grad(self._loss, has_aux=True)(self.params, batch)
        self.optimizers["adam"].step(self.params, grads)
        self.step_tensor += 1
        return metrics

    def actor_params(self) -> tuple[MLPShape, dict[str, torch.Tensor]]:
        return self.actor_shape, self.params
