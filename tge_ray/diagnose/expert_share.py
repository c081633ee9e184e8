"""How soon do expert states leave the region that random data covers? (a data diagnostic)

For each expert trajectory of D_mu and each time step t, the trajectory's state at t is
compared with every state of D_mu (standardised with D_mu's statistics, as the windows are):
among its ``neighbours`` nearest (Euclidean, exact faiss search), the share that are expert
transitions, averaged over the trajectories. A share near 0 at a step means that a learner
which imitates D_mu there (BC, or IQL/ReBRAC before their values have propagated) copies mostly
random actions; near 1, that it copies the expert. It needs the task only, no run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tge_ray.errors import ConfigError


@dataclass(frozen=True)
class ExpertShare:
    """Expert share among the nearest D_mu states, by step of the expert trajectories (None at
    a step no expert trajectory reaches)."""

    offline: str
    expert: str
    n_expert_trajs: int
    expert_transitions: int
    other_transitions: int
    neighbours: int
    by_step: tuple[tuple[int, float | None], ...]

    def lines(self) -> list[str]:
        shares = ", ".join(f"t={t}: {v:.2f}" for t, v in self.by_step if v is not None)
        return [f"{self.offline} + {self.n_expert_trajs} episodes of {self.expert}: expert share among "
                f"{self.neighbours} nearest D_mu states: {shares}"]


def expert_share(task: Any, *, steps: Sequence[int] = (0, 5, 10, 20, 40), neighbours: int = 100) -> ExpertShare:
    """The expert share of ``task`` (an :class:`~tge_ray.data.task.LfOTask` with expert
    episodes in D_mu) at each of ``steps``."""
    from tge_ray.reward.knn import build_index

    flags = task.expert_flags
    if not flags.any():
        raise ConfigError("expert share: D_mu holds no expert episodes (task.n_expert_trajs = 0); use N >= 1")
    if neighbours < 1 or neighbours > len(flags) or min(steps, default=0) < 0:
        raise ConfigError(f"expert share: neighbours must be in 1..{len(flags)} (D_mu's transitions) and steps "
                          f">= 0, got {neighbours} and {list(steps)}")
    states = task.standardize(task.mixed.observations)  # D_mu's statistics, as the windows use
    index = build_index(states, use_gpu=False)  # exact search over every D_mu state
    _, starts, lengths = np.unique(task.mixed.episode_ids, return_index=True, return_counts=True)
    expert_episode = flags[starts]
    starts, lengths = starts[expert_episode], lengths[expert_episode]
    shares: list[tuple[int, float | None]] = []
    for t in steps:
        rows = starts[lengths > t] + t  # step t of every expert trajectory that lasts that long
        if len(rows) == 0:
            shares.append((int(t), None))
            continue
        _, nearest = index.kneighbors(states[rows], neighbours)  # (trajectories, neighbours)
        shares.append((int(t), float(flags[nearest].mean())))
    return ExpertShare(task.offline_id, task.expert_id, int(task.n_expert_trajs), int(flags.sum()),
                       int((~flags).sum()), neighbours, tuple(shares))


def task_of_config(cfg: Any, progress: bool = False) -> Any:
    """The LfO task a ``tge run`` of ``cfg`` would build, its missing ``tge/*`` datasets made first."""
    from tge_ray.data.task import build_task
    from tge_ray.pipeline.stages import ensure_datasets

    ensure_datasets(cfg, progress=progress)
    return build_task(cfg.task.offline, cfg.task.expert, cfg.task.n_expert_trajs, cfg.task.n_demos,
                      demos=cfg.task.demos)
