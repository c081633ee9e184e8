"""The run folder: what ``tge run`` leaves behind, written aside and moved into place whole.

    <storage>/<run name>__<time>/
        config.yaml          the resolved config
        results.json         scores, returns, reward diagnostics, eval histories, artifacts
        metrics.jsonl        every stage's metrics rows, each with its stage
        checkpoints/         the diffusion model and each policy
        reward_histogram.png, embeddings_2d.png
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.config import ExperimentConfig, dump_config
from tge_ray.data.task import LfOTask
from tge_ray.pipeline.artifacts import Artifact


def write_run_folder(
    cfg: ExperimentConfig,
    task: LfOTask,
    artifacts: dict[str, Artifact],
    results: dict[str, Any],
    run_root: Path,
) -> Path:
    """config.yaml, results.json, metrics.jsonl, checkpoints/ and PNGs, moved into place whole."""
    root = run_root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{cfg.run_name()}__{time.strftime('%Y%m%d-%H%M%S')}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}.tmp-"))
    try:
        dump_config(cfg, tmp / "config.yaml")
        checkpoints = tmp / "checkpoints"
        checkpoints.mkdir()
        with open(tmp / "metrics.jsonl", "w") as metrics:
            for name, artifact in artifacts.items():
                for file in ("diffusion.pt", "policy.pt"):
                    if (artifact.path / file).is_file():
                        shutil.copy2(artifact.path / file, checkpoints / f"{name}.pt")
                if (artifact.path / "metrics.jsonl").is_file():
                    for line in (artifact.path / "metrics.jsonl").read_text().splitlines():
                        metrics.write(json.dumps({"stage": name, **json.loads(line)}) + "\n")
        if "rewards" in artifacts:
            _plots(tmp, cfg, task, artifacts)
        text = json.dumps(_strict_json(results), indent=2, default=str, allow_nan=False)
        (tmp / "results.json").write_text(text)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _plots(folder: Path, cfg: ExperimentConfig, task: LfOTask, artifacts: dict[str, Artifact]) -> None:
    from tge_ray.reward.diagnostics import plot_embedding_projection, plot_reward_histogram

    with np.load(artifacts["rewards"].path / "rewards.npz") as npz:
        raw = npz["raw"]
    plot_reward_histogram(raw, task.expert_flags, folder / "reward_histogram.png", kernel=cfg.reward.kernel)
    with np.load(artifacts["embeddings"].path / "embeddings.npz") as npz:
        mixed = npz["mixed"]
    returns = task.mixed.episode_returns[task.mixed.episode_ids]
    plot_embedding_projection(mixed, task.expert_flags, folder / "embeddings_2d.png", returns=returns, seed=cfg.seed)


def _strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, so results.json is strict JSON.

    The separation diagnostic is NaN when D_mu holds no expert-flagged transitions (N = 0).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    return value
