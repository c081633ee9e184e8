"""Handing a run or a sweep to MLflow or Weights & Biases, through Ray's own integrations.

The run folder (and ``tge report``, its offline view) always holds everything; these are
copies for a researcher's tracker, made from what the run folder stored:

- ``tge run`` with ``tracking.mlflow``/``tracking.wandb``: once the run folder is written, one
  MLflow run / W&B run gets the config as parameters, every metrics row, evaluation and final
  score as metrics, and the run folder's files as artifacts
  (:func:`ray.air.integrations.mlflow.setup_mlflow`, :func:`ray.air.integrations.wandb.setup_wandb`).
- ``tge sweep``: Tune's :class:`~ray.air.integrations.mlflow.MLflowLoggerCallback` and
  :class:`~ray.air.integrations.wandb.WandbLoggerCallback` log every trial's reports.

The packages are the optional extras ``mlflow`` and ``wandb``; asking for a tracker that is
not installed is one line before anything runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from tge_ray.errors import ConfigError

EXTRAS = {"mlflow": "mlflow", "wandb": "wandb"}  # tracker -> the module its extra installs


def check_available(tracking: Any) -> None:
    """One line (ConfigError) for a tracker that is asked for and not installed."""
    for tracker, module in EXTRAS.items():
        if getattr(tracking, tracker) and importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"tracking.{tracker}=true needs the {module} package: pip install 'tge-ray[{tracker}]' "
                f"(or leave tracking.{tracker} false)"
            )


def _wandb_environment(tracking: Any) -> None:
    # Ray's integration asks for an API key unless the mode is set in the environment.
    if tracking.wandb:
        os.environ["WANDB_MODE"] = tracking.wandb_mode
        os.environ.setdefault("WANDB_SILENT", "true")


def _mlflow_experiment(tracking: Any) -> None:
    """Create the MLflow experiment of a database URI (``sqlite:///runs/mlflow.db``) with its
    artifacts beside the database, in ``mlartifacts/``. Left to Ray's integration, MLflow would
    put them in ``./mlruns`` of whatever folder the process happens to run in."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking.mlflow_uri or ""
    if not uri.startswith("sqlite:///"):
        return
    client = mlflow.MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name(tracking.project) is not None:
        return
    location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    try:
        client.create_experiment(tracking.project, artifact_location=location)
    except MlflowException:  # another run created it first
        if client.get_experiment_by_name(tracking.project) is None:
            raise


def tune_callbacks(tracking: Any) -> list[Any]:
    """Tune callbacks that log every trial of a sweep to the trackers asked for."""
    check_available(tracking)
    callbacks: list[Any] = []
    if tracking.mlflow:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        _mlflow_experiment(tracking)

        callbacks.append(MLflowLoggerCallback(tracking_uri=tracking.mlflow_uri, experiment_name=tracking.project))
    if tracking.wandb:
        from ray.air.integrations.wandb import WandbLoggerCallback

        _wandb_environment(tracking)
        callbacks.append(WandbLoggerCallback(project=tracking.project, mode=tracking.wandb_mode))
    return callbacks


def _series(run: Any) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every metrics row, evaluation and final score of a run folder."""
    rows = []
    for row in run.metrics():
        stage, step = str(row.get("stage", "")), int(row.get("step", 0))
        label = stage.removeprefix("policy-")
        for name, value in row.items():
            if name not in ("stage", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append((f"train/{label}/{name}", step, float(value)))
    for label, history in run.results.eval_history.items():
        rows += [(f"eval/{label}/normalised_score", int(step), float(score)) for step, score in history]
    return rows


def track_run(run_dir: Path, tracking: Any) -> None:
    """Copy a written run folder to the trackers ``tracking`` asks for."""
    if not (tracking.mlflow or tracking.wandb):
        return
    check_available(tracking)
    from tge_ray.config import to_dict
    from tge_ray.pipeline.run_folder import RunFolder

    run = RunFolder.open(run_dir)
    params = _flat(to_dict(run.config))
    finals = {f"score/{label}": float(score) for label, score in run.results.scores.items()}
    if run.results.separation.get("auc") is not None:
        finals["reward/separation_auc"] = float(run.results.separation["auc"])
    if tracking.mlflow:
        _to_mlflow(run, tracking, params, finals)
    if tracking.wandb:
        _to_wandb(run, tracking, params, finals)


def _to_mlflow(run: Any, tracking: Any, params: dict[str, Any], finals: dict[str, float]) -> None:
    from ray.air.integrations.mlflow import setup_mlflow

    _mlflow_experiment(tracking)
    mlflow = setup_mlflow(config=params, tracking_uri=tracking.mlflow_uri, experiment_name=tracking.project,
                          run_name=run.path.name, create_experiment_if_not_exists=True, rank_zero_only=False)
    try:
        for tag, step, value in _series(run):
            mlflow.log_metric(tag.replace("@", "_"), value, step=step)
        mlflow.log_metrics(finals)
        mlflow.log_artifacts(str(run.path), artifact_path="run_folder")
    finally:
        mlflow.end_run()


def _to_wandb(run: Any, tracking: Any, params: dict[str, Any], finals: dict[str, float]) -> None:
    import wandb
    from ray.air.integrations.wandb import setup_wandb

    from tge_ray.pipeline import files

    _wandb_environment(tracking)
    session = setup_wandb(config=params, project=tracking.project, trial_id=run.path.name, trial_name=run.path.name,
                          mode=tracking.wandb_mode, rank_zero_only=False)
    try:
        steps: dict[str, str] = {}
        for tag, step, value in _series(run):
            series = tag.rsplit("/", 1)[0]
            if series not in steps:  # each series against its own step: diffusion steps, RL updates
                steps[series] = f"{series}/step"
                session.define_metric(f"{series}/*", step_metric=steps[series])
            session.log({tag: value, steps[series]: step})
        for file in (files.EMBEDDING_PROJECTION_FILE, files.REWARD_HISTOGRAM_FILE):
            if (run.path / file).is_file():
                session.log({f"figures/{Path(file).stem}": wandb.Image(str(run.path / file))})
        session.summary.update(finals)
    finally:
        session.finish()


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, tuple)) else value
    return flat
