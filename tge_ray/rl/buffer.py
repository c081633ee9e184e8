"""Offline transitions and a device-resident sampler that feeds the learners.

:class:`Transitions` is what the pipeline hands to offline RL (NumPy, float32). The learner turns
it into a :class:`TransitionSampler` (``learner.make_sampler(transitions)``), which normalises
observations with the learner's statistics and maps actions into [-1, 1] once, keeps everything
in ONE (N, F) tensor on the learner's device, and draws indices with its own seeded
``torch.Generator``: a batch is a single ``index_select`` and column views, with no per-step
NumPy -> torch copy and no host round trip.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch


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


class Batch(NamedTuple):
    """One sampled batch in training space (normalised observations, actions in [-1, 1]).

    All fields are views into one (B, F) tensor; ``observation_actions`` is the critic input
    [s, a] (B, obs+act) and ``next_observation_actions`` is [s', a'], both without a cat.
    """

    observations: torch.Tensor  # (B, obs_dim)
    actions: torch.Tensor  # (B, act_dim)
    rewards: torch.Tensor  # (B,)
    next_observations: torch.Tensor  # (B, obs_dim)
    next_actions: torch.Tensor  # (B, act_dim)
    terminals: torch.Tensor  # (B,)
    observation_actions: torch.Tensor  # (B, obs_dim + act_dim)


class TransitionSampler:
    """Uniform sampling with replacement, seeded, entirely on ``device``.

    Columns of the stored (N, F) tensor: [obs | action | reward | next_obs | next_action | done].
    """

    def __init__(
        self,
        transitions: Transitions,
        batch_size: int,
        *,
        obs_mean: np.ndarray,
        obs_std: np.ndarray,
        action_low: np.ndarray,
        action_high: np.ndarray,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        if len(transitions) == 0:
            raise ValueError("cannot sample from zero transitions")
        transitions = transitions.with_next_actions()
        obs_mean = np.asarray(obs_mean, np.float32)
        obs_std = np.asarray(obs_std, np.float32)
        low = np.asarray(action_low, np.float32)
        high = np.asarray(action_high, np.float32)
        center, half = (high + low) / 2, (high - low) / 2

        def unit(actions: np.ndarray) -> np.ndarray:
            return np.clip((actions - center) / half, -1.0, 1.0)

        table = np.concatenate(
            [
                (transitions.observations - obs_mean) / obs_std,
                unit(transitions.actions),
                transitions.rewards[:, None],
                (transitions.next_observations - obs_mean) / obs_std,
                unit(transitions.next_actions),
                transitions.terminals[:, None],
            ],
            axis=1,
        ).astype(np.float32)
        self.data = torch.from_numpy(table).to(device)
        self.size, self.batch_size, self.device = len(transitions), batch_size, device
        self.obs_dim, self.act_dim = transitions.obs_dim, transitions.act_dim
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def sample(self) -> Batch:
        index = torch.randint(self.size, (self.batch_size,), generator=self.generator, device=self.device)
        rows = self.data.index_select(0, index)  # (B, F)
        o, a = self.obs_dim, self.act_dim
        return Batch(
            observations=rows[:, :o],
            actions=rows[:, o : o + a],
            rewards=rows[:, o + a],
            next_observations=rows[:, o + a + 1 : 2 * o + a + 1],
            next_actions=rows[:, 2 * o + a + 1 : 2 * o + 2 * a + 1],
            terminals=rows[:, 2 * o + 2 * a + 1],
            observation_actions=rows[:, : o + a],
        )

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
