"""The run folder: one typed, versioned record of a run, its writer and its reader.

    <storage>/<run name>__<time>/
        config.yaml          the resolved config (with schema_version)
        results.json         a :class:`RunRecord`: scores, returns, reward diagnostics, eval
                             histories, the task summary, where each stage's artifact is
        metrics.jsonl        every stage's metrics rows, each with its stage
        checkpoints/         the diffusion model and each policy
        reward_histogram.png, embeddings_2d.png
        tensorboard/         TensorBoard event files (:mod:`tge_ray.pipeline.tensorboard`)

The pipeline writes it with :func:`write_run_folder` (aside, then moved into place whole);
every reader (``tge report``, the sweep's trials, the diagnostics) opens it with
:meth:`RunFolder.open`, which upgrades records of earlier versions
(:mod:`tge_ray.pipeline.upgrade`). File names are :mod:`tge_ray.pipeline.files`'.
"""

from __future__ import annotations

import json
import math
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tge_ray.config import ExperimentConfig, config_from_dict, dump_config
from tge_ray.errors import TGEError
from tge_ray.io import folder_beside, place_folder
from tge_ray.pipeline import files
from tge_ray.pipeline.integrity import copy_verified
from tge_ray.pipeline.upgrade import SCHEMA_VERSION, VERSION_KEY, upgrade_config, upgrade_results


class RunFolderError(TGEError):
    """A folder that cannot be read as a run folder, or a part of it that is gone (one line)."""


@dataclass(frozen=True)
class ArtifactRef:
    """Where a stage's artifact of the run lives, and whether the run reused it."""

    name: str
    path: Path
    reused: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "reused": self.reused}


