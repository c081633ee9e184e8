"""TGE-filtered behaviour cloning: BC on the episodes of D_mu that the TGE reward ranks highest.

The backbone ``rl.backbone=fbc`` is %BC (Chen et al., 2021, "Decision Transformer"; Emmons et
al., 2022, "RvS"), with the episode's TGE reward in place of its return:

    score_e = (sum_{t in e} r_t + m * mean(r)) / (T_e + m)      (r: the scaled TGE reward)
    keep the episodes of highest score_e, best first, up to a cut
    BC (the baseline's MLP and loss) on the kept transitions only

The score is the episode's mean reward, shrunk towards D_mu's mean reward with the weight of
``m`` transitions (``rl.fbc.prior`` windows of H; m = 0 gives the plain mean). An episode's
windows overlap, so an episode shorter than H holds about one window of evidence, and its plain
mean is as noisy as one window's reward: on walker2d, where random episodes last about 20
steps, hundreds of them outranked expert episodes by plain mean. With one window of prior they
fall back towards D_mu's mean; an episode of 500 steps hardly moves.

The cut (``rl.fbc.fraction``):

- ``auto``: Otsu's threshold (Otsu, 1979) on the episode scores, each weighted by its length:
  the split of the sorted episodes into kept and dropped that maximises the between-group
  variance of the transitions' episode scores, w_kept * w_dropped * (mu_kept - mu_dropped)^2.
  It needs no knowledge of how much of D_mu is expert-like; when the scores separate expert
  from other episodes it cuts between them. When every score is equal nothing separates, and
  every episode is kept (plain BC).
- a number in (0, 1]: whole episodes, best first, until they hold that share of D_mu's
  transitions (%BC's rule).

Why whole episodes and not the transitions' own rewards: near a task's start state the window
reward hardly tells an expert from random data (halfcheetah at rest, RESULTS.md), while an
episode's mean over all its windows does; and why a mean and not the sum: the sum grows with
the episode's length, which on tasks that terminate is the environment's own reward.

The learner is the BC one; what makes it filtered BC is the data it is given, chosen here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Selection:
    """Which transitions filtered BC trains on.

    Attributes:
        mask: (N,) bool, True for the kept transitions.
        episodes: number of kept episodes (of ``episodes_total``).
        threshold: the lowest kept episode score.
        rule: the cut that chose them: ``auto`` or the fraction.
    """

    mask: np.ndarray
    episodes: int
    episodes_total: int
    threshold: float
    rule: str

    @property
    def transitions(self) -> int:
        return int(self.mask.sum())

    def to_dict(self, expert_flags: np.ndarray | None = None) -> dict[str, float | int | str]:
        """Counts for the run's facts; with the expert flags, the kept expert share too."""
        info: dict[str, float | int | str] = {
            "episodes": self.episodes, "episodes_total": self.episodes_total,
            "transitions": self.transitions, "transitions_total": int(self.mask.size),
            "threshold": float(self.threshold), "rule": self.rule,
        }
        if expert_flags is not None:  # at least one episode is always kept
            info["expert_share"] = float(np.asarray(expert_flags, bool)[self.mask].mean())
        return info


def otsu_count(scores: np.ndarray, weights: np.ndarray) -> int:
    """How many of the best-first ``scores`` (with ``weights``) Otsu's threshold keeps.

    ``scores`` must be sorted best first. Returns the k in [1, n - 1] that maximises
    W_k (W - W_k) (mu_k - mu_rest)^2 (the first k on ties), or n when no split separates
    anything (one score, or all equal).
    """
    scores = np.asarray(scores, np.float64)
    weights = np.asarray(weights, np.float64)
    if scores.size < 2 or scores[0] == scores[-1]:
        return int(scores.size)
    cum_w, cum_ws = np.cumsum(weights), np.cumsum(weights * scores)
    total_w, total_ws = cum_w[-1], cum_ws[-1]
    kept_w, kept_ws = cum_w[:-1], cum_ws[:-1]
    rest_w = total_w - kept_w
    between = kept_w * rest_w * (kept_ws / kept_w - (total_ws - kept_ws) / rest_w) ** 2
    return int(np.argmax(between)) + 1


def top_episodes(
    rewards: np.ndarray,
    episode_ids: np.ndarray,
    fraction: float | Literal["auto"],
    prior: float = 0.0,
) -> Selection:
    """The episodes of highest score, up to the cut ``fraction`` (a share of the rows, or ``auto``).

    ``episode_ids`` (N,) numbers each row's episode (any integers, rows of one episode need not
    be contiguous). ``prior`` is the weight, in rows, of the mean reward in each episode's score
    (module docstring). Ties in the score go to the lower episode id, so the selection is
    deterministic. With a fraction, the last episode taken is kept whole, so the share can
    exceed it.
    """
    rewards = np.asarray(rewards, np.float64)
    episode_ids = np.asarray(episode_ids)
    if rewards.ndim != 1 or rewards.shape != episode_ids.shape or rewards.size == 0:
        raise ValueError(f"rewards and episode_ids must be the same non-empty (N,), got "
                         f"{rewards.shape} and {episode_ids.shape}")
    if fraction != "auto" and not (isinstance(fraction, (int, float)) and 0.0 < fraction <= 1.0):
        raise ValueError(f"fraction must lie in (0, 1] or be 'auto', got {fraction!r}")
    if not prior >= 0.0:
        raise ValueError(f"prior must be >= 0, got {prior}")
    episodes, index, lengths = np.unique(episode_ids, return_inverse=True, return_counts=True)
    scores = (np.bincount(index, weights=rewards) + prior * rewards.mean()) / (lengths + prior)
    order = np.lexsort((episodes, -scores))  # best score first, then lower id
    if fraction == "auto":
        taken, rule = otsu_count(scores[order], lengths[order]), "auto"
    else:
        needed = fraction * rewards.size
        taken = int(np.searchsorted(np.cumsum(lengths[order]), needed - 1e-9)) + 1
        rule = f"{fraction:g}"
    chosen = order[:taken]
    keep = np.zeros(len(episodes), bool)
    keep[chosen] = True
    return Selection(mask=keep[index], episodes=taken, episodes_total=len(episodes),
                     threshold=float(scores[chosen].min()), rule=rule)


def describe(info: dict[str, Any]) -> str:
    """One line for a :meth:`Selection.to_dict` (``tge run``'s table, ``tge report``)."""
    share = info.get("expert_share")
    expert = f", {100 * share:.0f}% of them expert-flagged" if share is not None else ""
    rule = info.get("rule")
    cut = "" if rule is None else (" (Otsu cut)" if rule == "auto" else f" (fraction {rule})")
    return (f"filtered BC{cut}: {info['episodes']} of {info['episodes_total']} episodes, "
            f"{info['transitions']} of {info['transitions_total']} transitions{expert}; "
            f"lowest kept score {info['threshold']:.3f}")
