"""Adam over stacked parameters, with a learning rate per policy and schedules on the device.

``torch.optim.Adam`` takes one learning rate per parameter group; a stack of P policies whose
rates differ needs one per member. :class:`StackedAdam` is Adam (Kingma & Ba, 2015) written out
with the same operations as torch's single-tensor implementation (``lerp_`` for the first
moment, bias corrections from the step count), its learning rate a (M, 1, 1) tensor per
parameter. The step count is a device tensor, so an update never reads it on the host and can
be captured in a CUDA graph.

The step's scalars (each group's schedule factor over the first bias correction, and the square
root of the second) are worked out at the end of the step before, into a small device tensor that
the step reads. Computed inside the step instead, ``torch.compile`` inlines them into every
parameter's element loop: Inductor's CPU kernels then ran two float64 ``pow`` (and the cosine)
per eight elements, which made Adam a sixth of a compiled IQL update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


def cosine_factor(step: torch.Tensor, total_steps: int) -> torch.Tensor:
    """0.5 (1 + cos(pi min(step, T) / T)): CosineAnnealingLR(T_max=T, eta_min=0) as a factor."""
    progress = step.clamp(max=total_steps).to(torch.float32) / total_steps
    return 0.5 * (1.0 + torch.cos(math.pi * progress))


@dataclass
class ParamGroup:
    """Parameters sharing a learning rate per policy and a schedule.

    Attributes:
        names: parameter names (keys of the learner's parameter dict).
        lr: (P,) learning rate of each policy.
        members_per_policy: members of each parameter per policy (2 for twin critics).
        schedule: ``constant`` or ``cosine`` (annealed to 0 at ``total_steps``).
    """

    names: list[str]
    lr: torch.Tensor
    members_per_policy: int = 1
    schedule: str = "constant"


class StackedAdam:
    """Adam with per-member learning rates over a dict of stacked parameters."""

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        groups: list[ParamGroup],
        total_steps: int,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.groups, self.total_steps, self.betas, self.eps = groups, total_steps, betas, eps
        device = next(iter(params.values())).device
        self.exp_avg = {name: torch.zeros_like(params[name]) for group in groups for name in group.names}
        self.exp_avg_sq = {name: torch.zeros_like(params[name]) for group in groups for name in group.names}
        self.step_count = torch.zeros((), dtype=torch.int64, device=device)
        self._member_lr = [
            group.lr.to(device).repeat_interleave(group.members_per_policy).view(-1, 1, 1) for group in groups
        ]
        self._scalars = self.step_scalars(self.step_count)  # for the next step; see the module docstring

    def lr_factor(self, group: ParamGroup, step: torch.Tensor) -> torch.Tensor | float:
        """The schedule's factor for the update that follows ``step`` updates."""
        return cosine_factor(step, self.total_steps) if group.schedule == "cosine" else 1.0

    def step_scalars(self, done: torch.Tensor) -> torch.Tensor:
        """(groups + 1,) float32 for the step after ``done`` steps: each group's schedule factor
        over 1 - beta1^t, then sqrt(1 - beta2^t), t = done + 1."""
        beta1, beta2 = self.betas
        count = (done + 1).to(torch.float64)  # 1 - 0.999^t loses digits in float32
        bias1 = (1.0 - beta1**count).to(torch.float32)
        bias2_sqrt = torch.sqrt(1.0 - beta2**count).to(torch.float32)
        return torch.stack([self.lr_factor(group, done) / bias1 for group in self.groups] + [bias2_sqrt])

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> None:
        """One Adam step on ``params`` (in place) with ``grads``."""
        beta1, beta2 = self.betas
        scalars = self._scalars
        bias2_sqrt = scalars[-1]
        for index, (group, member_lr) in enumerate(zip(self.groups, self._member_lr)):
            step_size = member_lr * scalars[index]  # (M, 1, 1)
            for name in group.names:
                grad, exp_avg, exp_avg_sq = grads[name], self.exp_avg[name], self.exp_avg_sq[name]
                exp_avg.lerp_(grad, 1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(self.eps)
                params[name].addcdiv_(exp_avg * step_size, denom, value=-1.0)  # params are (M, a, b)
        self.step_count += 1
        self._scalars.copy_(self.step_scalars(self.step_count))

    def state_dict(self) -> dict[str, Any]:
        return {"exp_avg": {k: v.clone() for k, v in self.exp_avg.items()},
                "exp_avg_sq": {k: v.clone() for k, v in self.exp_avg_sq.items()},
                "step": self.step_count.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.exp_avg:
            self.exp_avg[name].copy_(state["exp_avg"][name])
            self.exp_avg_sq[name].copy_(state["exp_avg_sq"][name])
        self.step_count.copy_(state["step"])
        self._scalars.copy_(self.step_scalars(self.step_count))
