"""TensorBoard event files of a run, written from what its stages stored (the loops log nothing).

    <run folder>/tensorboard/
        loss/diffusion                    the U-Net's denoising loss against its step
        train/<method>/<metric>           each learner's metrics rows (losses, Q values, ...)
        eval/<method>/normalised_score    every evaluation against the RL update step
        score/<method>                    the final normalised score
        reward/raw/expert, reward/raw/other, reward/scaled      histograms of D_mu's rewards
        reward/separation_auc, reward/true_reward_spearman      the two reward diagnostics
        embedding/projection, reward/histogram                  the run folder's PNGs as images
        config                            the resolved config, as text

``tensorboard --logdir <storage>`` shows every run (and every sweep trial) of a storage folder
side by side. Written with tensorboardX, which Ray Tune already depends on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.pipeline import files


def write_events(run_dir: Path, artifacts: dict[str, Any], record: Any, expert_flags: np.ndarray | None,
                 config_text: str) -> Path:
    """Write the event files of the run folder ``run_dir`` (being assembled) and return their folder.

    ``artifacts`` maps each stage to its artifact, ``record`` is the run's
    :class:`~tge_ray.pipeline.run_folder.RunRecord`, ``expert_flags`` D_mu's (N,) flags.
    """
    from tensorboardX import SummaryWriter

    folder = Path(run_dir) / files.TENSORBOARD_DIR
    writer = SummaryWriter(logdir=str(folder), flush_secs=3600)
    try:
        for stage, artifact in artifacts.items():
            name = stage.removeprefix("policy-")
            method, _, seed = name.rpartition("-seed")
            label = f"{method}/seed{seed}" if method and seed.isdigit() else name  # train/tge-iql/seed0/...
            for row in files.read_stage_metrics(artifact.path):
                step = int(row.get("step", 0))
                for name, value in row.items():
                    if name == "step" or not _finite(value):
                        continue
                    tag = f"loss/{stage}" if stage == "diffusion" and name == "loss" else f"train/{label}/{name}"
                    writer.add_scalar(tag, float(value), step)
        for label, history in record.eval_history.items():
            for step, score in history:
                writer.add_scalar(f"eval/{label}/normalised_score", float(score), int(step))
        for label, score in record.scores.items():
            writer.add_scalar(f"score/{label}", float(score), 0)
        for name, tag in (("auc", "reward/separation_auc"),):
            if _finite(record.separation.get(name)):
                writer.add_scalar(tag, float(record.separation[name]), 0)
        if record.true_reward_correlation and _finite(record.true_reward_correlation.get("transitions")):
            writer.add_scalar("reward/true_reward_spearman", float(record.true_reward_correlation["transitions"]), 0)
        if "rewards" in artifacts:
            rewards = files.read_rewards(artifacts["rewards"].path)
            writer.add_histogram("reward/scaled", rewards.scaled, 0)
            if expert_flags is not None and len(expert_flags) == len(rewards.raw):
                for name, rows in (("expert", expert_flags), ("other", ~expert_flags)):
                    if rows.any():
                        writer.add_histogram(f"reward/raw/{name}", rewards.raw[rows], 0)
        for file, tag in ((files.EMBEDDING_PROJECTION_FILE, "embedding/projection"),
                          (files.REWARD_HISTOGRAM_FILE, "reward/histogram")):
            if (Path(run_dir) / file).is_file():
                writer.add_image(tag, _png(Path(run_dir) / file), 0, dataformats="HWC")
        writer.add_text("config", "```\n" + config_text + "\n```", 0)
    finally:
        writer.close()
    return folder


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _png(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a PNG."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