@dataclass
class RunRecord:
    """results.json, typed.

    Attributes:
        scores: method label -> normalised score of the final policies (the mean over RL seeds).
        returns: method label -> (mean, std) of the final policies' returns (std over every
            evaluation episode of every seed).
        score_std: method label -> std of the score over RL seeds (0 with one seed; empty in
            records older than ``rl.seeds``).
        policies: method label -> each policy's seed, score, returns, eval history and artifact.
        separation: the reward's separation diagnostic (empty without a reward stage).
        task: the task summary (:meth:`tge_ray.data.task.LfOTask.summary`).
        config: the resolved config as a mapping.
        artifacts: stage -> its artifact.
        eval_history: method label -> (step, normalised score) of every evaluation.
        true_reward_correlation: Spearman's correlation of the reward with D_mu's true reward.
        filtered_bc: what filtered BC kept of D_mu (backbone fbc).
        reward_scaling: how raw rewards were scaled for the backbone.
        schema_version: the record's version (:data:`tge_ray.pipeline.upgrade.SCHEMA_VERSION`).
        extra: keys this version does not know, kept as read and written back.
    """

    scores: dict[str, float]
    returns: dict[str, tuple[float, float]]
    separation: dict[str, Any]
    task: dict[str, Any]
    config: dict[str, Any]
    artifacts: dict[str, ArtifactRef] = field(default_factory=dict)
    eval_history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    score_std: dict[str, float] = field(default_factory=dict)
    policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    true_reward_correlation: dict[str, Any] | None = None
    filtered_bc: dict[str, Any] | None = None
    reward_scaling: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The results.json mapping: strict JSON (NaN and infinities become null)."""
        data: dict[str, Any] = {
            VERSION_KEY: self.schema_version,
            "scores": self.scores,
            "returns": {label: {"mean": mean, "std": std} for label, (mean, std) in self.returns.items()},
            "separation": self.separation,
            **({"score_std": self.score_std} if self.score_std else {}),
            **({"policies": self.policies} if self.policies else {}),
            **({"true_reward_correlation": self.true_reward_correlation} if self.true_reward_correlation else {}),
            **({"filtered_bc": self.filtered_bc} if self.filtered_bc else {}),
            "reward_scaling": self.reward_scaling,
            "eval_history": {label: [list(point) for point in history] for label, history in self.eval_history.items()},
            "task": self.task,
            "artifacts": {stage: ref.to_json() for stage, ref in self.artifacts.items()},
            "config": self.config,
            **self.extra,
        }
        return _strict_json(data)

    @classmethod
    def from_json(cls, data: Any, source: str = files.RESULTS_FILE) -> RunRecord:
        """A checked record from a parsed results.json of any version; RunFolderError names what is wrong."""
        problem = _results_problem(data)
        if problem:
            raise RunFolderError(f"{source} {problem}")
        try:
            data = upgrade_results(data, source)
        except TGEError as exc:
            raise RunFolderError(str(exc)) from None
        known = {VERSION_KEY, "scores", "returns", "separation", "score_std", "policies", "true_reward_correlation",
                 "filtered_bc",
                 "reward_scaling", "eval_history", "task", "artifacts", "config"}
        artifacts = {
            stage: ArtifactRef(str(ref.get("name", "")), Path(str(ref["path"])), bool(ref.get("reused", False)))
            for stage, ref in (data.get("artifacts") or {}).items()
            if isinstance(ref, dict) and ref.get("path")
        }
        return cls(
            scores={label: float(score) for label, score in data["scores"].items()},
            returns={label: (float(r["mean"]), float(r["std"])) for label, r in data["returns"].items()},
            separation=dict(data.get("separation") or {}),
            task=dict(data.get("task") or {}),
            config=dict(data.get("config") or {}),
            artifacts=artifacts,
            eval_history={label: _history(points) for label, points in (data.get("eval_history") or {}).items()},
            score_std={label: float(std) for label, std in (data.get("score_std") or {}).items()},
            policies=dict(data.get("policies") or {}),
            true_reward_correlation=data.get("true_reward_correlation"),
            filtered_bc=data.get("filtered_bc"),
            reward_scaling=data.get("reward_scaling"),
            schema_version=int(data[VERSION_KEY]),
            extra={key: value for key, value in data.items() if key not in known},
        )


def _history(points: Any) -> list[tuple[int, float]]:
    return [(int(p[0]), float(p[1])) for p in points or [] if isinstance(p, (list, tuple)) and len(p) == 2]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _results_problem(results: Any) -> str | None:
    """What is wrong with a parsed results.json, or None."""
    if not isinstance(results, dict):
        return f"holds a JSON {type(results).__name__}, not an object"
    for key in ("scores", "returns"):
        if not isinstance(results.get(key), dict):
            return f"has no {key!r} table"
    for method, score in results["scores"].items():
        if not _is_number(score):
            return f"has a non-numeric score for {method!r} ({score!r})"
        entry = results["returns"].get(method)
        if not (isinstance(entry, dict) and _is_number(entry.get("mean")) and _is_number(entry.get("std"))):
            return f"has no return mean/std for {method!r}"
    return None


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


# ----------------------------------------------------------------------------- reading


@dataclass
class RunFolder:
    """A run folder, read: its record, its config, and the arrays its artifacts hold."""

    path: Path
    results: RunRecord
    config: ExperimentConfig
    config_text: str  # config.yaml as written (the resolved config, for reading)

    @staticmethod
    def is_run_folder(path: Path) -> bool:
        return (Path(path) / files.RESULTS_FILE).is_file()

    @staticmethod
    def inside(folder: Path) -> list[Path]:
        """The run folders directly inside ``folder`` (a storage folder, a sweep trial), sorted."""
        return sorted(results.parent for results in Path(folder).glob(f"*/{files.RESULTS_FILE}"))

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunFolder:
        """Read and check a run folder of any version; a missing or damaged one is one RunFolderError line."""
        path = Path(path)
        results_file, config_file = path / files.RESULTS_FILE, path / files.CONFIG_FILE
        rerun = f"rerun it with `tge run {config_file}`" if config_file.is_file() else "rerun it with `tge run`"
        if not results_file.is_file():
            raise RunFolderError(f"{path} is not a `tge run` folder (no {files.RESULTS_FILE})")
        try:
            data = json.loads(results_file.read_text())
        except json.JSONDecodeError as exc:
            raise RunFolderError(
                f"{results_file} is not valid JSON ({exc.msg} at line {exc.lineno}): the run folder is damaged; {rerun}"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RunFolderError(f"{results_file} cannot be read ({exc}): {rerun}") from None
        try:
            record = RunRecord.from_json(data, str(results_file))
        except RunFolderError as exc:
            raise RunFolderError(f"{exc}: it was not written by `tge run` or is damaged; {rerun}") from None
        if config_file.is_file():
            config_text = config_file.read_text()
            try:
                written = yaml.safe_load(config_text)
            except yaml.YAMLError:
                raise RunFolderError(f"{config_file} does not parse as YAML: the run folder is damaged; {rerun}") from None
            if not isinstance(written, dict):
                raise RunFolderError(f"{config_file} holds no config mapping: the run folder is damaged; {rerun}")
        else:  # a folder copied without its config.yaml: results.json holds the same config
            written = {VERSION_KEY: record.schema_version, **record.config}
            config_text = yaml.safe_dump(record.config, sort_keys=False)
        try:
            config = config_from_dict(upgrade_config(written, str(config_file)))
        except TGEError as exc:
            raise RunFolderError(f"{config_file} cannot be read by this version: {exc}") from None
        return cls(path, record, config, config_text)

    # ------------------------------------------------------------------ artifacts

    def has_stage(self, stage: str) -> bool:
        return stage in self.results.artifacts

    def artifact(self, stage: str) -> Path:
        """The folder of the run's ``stage`` artifact (it may be gone: see :meth:`missing`)."""
        if stage not in self.results.artifacts:
            what = "TGE reward stage" if stage in ("diffusion", "embeddings", "rewards") else f"{stage} stage"
            raise RunFolderError(f"{self.path} has no {what} (run it with methods including tge)")
        return self.results.artifacts[stage].path

    def missing(self, *stages: str) -> list[str]:
        """The files of these stages' artifacts that are gone (the store was cleaned or moved)."""
        wanted = {"diffusion": files.DIFFUSION_FILE, "embeddings": files.EMBEDDINGS_FILE, "rewards": files.REWARDS_FILE}
        return [str(self.artifact(stage) / wanted[stage]) for stage in stages
                if not (self.artifact(stage) / wanted[stage]).is_file()]

    def _read(self, stage: str, reader: Any) -> Any:
        gone = self.missing(stage)
        if gone:
            raise RunFolderError(f"the run's {stage} artifact is gone ({gone[0]} not found): rerun "
                                 f"`tge run {self.path / files.CONFIG_FILE}` to rebuild it")
        try:
            return reader(self.artifact(stage))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # a damaged .npz
            raise RunFolderError(f"the run's {stage} artifact cannot be read ({type(exc).__name__}: {exc})") from None

    def rewards(self) -> files.Rewards:
        """Raw and scaled rewards of D_mu's transitions, from the run's reward artifact."""
        return self._read("rewards", files.read_rewards)

    def embeddings(self) -> files.Embeddings:
        """Embeddings of D_mu's and D_E's windows, from the run's embedding artifact."""
        return self._read("embeddings", files.read_embeddings)

    def metrics(self) -> list[dict[str, Any]]:
        """Every stage's metrics rows (``stage``, ``step`` and the metrics), as the run stored them."""
        path = self.path / files.METRICS_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def diffusion_checkpoint(self) -> Path:
        """The diffusion model: the run folder's copy, else the artifact's."""
        own = files.run_checkpoint(self.path, "diffusion")
        return own if own.is_file() else files.diffusion_file(self.artifact("diffusion"))

    def policy_checkpoints(self) -> dict[str, Path]:
        """Policy -> the run folder's copy of its checkpoint; a policy is named by its stage
        without ``policy-`` (``tge-iql-seed0``; ``tge-iql`` in records before ``rl.seeds``)."""
        stages = [stage for stage in self.results.artifacts if stage.startswith("policy-")]
        return {stage.removeprefix("policy-"): files.run_checkpoint(self.path, stage) for stage in stages
                if files.run_checkpoint(self.path, stage).is_file()}

    # ------------------------------------------------------------------ the task

    def expert_flags(self) -> np.ndarray:
        """(N,) flags of D_mu's expert rows, from the task summary alone: D_mu is the offline data
        followed by the N expert episodes (:func:`tge_ray.data.task.mix_task`)."""
        total = int(self.results.task["mixed_transitions"])
        expert = int(self.results.task["expert_transitions_in_mixed"])
        flags = np.zeros(total, dtype=bool)
        flags[total - expert:] = True
        return flags

    def task(self) -> Any:
        """The run's :class:`~tge_ray.data.task.LfOTask`, rebuilt from its datasets (opened, never downloaded)."""
        from tge_ray.data.task import task_of_summary

        return task_of_summary(self.results.task)

    def transitions(self, rewards: np.ndarray) -> Any:
        """D_mu's transitions (:class:`~tge_ray.rl.buffer.Transitions`) labelled with ``rewards``."""
        from tge_ray.pipeline.policies import transitions_of

        return transitions_of(self.task(), rewards)


