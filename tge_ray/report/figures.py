"""A run's figures for the report: its reward and embedding arrays read back from the artifact
store, learning curves, and the reward histogram and embedding projection (or, where the
artifacts are gone, the PNGs the run folder itself holds)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tge_ray.config import ExperimentConfig
from tge_ray.pipeline.files import EMBEDDING_PROJECTION_FILE, RESULTS_FILE, REWARD_HISTOGRAM_FILE
from tge_ray.pipeline.run_folder import RunFolder, RunFolderError
from tge_ray.report.document import Block, Figure, Note
from tge_ray.report.values import fmt


@dataclass
class StageArrays:
    """What the reward diagnostics need, read back from the artifact store."""

    raw_rewards: np.ndarray  # (N,) raw kernel reward per transition of D_mu
    embeddings: np.ndarray  # (N, D) window embeddings of D_mu
    expert_flags: np.ndarray  # (N,) bool
    returns: np.ndarray | None  # (N,) return of each transition's episode, when the data is local
    returns_note: str | None  # why returns is None


def _transition_returns(run: RunFolder, n_rows: int) -> tuple[np.ndarray | None, str | None]:
    """Each D_mu transition's episode return, rebuilt from the datasets (opened, never downloaded)."""
    try:
        rebuilt = run.task()
    except Exception as exc:  # an optional colouring: failing to open the data only drops it
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"episode returns not shown (datasets not opened: {reason})"
    if rebuilt.mixed.n_transitions != n_rows:
        return None, (
            f"episode returns not shown: the datasets now give {rebuilt.mixed.n_transitions} transitions, "
            f"the run had {n_rows} (they changed since the run)"
        )
    return rebuilt.mixed.episode_returns[rebuilt.mixed.episode_ids], None


def has_arrays(run: RunFolder) -> bool:
    """Whether the run had a reward stage and its rewards and embeddings are still in the store."""
    stages = ("rewards", "embeddings")
    return all(run.has_stage(stage) for stage in stages) and not run.missing(*stages)


def load_stage_arrays(run: RunFolder) -> tuple[StageArrays | None, str | None]:
    """Rewards, embeddings and flags of a run, or None and the one-line reason they are missing."""
    from_folder = "the figures below come from the run folder"
    if not (run.has_stage("rewards") and run.has_stage("embeddings")):
        return None, "this run has no TGE reward stage (methods without tge): no reward diagnostics"
    gone = run.missing("rewards", "embeddings")
    if gone:
        return None, f"the run's artifacts are gone ({', '.join(gone)} not found): {from_folder}"
    try:
        raw, embeddings = run.rewards().raw, run.embeddings().mixed
    except RunFolderError as exc:  # a damaged artifact is reported like a missing one
        return None, f"{exc}: {from_folder}"
    try:
        flags = run.expert_flags()
    except (KeyError, TypeError, ValueError):
        return None, f"{run.path / RESULTS_FILE} has no task summary: {from_folder}"
    if not len(raw) == len(embeddings) == len(flags):
        return None, (
            f"the artifacts hold {len(raw)} rewards and {len(embeddings)} embeddings for {len(flags)} "
            f"transitions: {from_folder}"
        )
    returns, note = _transition_returns(run, len(flags))
    return StageArrays(raw, embeddings, flags, returns, note), None


def plot_learning_curves(histories: dict[str, list[tuple[int, float]]], path: Path, title: str) -> Path:
    """Normalised score against RL update steps, one line per method (or trial)."""
    from tge_ray.reward.diagnostics import new_figure, save_figure

    figure = new_figure((7.2, 4.6))
    axes = figure.add_subplot()
    for label, history in histories.items():
        steps = [step for step, _ in history]
        scores = [score for _, score in history]
        axes.plot(steps, scores, marker="o", markersize=4, label=label)
    axes.axhline(0.0, color="tab:gray", linewidth=0.8, linestyle=":")
    axes.set_title(title)
    axes.set_xlabel("RL update steps (gradient updates)")
    axes.set_ylabel("normalised score (0 = random, 100 = expert)")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    return save_figure(figure, path)


def eval_histories(run: RunFolder) -> dict[str, list[tuple[int, float]]]:
    """The run's evaluations: method -> [(step, normalised score), ...], methods without any left out."""
    return {method: points for method, points in run.results.eval_history.items() if points}


def reward_detail(config: ExperimentConfig) -> str:
    return f"sigma={fmt(config.reward.sigma)}, k={fmt(config.reward.k)}"


def diagnostic_figures(run: RunFolder, figures: Path, suffix: str, caption_note: str = "",
                        histogram: bool = True, projection: bool = True) -> list[Block]:
    """Reward histogram and/or embedding projection of one run (from artifacts, else its PNGs)."""
    from tge_ray.reward.diagnostics import plot_embedding_projection, plot_reward_histogram

    config = run.config
    kernel = config.reward.kernel
    histogram_path = figures / f"reward_histogram_{suffix}.png"
    projection_path = figures / f"embeddings_2d_{suffix}.png"
    histogram_caption = f"Raw {kernel}-kernel reward of D_mu's transitions, expert-flagged vs other{caption_note}."
    projection_caption = f"2-D PCA of D_mu's window embeddings, by expert flag and by episode return{caption_note}."
    arrays, gone = load_stage_arrays(run)
    blocks: list[Block] = []
    if arrays is not None:
        if histogram:
            plot_reward_histogram(arrays.raw_rewards, arrays.expert_flags, histogram_path, kernel=kernel,
                                  detail=reward_detail(config))
            blocks.append(Figure(histogram_path, histogram_caption))
        if projection:
            plot_embedding_projection(arrays.embeddings, arrays.expert_flags, projection_path,
                                      returns=arrays.returns, seed=config.seed, split=True)
            if arrays.returns_note:
                blocks.append(Note(arrays.returns_note))
            blocks.append(Figure(projection_path, projection_caption))
        return blocks
    assert gone is not None
    blocks.append(Note(gone))
    wanted = [(REWARD_HISTOGRAM_FILE, histogram_path, histogram_caption)] if histogram else []
    if projection:
        wanted.append((EMBEDDING_PROJECTION_FILE, projection_path, projection_caption))
    for source, target, caption in wanted:
        if (run.path / source).is_file():
            shutil.copy2(run.path / source, target)
            blocks.append(Figure(target, caption.removesuffix(".") + " (the run folder's own PNG)."))
    return blocks
