"""Does the reward tell expert transitions from the rest? Numbers and plots to check.

D_mu carries a per-transition flag saying which transitions came from expert episodes (used for
diagnostics only, never for training). :func:`separation` reports the mean reward of each group
and the ROC AUC of the reward as a score for "is expert" (1.0: every expert transition outranks
every other one; 0.5: no better than chance). :func:`true_reward_correlation` asks how well the
reward orders D_mu as the environment's reward does, which needs no expert flags. The plots are the paper's two sanity checks: the
reward histogram per group (reward collapse shows as one spike) and a 2-D projection of the
embeddings (an expert cluster should be visible).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.io import atomic_path


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (N,), ties sharing the mean of the ranks they span."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    # A tie group occupying sorted positions first..first+count-1 (0-based) gets the mean rank.
    group_rank = first + (counts + 1) / 2.0
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat(group_rank, counts)
    return ranks


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of ``scores`` for ``positive`` (bool), via the Mann-Whitney U statistic.

    AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), R_pos the sum of the positives' ranks
    with ties given average ranks (so a tie counts one half). NaN when a class is empty.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if scores.shape != positive.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and flags {positive.shape} must be equal (N,) shapes")
    if np.isnan(scores).any():
        raise ValueError("scores hold NaN values")
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = average_ranks(scores)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def separation(rewards: np.ndarray, expert_flags: np.ndarray) -> dict[str, float]:
    """Mean reward of expert-flagged and other transitions, and the reward's ROC AUC.

    Returns ``{"mean_expert", "mean_other", "auc", "n_expert", "n_other"}`` (means and AUC are
    NaN for an empty group).
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    flags = np.asarray(expert_flags, dtype=bool)
    if rewards.shape != flags.shape or rewards.ndim != 1:
        raise ValueError(f"rewards {rewards.shape} and expert_flags {flags.shape} must be equal (N,) shapes")
    n_expert = int(flags.sum())
    n_other = len(flags) - n_expert
    return {
        "mean_expert": float(rewards[flags].mean()) if n_expert else float("nan"),
        "mean_other": float(rewards[~flags].mean()) if n_other else float("nan"),
        "auc": roc_auc(rewards, flags),
        "n_expert": n_expert,
        "n_other": n_other,
    }


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two (N,) arrays: the Pearson correlation of their average
    ranks (ties share a rank). NaN when either array is constant or N < 2."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x {x.shape} and y {y.shape} must be equal (N,) shapes")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("rank_correlation: the arrays hold NaN values")
    if len(x) < 2:
        return float("nan")
    rx, ry = average_ranks(x), average_ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry / denominator) if denominator > 0 else float("nan")


def true_reward_correlation(rewards: np.ndarray, true_rewards: np.ndarray, episode_ids: np.ndarray) -> dict[str, float]:
    """How well the TGE reward orders D_mu as the environment's own reward does (a diagnostic;
    the true reward never reaches TGE's learners).

    ``transitions``: Spearman's correlation of the two per transition. ``episodes``: of the two
    per-episode means (episode ids 0..M-1, as in D_mu). Unlike the separation AUC it needs no
    expert-flagged data, so it is defined at N = 0 too.
    """
    rewards, true_rewards = np.asarray(rewards, np.float64), np.asarray(true_rewards, np.float64)
    episode_ids = np.asarray(episode_ids)
    if not rewards.shape == true_rewards.shape == episode_ids.shape or rewards.ndim != 1:
        raise ValueError(f"rewards {rewards.shape}, true rewards {true_rewards.shape} and episode ids "
                         f"{episode_ids.shape} must be equal (N,) shapes")
    n_episodes = int(episode_ids.max()) + 1 if len(episode_ids) else 0
    counts = np.bincount(episode_ids, minlength=n_episodes)
    present = counts > 0

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(episode_ids, values, n_episodes)[present] / counts[present]

    return {
        "transitions": rank_correlation(rewards, true_rewards),
        "episodes": rank_correlation(mean(rewards), mean(true_rewards)),
    }


# ----------------------------------------------------------------------------- plots