# ----------------------------------------------------------------------------- writing


def write_run_folder(
    cfg: ExperimentConfig,
    task: Any,
    artifacts: dict[str, Any],
    record: RunRecord,
    run_root: Path,
) -> Path:
    """config.yaml, results.json, metrics.jsonl, checkpoints/, PNGs and tensorboard/, moved into place whole.

    ``artifacts`` maps each stage to its :class:`~tge_ray.pipeline.artifacts.Artifact`.
    """
    root = run_root.expanduser().resolve()
    final = root / f"{cfg.run_name()}__{time.strftime('%Y%m%d-%H%M%S')}"
    with folder_beside(final) as tmp:
        dump_config(cfg, tmp / files.CONFIG_FILE)
        (tmp / files.CHECKPOINTS_DIR).mkdir()
        with open(tmp / files.METRICS_FILE, "w") as metrics:
            for name, artifact in artifacts.items():
                for file in files.CHECKPOINT_FILES:
                    if (artifact.path / file).is_file():  # only the bytes the manifest records
                        copy_verified(artifact.path, file, files.run_checkpoint(tmp, name))
                for row in files.read_stage_metrics(artifact.path):
                    metrics.write(json.dumps({"stage": name, **row}) + "\n")
        if "rewards" in artifacts:
            _plots(tmp, cfg, task, artifacts)
        text = json.dumps(record.to_json(), indent=2, default=str, allow_nan=False)
        (tmp / files.RESULTS_FILE).write_text(text)
        if cfg.tracking.tensorboard:
            from tge_ray.pipeline.tensorboard import write_events

            write_events(tmp, artifacts, record, task.expert_flags, (tmp / files.CONFIG_FILE).read_text())
        return place_folder(tmp, final)  # a run of the same config that ended in the same second: final-2


def _plots(folder: Path, cfg: ExperimentConfig, task: Any, artifacts: dict[str, Any]) -> None:
    from tge_ray.reward.diagnostics import plot_embedding_projection, plot_reward_histogram

    raw = files.read_rewards(artifacts["rewards"].path).raw
    plot_reward_histogram(raw, task.expert_flags, folder / files.REWARD_HISTOGRAM_FILE, kernel=cfg.reward.kernel)
    mixed = files.read_embeddings(artifacts["embeddings"].path).mixed
    returns = task.mixed.episode_returns[task.mixed.episode_ids]
    plot_embedding_projection(mixed, task.expert_flags, folder / files.EMBEDDING_PROJECTION_FILE, returns=returns,
                              seed=cfg.seed)
