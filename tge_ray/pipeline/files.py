"""Every file name of a run folder and of an artifact, and the readers and writers of the artifacts' arrays.

This is the one module that spells them: the stages write through it, and
:class:`tge_ray.pipeline.run_folder.RunFolder` and the report read through it.

    <artifact>/                       <run folder>/
        diffusion.pt   (diffusion)        config.yaml, results.json, metrics.jsonl
        embeddings.npz (embeddings)       checkpoints/<stage>.pt
        rewards.npz    (rewards)          reward_histogram.png, embeddings_2d.png
        policy.pt, metrics.jsonl          tensorboard/
                       (policy-*)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------- artifact files

ARTIFACT_FORMAT = 1
"""Version of the artifacts' files (below) and the manifest: bump it when one changes, so
artifacts of another format are never read as this one's (it is in every artifact's key)."""

DIFFUSION_FILE = "diffusion.pt"
EMBEDDINGS_FILE = "embeddings.npz"
REWARDS_FILE = "rewards.npz"
POLICY_FILE = "policy.pt"  # written by tge_ray.rl.train.train_policy (its CHECKPOINT_NAME)
STAGE_METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILES = (DIFFUSION_FILE, POLICY_FILE)  # an artifact's model, copied into the run folder
MANIFEST_FILE = "manifest.json"  # the artifact store's record of a complete artifact (written last)
SCRATCH_FILE = "artifacts.json"  # in a resume (scratch) folder: the artifacts it was made for

# ----------------------------------------------------------------------------- run folder files

CONFIG_FILE = "config.yaml"
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
REWARD_HISTOGRAM_FILE = "reward_histogram.png"
EMBEDDING_PROJECTION_FILE = "embeddings_2d.png"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_SUFFIX = ".pt"  # checkpoints/<stage>.pt: diffusion.pt, policy-tge-iql.pt, ...


@dataclass(frozen=True)
class Rewards:
    """A reward artifact's arrays: (N,) raw kernel rewards of D_mu's transitions, and the same
    scaled for the backbone (``reward.scale``)."""

    raw: np.ndarray
    scaled: np.ndarray


@dataclass(frozen=True)
class Embeddings:
    """An embedding artifact's arrays: (N, D) embeddings of D_mu's windows, (N_E, D) of D_E's."""

    mixed: np.ndarray
    demos: np.ndarray


def write_rewards(folder: Path, raw: np.ndarray, scaled: np.ndarray) -> None:
    np.savez(Path(folder) / REWARDS_FILE, raw=raw, scaled=scaled)


def read_rewards(folder: Path) -> Rewards:
    """The reward artifact in ``folder``; OSError or ValueError (numpy's) when it is missing or damaged."""
    with np.load(Path(folder) / REWARDS_FILE) as npz:
        return Rewards(raw=npz["raw"], scaled=npz["scaled"])


def write_embeddings(folder: Path, mixed: np.ndarray, demos: np.ndarray) -> None:
    np.savez(Path(folder) / EMBEDDINGS_FILE, mixed=mixed, demos=demos)


def read_embeddings(folder: Path) -> Embeddings:
    """The embedding artifact in ``folder``; OSError or ValueError when it is missing or damaged."""
    with np.load(Path(folder) / EMBEDDINGS_FILE) as npz:
        return Embeddings(mixed=npz["mixed"], demos=npz["demos"])


def diffusion_file(folder: Path) -> Path:
    """The diffusion checkpoint of a diffusion artifact (``tge_ray.diffusion.checkpoint``'s format)."""
    return Path(folder) / DIFFUSION_FILE


def policy_file(folder: Path) -> Path:
    """The policy checkpoint of a policy artifact (``tge_ray.rl.train``'s format)."""
    return Path(folder) / POLICY_FILE


def run_checkpoint(run_dir: Path, stage: str) -> Path:
    """A run folder's copy of a stage's checkpoint (``stage``: ``diffusion``, ``policy-<label>``)."""
    return Path(run_dir) / CHECKPOINTS_DIR / f"{stage}{CHECKPOINT_SUFFIX}"


def write_stage_metrics(folder: Path, rows: Iterable[dict[str, Any]]) -> None:
    """A stage's metrics rows (one JSON object a line) into its artifact."""
    with open(Path(folder) / STAGE_METRICS_FILE, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def read_stage_metrics(folder: Path) -> list[dict[str, Any]]:
    """A stage's metrics rows; none when the artifact has none."""
    path = Path(folder) / STAGE_METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
