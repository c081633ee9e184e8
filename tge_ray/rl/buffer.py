"""Offline transitions: what the pipeline hands to offline RL (NumPy, float32).

:class:`tge_ray.rl.table.TransitionTable` turns them into the device-resident table that the
learners sample from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Transitions:
    """(s, a, r, s', done) of an offline dataset, float32.

    Attributes:
        observations: (N, obs_dim) raw observations.
        actions: (N, act_dim) actions, inside the environment's action box.
        rewards: (N,) rewards the learner trains on (TGE rewards, or the true ones for oracle).
        next_observations: (N, obs_dim).
        terminals: (N,) 1.0 for true terminations only; a time-out is 0.0 (bootstraps).
        next_actions: optional (N, act_dim) dataset action taken at s' (ReBRAC's critic BC
            term). When missing, :meth:`with_next_actions` infers it from row order.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    next_actions: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.observations)
        for name in ("observations", "actions", "rewards", "next_observations", "terminals", "next_actions"):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, dtype=np.float32)
            object.__setattr__(self, name, value)
            if len(value) != n:
                raise ValueError(f"Transitions.{name} has {len(value)} rows, observations has {n}")
        if self.observations.ndim != 2 or self.actions.ndim != 2:
            raise ValueError("observations and actions must be 2-D (N, dim)")
        if self.rewards.ndim != 1 or self.terminals.ndim != 1:
            raise ValueError("rewards and terminals must be 1-D (N,)")
        if self.next_observations.shape != self.observations.shape:
            raise ValueError("next_observations must have the shape of observations")
        if self.next_actions is not None and self.next_actions.shape != self.actions.shape:
            raise ValueError("next_actions must have the shape of actions")

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    def with_rewards(self, rewards: np.ndarray) -> Transitions:
        """The same transitions with other rewards (e.g. TGE vs the true ones)."""
        return Transitions(self.observations, self.actions, rewards, self.next_observations,
                           self.terminals, self.next_actions)

    def subset(self, rows: np.ndarray) -> Transitions:
        """The transitions at ``rows`` (a boolean mask or indices), in their order."""
        values = (getattr(self, f.name) for f in dataclasses.fields(self))
        return Transitions(*(None if value is None else value[rows] for value in values))

    def with_next_actions(self) -> Transitions:
        """Fill ``next_actions`` from row order when absent.

        Row i+1 continues row i when ``next_observations[i] == observations[i+1]``; then the
        next action is ``actions[i+1]``. At an episode's last row there is no next action in the
        data; the row's own action stands in (it only enters the critic's BC penalty, and for
        terminals that term is multiplied by zero).
        """
        if self.next_actions is not None:
            return self
        next_actions = self.actions.copy()
        if len(self) > 1:
            continues = np.all(self.next_observations[:-1] == self.observations[1:], axis=1)
            next_actions[:-1][continues] = self.actions[1:][continues]
        return Transitions(self.observations, self.actions, self.rewards, self.next_observations,
                           self.terminals, next_actions)

    def observation_stats(self, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (+eps, as CORL) of the observations, for the learner's normalisation."""
        return self.observations.mean(0), self.observations.std(0) + eps
