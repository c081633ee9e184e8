"""The LfO task of SMODICE / DILO, which TGE follows: D_mu (state-action) and D_E (states only).

D_mu = every episode of the suboptimal dataset, then the first N episodes of the expert
dataset, with a per-transition flag saying which rows came from the expert (diagnostics only:
nothing trains on it). D_E = the observations of M other expert episodes, never among those
mixed into D_mu: by default (``demos="last"``) the expert dataset's last M episodes, so every N
of a task is compared on the same demos; ``demos="next"`` takes episodes N..N+M-1 instead, which
changes the demo with N. Observations are standardised with D_mu's mean and std (a feature with
std below 1e-6 is only centred).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tge_ray.data.minari_io import FlatDataset, open_dataset
from tge_ray.errors import DataError


@dataclass(frozen=True)
class LfOTask:
    """One learning-from-observations task.

    Shapes (N_mu transitions of D_mu, N_E states of D_E):
        mixed: D_mu as a :class:`FlatDataset` (its true rewards serve only the oracle and reports)
        expert_flags: (N_mu,) bool, True for rows from the expert dataset
        demo_observations: (N_E, obs_dim) float32 states of D_E
        demo_episode_ids: (N_E,) int64, 0..M-1
        demo_expert_episodes: the expert dataset's episode indices that form D_E
        obs_mean, obs_std: (obs_dim,) float32, from D_mu
    """

    offline_id: str
    expert_id: str
    n_expert_trajs: int
    n_demos: int
    demos: str
    mixed: FlatDataset
    expert_flags: np.ndarray
    demo_observations: np.ndarray
    demo_episode_ids: np.ndarray
    demo_expert_episodes: tuple[int, ...]
    obs_mean: np.ndarray
    obs_std: np.ndarray

    def standardize(self, observations: np.ndarray) -> np.ndarray:
        """(..., obs_dim) -> standardised with D_mu's statistics, float32."""
        return ((observations - self.obs_mean) / self.obs_std).astype(np.float32)

    def summary(self) -> dict[str, int | str]:
        return {
            "offline": self.offline_id,
            "expert": self.expert_id,
            "n_expert_trajs": self.n_expert_trajs,
            "n_demos": self.n_demos,
            "demos": self.demos,
            "demo_episodes": [int(e) for e in self.demo_expert_episodes],
            "mixed_transitions": self.mixed.n_transitions,
            "mixed_episodes": self.mixed.n_episodes,
            "expert_transitions_in_mixed": int(self.expert_flags.sum()),
            "demo_states": int(self.demo_observations.shape[0]),
        }


def _episode_rows(data: FlatDataset, first: int, last: int) -> slice:
    starts = data.episode_starts
    return slice(int(starts[first]), int(starts[last]))


def _same_space(offline: FlatDataset, expert: FlatDataset) -> None:
    if offline.obs_dim != expert.obs_dim or offline.observation_space != expert.observation_space:
        raise DataError(
            f"observation spaces differ: {offline.dataset_id!r} has {offline.observation_space} but "
            f"{expert.dataset_id!r} has {expert.observation_space}; pair datasets of the same environment"
        )
    if offline.act_dim != expert.act_dim or offline.action_space != expert.action_space:
        raise DataError(
            f"action spaces differ: {offline.dataset_id!r} has {offline.action_space} but "
            f"{expert.dataset_id!r} has {expert.action_space}; pair datasets of the same environment"
        )


DEMO_CHOICES = ("last", "next")