def save_figure(figure: Any, path: str | os.PathLike[str]) -> Path:
    """Save ``figure`` to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    return path


def new_figure(size: tuple[float, float] = (6.4, 4.4)) -> Any:
    # Figure + Agg canvas directly, not pyplot: no global backend switch, no figure registry.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    return figure


def plot_reward_histogram(rewards: np.ndarray, expert_flags: np.ndarray,
                          path: str | os.PathLike[str], kernel: str = "log", bins: int = 60,
                          detail: str = "") -> Path:
    """Density histograms of the raw reward for expert-flagged vs other transitions.

    ``detail`` (e.g. ``"sigma=0.5, k=5"``) is added to the title, to tell several plots apart.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    flags = np.asarray(expert_flags, dtype=bool)
    stats = separation(rewards, flags)
    figure = new_figure()
    axes = figure.add_subplot()
    edges = np.histogram_bin_edges(rewards, bins=bins) if rewards.size else bins
    for mask, label, colour in ((~flags, "other", "tab:blue"), (flags, "expert", "tab:orange")):
        if mask.any():
            axes.hist(rewards[mask], bins=edges, density=True, alpha=0.55, color=colour,
                      label=f"{label} (n={int(mask.sum())}, mean={rewards[mask].mean():.3g})")
    suffix = f"\n{detail}" if detail else ""
    auc = f"ROC AUC {stats['auc']:.3f}" if stats["n_expert"] and stats["n_other"] else "no expert-flagged data"
    axes.set_title(f"Reward distribution, {kernel} kernel ({auc}){suffix}")
    axes.set_xlabel(f"raw reward ({kernel} kernel, before scaling)")
    axes.set_ylabel("density (per unit reward)")
    axes.legend(loc="best")
    return save_figure(figure, path)


def pca_2d(embeddings: np.ndarray) -> np.ndarray:
    """Project embeddings (N, D) onto their first two principal components -> (N, 2)."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)  # vt: (min(N, D), D)
    components = vt[:2]
    if components.shape[0] < 2:  # D == 1 or a single point: pad with zeros
        components = np.vstack([components, np.zeros((2 - components.shape[0], x.shape[1]))])
    return x @ components.T


def plot_embedding_projection(embeddings: np.ndarray, expert_flags: np.ndarray,
                              path: str | os.PathLike[str], returns: np.ndarray | None = None,
                              max_points: int = 5000, seed: int = 0, split: bool = False) -> Path:
    """2-D PCA of a random subsample (at most ``max_points``) of the embeddings.

    Expert-flagged points are drawn as orange crosses; the others are grey dots, or coloured by
    ``returns`` (N,) (e.g. their episode's return) when given. With ``split`` and ``returns``, the
    two colourings get a panel each: left by expert flag, right every point by its return.
    """
    embeddings = np.asarray(embeddings)
    flags = np.asarray(expert_flags, dtype=bool)
    if embeddings.ndim != 2 or len(embeddings) != len(flags):
        raise ValueError(f"embeddings {embeddings.shape} must be (N, D) with N = len(expert_flags) = {len(flags)}")
    if returns is not None and len(returns) != len(flags):
        raise ValueError(f"returns has {len(returns)} values for {len(flags)} embeddings")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(flags), size=min(max_points, len(flags)), replace=False))
    points = pca_2d(embeddings[keep]) if len(keep) else np.zeros((0, 2))  # (n, 2)
    flags = flags[keep]
    values = None if returns is None else np.asarray(returns, dtype=np.float64)[keep]
    title = f"Embeddings, 2-D PCA ({len(keep)} of {len(expert_flags)} points)"
    if split and values is not None:
        figure = new_figure((12.0, 5.2))
        by_flag, by_return = figure.subplots(1, 2)
        _scatter_flags(by_flag, points, flags, None, figure)
        by_flag.set_title("coloured by expert flag")
        drawn = by_return.scatter(points[:, 0], points[:, 1], c=values, cmap="viridis", s=6, alpha=0.7,
                                  label="transition (colour: episode return)")
        by_return.scatter(points[flags, 0], points[flags, 1], facecolors="none", edgecolors="tab:red",
                          marker="o", s=18, linewidths=0.6, label="expert (outlined)")
        figure.colorbar(drawn, ax=by_return, label="episode return (sum of rewards)")
        by_return.set_title("coloured by episode return")
        for axes in (by_flag, by_return):
            _label_components(axes)
        figure.suptitle(title)
        return save_figure(figure, path)
    figure = new_figure((6.4, 5.2))
    axes = figure.add_subplot()
    _scatter_flags(axes, points, flags, values, figure)
    axes.set_title(title)
    _label_components(axes)
    return save_figure(figure, path)


def _scatter_flags(axes: Any, points: np.ndarray, flags: np.ndarray, values: np.ndarray | None,
                   figure: Any) -> None:
    """Expert points as orange crosses over the others (grey, or coloured by ``values``)."""
    other = ~flags
    if values is not None:
        drawn = axes.scatter(points[other, 0], points[other, 1], c=values[other], cmap="viridis",
                             s=6, alpha=0.7, label="other (colour: return)")
        if other.any():
            figure.colorbar(drawn, ax=axes, label="return")
    else:
        axes.scatter(points[other, 0], points[other, 1], c="tab:gray", s=6, alpha=0.5, label="other")
    axes.scatter(points[flags, 0], points[flags, 1], c="tab:orange", marker="x", s=14,
                 alpha=0.8, label="expert")


def _label_components(axes: Any) -> None:
    axes.set_xlabel("principal component 1 (embedding units)")
    axes.set_ylabel("principal component 2 (embedding units)")
    axes.legend(loc="best")
