"""Where in an episode does a run's TGE reward pay? (a reward diagnostic)

The mean stored reward (scaled as the backbone saw it) of D_mu's expert-flagged and other
transitions by position in their episode: t steps after the start and d steps before the end
(d = 0 is the last transition). A reward that falls as an episode nears a termination (a fall)
tells the offline learner which actions of the suboptimal data delay it; a reward that is flat
there only tells trajectories apart.

Beside each group's mean stands the oracle's: D_mu's true reward scaled as oracle-IQL sees it
(:func:`~tge_ray.pipeline.policies.oracle_rewards`), and the last line gives both rewards'
contrast, the expert-flagged mean less the other mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tge_ray.diagnose.runs import task_and_rewards


@dataclass(frozen=True)
class ProfileGroup:
    """One group of D_mu's transitions (``expert-flagged`` or ``other``).

    ``from_start`` / ``to_end``: (position, mean reward) pairs; None where no episode of the
    group is that long. ``oracle_mean``: the group's mean oracle reward.
    """

    name: str
    mean: float
    oracle_mean: float
    episode_length_mean: float
    from_start: tuple[tuple[int, float | None], ...]
    to_end: tuple[tuple[int, float | None], ...]


@dataclass(frozen=True)
class RewardProfile:
    """A run's reward by position in D_mu's episodes."""

    run: str
    horizon: int
    kernel: str
    expert_windows: str
    groups: tuple[ProfileGroup, ...]

    def group(self, name: str) -> ProfileGroup:
        return next(group for group in self.groups if group.name == name)

    def lines(self) -> list[str]:
        def shown(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        out = [f"{self.run}: H = {self.horizon}, {self.kernel} kernel, expert windows {self.expert_windows}; "
               "mean scaled reward by position"]
        for group in self.groups:
            start = " ".join(f"t{t}:{shown(v)}" for t, v in group.from_start)
            end = " ".join(f"end-{d}:{shown(v)}" for d, v in group.to_end)
            out.append(f"  {group.name:15s} mean {group.mean:.3f} (oracle {group.oracle_mean:.3f}; episodes of "
                       f"{group.episode_length_mean:.0f} steps)  {start}  {end}")
        if len(self.groups) == 2:
            expert, other = self.group("expert-flagged"), self.group("other")
            out.append(f"  contrast (expert-flagged mean - other mean): {expert.mean - other.mean:.3f}, "
                       f"oracle {expert.oracle_mean - other.oracle_mean:.3f}")
        return out


def reward_profile(run: Any, *, from_start: Sequence[int] = (0, 5, 10, 20),
                   to_end: Sequence[int] = (0, 2, 5, 10, 20, 40)) -> RewardProfile:
    """The mean stored reward of ``run`` (a RunFolder with a TGE reward stage) at each position."""
    from tge_ray.pipeline.policies import oracle_rewards

    task, stored = task_and_rewards(run)
    rewards, mixed, flags = stored.scaled, task.mixed, task.expert_flags
    oracle = oracle_rewards(task)
    lengths = np.bincount(mixed.episode_ids, minlength=mixed.n_episodes)
    position = np.arange(mixed.n_transitions) - mixed.episode_starts[mixed.episode_ids]
    remaining = lengths[mixed.episode_ids] - 1 - position

    def means(rows: np.ndarray, where: np.ndarray, steps: Sequence[int]) -> tuple[tuple[int, float | None], ...]:
        return tuple((int(step), float(rewards[rows & (where == step)].mean()) if (rows & (where == step)).any()
                      else None) for step in steps)

    groups = []
    for name, rows in (("expert-flagged", flags), ("other", ~flags)):
        if rows.any():
            groups.append(ProfileGroup(name, float(rewards[rows].mean()), float(oracle[rows].mean()),
                                       float(lengths[np.unique(mixed.episode_ids[rows])].mean()),
                                       means(rows, position, from_start), means(rows, remaining, to_end)))
    cfg = run.config
    return RewardProfile(run.path.name, cfg.windows.horizon, cfg.reward.kernel, cfg.reward.expert_windows,
                         tuple(groups))
