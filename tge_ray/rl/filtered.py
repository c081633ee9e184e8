"""TGE-filtered behaviour cloning: BC on the episodes of D_mu that the TGE reward ranks highest.

The backbone ``rl.backbone=fbc`` is %BC (Chen et al., 2021, "Decision Transformer"; Emmons et
al., 2022, "RvS"), with the episode's mean TGE reward in place of its return:

    score_e = (1 / T_e) sum_{t in e} r_t            (r: the scaled TGE reward)
    keep the episodes of highest score_e, best first, until they hold >= fraction * |D_mu| transitions
    BC (the baseline's MLP and loss) on the kept transitions only

Why the episode mean and not the transitions' own rewards: near a task's start state the
window reward hardly tells an expert from random data (halfcheetah at rest, RESULTS.md), while
an episode's mean over all its windows does; and why the mean and not the sum: the sum grows
with the episode's length, which on tasks that terminate is the environment's own reward.

The learner is the BC one; what makes it filtered BC is the data it is given, chosen here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Selection:
    """Which transitions filtered BC trains on.

    Attributes:
        mask: (N,) bool, True for the kept transitions.
        episodes: number of kept episodes (of ``episodes_total``).
        threshold: the lowest kept episode score (mean reward).
    """

    mask: np.ndarray
    episodes: int
    episodes_total: int
    threshold: float

    @property
    def transitions(self) -> int:
        return int(self.mask.sum())

    def to_dict(self, expert_flags: np.ndarray | None = None) -> dict[str, float | int]:
        """Counts for the run's facts; with the expert flags, the kept expert share too."""
        info: dict[str, float | int] = {
            "episodes": self.episodes, "episodes_total": self.episodes_total,
            "transitions": self.transitions, "transitions_total": int(self.mask.size),
            "threshold": float(self.threshold),
        }
        if expert_flags is not None:  # at least one episode is always kept
            info["expert_share"] = float(np.asarray(expert_flags, bool)[self.mask].mean())
        return info


def top_episodes(rewards: np.ndarray, episode_ids: np.ndarray, fraction: float) -> Selection:
    """The episodes of highest mean reward that together hold at least ``fraction`` of the rows.

    ``episode_ids`` (N,) numbers each row's episode (any integers, rows of one episode need not
    be contiguous). Ties in the score go to the lower episode id, so the selection is
    deterministic. The last episode taken is kept whole, so the share can exceed ``fraction``.
    """
    rewards = np.asarray(rewards, np.float64)
    episode_ids = np.asarray(episode_ids)
    if rewards.ndim != 1 or rewards.shape != episode_ids.shape or rewards.size == 0:
        raise ValueError(f"rewards and episode_ids must be the same non-empty (N,), got "
                         f"{rewards.shape} and {episode_ids.shape}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    episodes, index, lengths = np.unique(episode_ids, return_inverse=True, return_counts=True)
    scores = np.bincount(index, weights=rewards) / lengths
    order = np.lexsort((episodes, -scores))  # best score first, then lower id
    needed = fraction * rewards.size
    taken = int(np.searchsorted(np.cumsum(lengths[order]), needed - 1e-9)) + 1
    chosen = order[:taken]
    keep = np.zeros(len(episodes), bool)
    keep[chosen] = True
    return Selection(mask=keep[index], episodes=taken, episodes_total=len(episodes),
                     threshold=float(scores[chosen].min()))


def describe(info: dict[str, Any]) -> str:
    """One line for a :meth:`Selection.to_dict` (``tge run``'s table, ``tge report``)."""
    share = info.get("expert_share")
    expert = f", {100 * share:.0f}% of them expert-flagged" if share is not None else ""
    return (f"filtered BC: {info['episodes']} of {info['episodes_total']} episodes, "
            f"{info['transitions']} of {info['transitions_total']} transitions{expert}; "
            f"lowest kept mean reward {info['threshold']:.3f}")
