"""The actors every learner evaluates with: P deterministic tanh policies acting at once.

:class:`StackedPolicy` is rebuilt from a learner's ``actor_state()`` (small CPU tensors, picklable,
what Ray evaluation tasks and ``policy.pt`` carry). It takes raw observations, normalises them
with each policy's own statistics, runs the stacked MLP (IQL's Gaussian actor acts with its
mean) and maps the tanh output from [-1, 1] to the environment's action box.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tge_ray.rl.stacked import MLPShape, mlp_forward


class StackedPolicy:
    """P policies: raw observations (P, n, obs_dim) -> actions (P, n, act_dim) inside the box."""

    def __init__(self, state: dict[str, Any], device: str = "cpu") -> None:
        self.shape = MLPShape(**state["shape"])
        self.params = {k: v.to(device) for k, v in state["params"].items()}
        self.obs_mean = state["obs_mean"].to(device).unsqueeze(1)  # (P, 1, obs)
        self.obs_std = state["obs_std"].to(device).unsqueeze(1)
        low, high = state["action_low"].to(device), state["action_high"].to(device)
        self.action_center, self.action_half_range = (high + low) / 2, (high - low) / 2
        self.n_policies = self.obs_mean.shape[0]

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """(P, n, obs_dim) -> (P, n, act_dim); with one policy also (n, obs_dim) or (obs_dim,)."""
        obs = torch.as_tensor(np.asarray(observations, np.float32), device=self.obs_mean.device)
        flat_shape = obs.shape
        if obs.dim() < 3:
            if self.n_policies != 1:
                raise ValueError(f"{self.n_policies} policies need observations shaped (P, n, obs_dim)")
            obs = obs.reshape(1, -1, self.shape.in_dim)
        unit = mlp_forward(self.params, "actor", self.shape, (obs - self.obs_mean) / self.obs_std)
        actions = (self.action_center + self.action_half_range * unit).cpu().numpy()
        if len(flat_shape) < 3:
            return actions.reshape(*flat_shape[:-1], self.shape.out_dim)
        return actions

    def select(self, policy: int) -> StackedPolicy:
        """One of the policies, as a StackedPolicy of its own."""
        return StackedPolicy(select_actor(self.state(), [policy]))

    def state(self) -> dict[str, Any]:
        center, half = self.action_center.cpu(), self.action_half_range.cpu()
        return {
            "shape": {**self.shape.__dict__},
            "params": {k: v.cpu() for k, v in self.params.items()},
            "obs_mean": self.obs_mean.squeeze(1).cpu(),
            "obs_std": self.obs_std.squeeze(1).cpu(),
            "action_low": center - half,
            "action_high": center + half,
        }


def select_actor(state: dict[str, Any], policies: list[int]) -> dict[str, Any]:
    """The actor state of some of the policies of ``state`` (in the given order)."""
    index = torch.tensor(policies)
    return {
        **state,
        "params": {k: v.index_select(0, index) for k, v in state["params"].items()},
        "obs_mean": state["obs_mean"].index_select(0, index),
        "obs_std": state["obs_std"].index_select(0, index),
    }