def mix_task(
    offline: FlatDataset, expert: FlatDataset, n_expert_trajs: int, n_demos: int, demos: str = "last"
) -> LfOTask:
    """Build the task from two opened datasets (see the module docstring for the protocol)."""
    if demos not in DEMO_CHOICES:
        raise DataError(f"task.demos={demos!r} is not allowed: use one of {', '.join(DEMO_CHOICES)}")
    if n_demos < 1:
        raise DataError(f"task.n_demos={n_demos} is not allowed: D_E needs at least one demo (>= 1)")
    if n_expert_trajs < 0:
        raise DataError(f"task.n_expert_trajs={n_expert_trajs} is not allowed: must be >= 0")
    _same_space(offline, expert)
    available = expert.n_episodes
    if n_expert_trajs + n_demos > available:
        raise DataError(
            f"task.n_expert_trajs={n_expert_trajs} plus task.n_demos={n_demos} exceeds the "
            f"{available} episodes of {expert.dataset_id!r}: demos must stay disjoint from the "
            f"mixed-in episodes, so use at most {max(available - n_demos, 0)} expert trajectories "
            "or make a larger expert dataset"
        )
    mixed_rows = _episode_rows(expert, 0, n_expert_trajs)
    first_demo = available - n_demos if demos == "last" else n_expert_trajs
    demo_rows = _episode_rows(expert, first_demo, first_demo + n_demos)

    def join(name: str) -> np.ndarray:
        return np.concatenate([getattr(offline, name), getattr(expert, name)[mixed_rows]])

    episode_ids = np.concatenate(
        [offline.episode_ids, expert.episode_ids[mixed_rows] + offline.n_episodes]
    )
    mixed = FlatDataset(
        dataset_id=f"{offline.dataset_id}+{n_expert_trajs}x{expert.dataset_id}",
        path=offline.path,
        observations=join("observations"),
        actions=join("actions"),
        next_observations=join("next_observations"),
        rewards=join("rewards"),
        terminals=join("terminals"),
        timeouts=join("timeouts"),
        episode_ids=episode_ids,
        episode_returns=np.concatenate(
            [offline.episode_returns, expert.episode_returns[:n_expert_trajs]]
        ),
        observation_space=offline.observation_space,
        action_space=offline.action_space,
        metadata=dict(offline.metadata),
    )
    if mixed.n_transitions == 0:
        raise DataError("D_mu is empty: the offline dataset has no transitions and task.n_expert_trajs=0")
    expert_flags = np.zeros(mixed.n_transitions, dtype=bool)
    expert_flags[offline.n_transitions :] = True
    obs_mean = mixed.observations.mean(axis=0, dtype=np.float64).astype(np.float32)
    obs_std = mixed.observations.std(axis=0, dtype=np.float64).astype(np.float32)
    obs_std = np.where(obs_std < 1e-6, 1.0, obs_std).astype(np.float32)
    demo_ids = expert.episode_ids[demo_rows]
    return LfOTask(
        offline_id=offline.dataset_id,
        expert_id=expert.dataset_id,
        n_expert_trajs=n_expert_trajs,
        n_demos=n_demos,
        demos=demos,
        mixed=mixed,
        expert_flags=expert_flags,
        demo_observations=np.ascontiguousarray(expert.observations[demo_rows]),
        demo_episode_ids=demo_ids - demo_ids[0],
        demo_expert_episodes=tuple(range(first_demo, first_demo + n_demos)),
        obs_mean=obs_mean,
        obs_std=obs_std,
    )


def build_task(
    offline: str, expert: str, n_expert_trajs: int, n_demos: int = 1, download: bool = False,
    demos: str = "last",
) -> LfOTask:
    """Open both datasets by Minari id and build the LfO task."""
    return mix_task(
        open_dataset(offline, download=download),
        open_dataset(expert, download=download),
        n_expert_trajs,
        n_demos,
        demos,
    )


def task_of_summary(summary: dict[str, Any]) -> LfOTask:
    """Rebuild the task a run's task summary (:meth:`LfOTask.summary`) describes; opens the
    datasets, never downloads them. Summaries of earlier versions are upgraded first
    (:class:`tge_ray.pipeline.run_folder.RunFolder` does)."""
    return build_task(summary["offline"], summary["expert"], int(summary["n_expert_trajs"]),
                      int(summary["n_demos"]), demos=str(summary["demos"]))
