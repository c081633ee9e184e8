"""One device-resident table of D_mu's transitions that every policy of a batch samples from.

The table holds each transition once: raw observations, actions mapped into [-1, 1], next
observations and actions, the terminal flag, and one column per reward (TGE, the true reward, a
second sigma's TGE reward, ...). A policy names its reward column, may restrict itself to a
subset of rows (filtered BC's episodes) and brings its own observation statistics; a batch of P
policies is then one gather of (P, B) rows, with no copy of the data per policy.

    table = TransitionTable.build(transitions, {"tge": tge_rewards, "true": oracle_rewards},
                                  action_low, action_high, device="cuda")
    view = table.view(policies, batch_size)      # what one learner samples
    batch = view.sample(seeds, step)             # (P, B, ...) in training space
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from tge_ray.rl.buffer import Transitions
from tge_ray.rl.rng import random_indices


class Batch(NamedTuple):
    """(P, B, ...) batch in training space: normalised observations, actions in [-1, 1]."""

    observations: torch.Tensor  # (P, B, obs_dim)
    actions: torch.Tensor  # (P, B, act_dim)
    rewards: torch.Tensor  # (P, B)
    next_observations: torch.Tensor  # (P, B, obs_dim)
    next_actions: torch.Tensor  # (P, B, act_dim)
    terminals: torch.Tensor  # (P, B)


@dataclass(frozen=True)
class PolicyData:
    """What one policy of a batch trains on.

    Attributes:
        reward: name of its reward column (rewards are ignored by BC; any column will do).
        rows: indices of the rows it samples from (None: every row).
    """

    reward: str
    rows: np.ndarray | None = None


class TransitionTable:
    """Transitions of one dataset on one device; see the module docstring."""

    def __init__(self, data: torch.Tensor, reward_names: list[str], obs_dim: int, act_dim: int) -> None:
        self.data, self.reward_names, self.obs_dim, self.act_dim = data, reward_names, obs_dim, act_dim
        self.device = data.device

    @classmethod
    def build(
        cls,
        transitions: Transitions,
        rewards: dict[str, np.ndarray],
        action_low: np.ndarray,
        action_high: np.ndarray,
        device: str | torch.device = "cpu",
    ) -> TransitionTable:
        """Columns [obs | action | next_obs | next_action | terminal | rewards...], float32; actions
        mapped from the action box to [-1, 1] and clipped there (CORL does not clip: a dataset
        action outside the box is taken at its edge)."""
        transitions = transitions.with_next_actions()
        low, high = np.asarray(action_low, np.float32), np.asarray(action_high, np.float32)
        center, half = (high + low) / 2, (high - low) / 2

        def unit(actions: np.ndarray) -> np.ndarray:
            return np.clip((actions - center) / half, -1.0, 1.0)

        n = len(transitions)
        for name, column in rewards.items():
            if np.shape(column) != (n,):
                raise ValueError(f"reward column {name!r} has shape {np.shape(column)}, the table {n} rows")
        table = np.concatenate(
            [
                transitions.observations,
                unit(transitions.actions),
                transitions.next_observations,
                unit(transitions.next_actions),
                transitions.terminals[:, None],
                *(np.asarray(column, np.float32)[:, None] for column in rewards.values()),
            ],
            axis=1,
        ).astype(np.float32)
        return cls(torch.from_numpy(table).to(device), list(rewards), transitions.obs_dim, transitions.act_dim)

    def __len__(self) -> int:
        return self.data.shape[0]

    def column(self, name: str) -> int:
        if name not in self.reward_names:
            raise ValueError(f"no reward column {name!r}: the table has {', '.join(self.reward_names)}")
        return 2 * self.obs_dim + 2 * self.act_dim + 1 + self.reward_names.index(name)

    def view(self, policies: Sequence[PolicyData], batch_size: int,
             obs_stats: Sequence[tuple[np.ndarray, np.ndarray]]) -> TableView:
        """What P policies sample: their reward columns, rows and observation statistics."""
        return TableView(self, policies, batch_size, obs_stats)


class TableView:
    """P policies' way into a :class:`TransitionTable`: one ``sample`` gives all their batches."""

    def __init__(self, table: TransitionTable, policies: Sequence[PolicyData], batch_size: int,
                 obs_stats: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.table, self.batch_size, self.n_policies = table, batch_size, len(policies)
        device = table.device
        self.reward_columns = torch.tensor([table.column(p.reward) for p in policies], device=device)
        if all(p.rows is None for p in policies):
            self.rows = None
            self.sizes = torch.full((len(policies),), len(table), dtype=torch.int64, device=device)
            self.offsets = None
        else:
            sizes = [len(table) if p.rows is None else len(p.rows) for p in policies]
            if 0 in sizes:
                raise ValueError("a policy has no rows to sample from")
            rows = np.empty(sum(sizes), np.int64)  # filled in place: one copy of every policy's rows
            for p, start, size in zip(policies, np.cumsum([0, *sizes[:-1]]), sizes):
                rows[start : start + size] = np.arange(size) if p.rows is None else p.rows
            self.rows = torch.from_numpy(rows).to(device)
            self.sizes = torch.tensor(sizes, dtype=torch.int64, device=device)
            self.offsets = torch.cumsum(self.sizes, 0) - self.sizes
        mean = np.stack([np.asarray(m, np.float32) for m, _ in obs_stats])[:, None, :]  # (P, 1, obs)
        std = np.stack([np.asarray(s, np.float32) for _, s in obs_stats])[:, None, :]
        self.obs_mean = torch.from_numpy(mean).to(device)
        self.obs_std = torch.from_numpy(std).to(device)

    def sample(self, seeds: torch.Tensor, step: torch.Tensor) -> Batch:
        """Policy p's batch at ``step``: B rows drawn uniformly (with replacement) from its rows."""
        n_policies, batch = self.n_policies, self.batch_size
        index = random_indices(seeds, step, batch, self.sizes)  # (P, B)
        if self.rows is not None:
            index = self.rows[index + self.offsets.view(-1, 1)]
        rows = self.table.data.index_select(0, index.reshape(-1)).view(n_policies, batch, -1)
        o, a = self.table.obs_dim, self.table.act_dim
        rewards = rows.gather(2, self.reward_columns.view(-1, 1, 1).expand(n_policies, batch, 1)).squeeze(-1)
        return Batch(
            observations=(rows[..., :o] - self.obs_mean) / self.obs_std,
            actions=rows[..., o : o + a],
            rewards=rewards,
            next_observations=(rows[..., o + a : 2 * o + a] - self.obs_mean) / self.obs_std,
            next_actions=rows[..., 2 * o + a : 2 * o + 2 * a],
            terminals=rows[..., 2 * o + 2 * a],
        )
