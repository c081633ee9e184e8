"""Handing a run folder to MLflow (a local store) and W&B (offline), and one line for a tracker not installed."""

from __future__ import annotations

import json

import pytest

from tests.pipeline.test_upgrade import _version_1_folder
from tge_ray import tracking
from tge_ray.config import TrackingConfig
from tge_ray.errors import ConfigError
from tge_ray.pipeline import files


def _run_folder(tmp_path):
    """A run folder with metrics rows of two stages and the projection PNG."""
    from PIL import Image

    run_dir, written = _version_1_folder(tmp_path)
    rows = [{"stage": "diffusion", "step": 10, "loss": 0.7}, {"stage": "policy-tge-fbc", "step": 200, "bc_loss": 0.3}]
    (run_dir / files.METRICS_FILE).write_text("".join(json.dumps(row) + "\n" for row in rows))
    Image.new("RGB", (20, 10), (0, 0, 255)).save(run_dir / files.EMBEDDING_PROJECTION_FILE)
    return run_dir, written


def test_a_run_goes_to_mlflow(tmp_path):
    import mlflow

    run_dir, written = _run_folder(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.track_run(run_dir, TrackingConfig(tensorboard=False, mlflow=True, mlflow_uri=uri, project="tests"))
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tests")
    assert experiment.artifact_location == (tmp_path / "mlartifacts").as_uri()  # beside the database, not ./mlruns
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == run_dir.name and run.data.params["seed"] == "3"
    assert run.data.params["task.demos"] == "next"  # the record, read as the run ran
    assert run.data.metrics["score/tge-fbc"] == 41.5 and run.data.metrics["reward/separation_auc"] == 0.9
    history = client.get_metric_history(run.info.run_id, "eval/tge-fbc/normalised_score")
    assert [(m.step, m.value) for m in history] == [(100, 20.0), (200, 41.5)]
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/diffusion/loss")] == [(10, 0.7)]
    listed = {item.path for item in client.list_artifacts(run.info.run_id, "run_folder")}
    assert f"run_folder/{files.RESULTS_FILE}" in listed and f"run_folder/{files.EMBEDDING_PROJECTION_FILE}" in listed


def test_a_run_goes_to_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir, written = _run_folder(tmp_path)
    import wandb

    tracking.track_run(run_dir, TrackingConfig(tensorboard=False, wandb=True, project="tests"))
    wandb.teardown()  # W&B's own process writes the run's file after finish(); wait for it
    (record,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")  # W&B's offline run, for `wandb sync`
    data = record.read_bytes()
    for key in (b"eval/tge-fbc/normalised_score", b"train/diffusion/loss", b"score/tge-fbc", b"task.demos",
                b"figures/embeddings_2d"):
        assert key in data, key


def test_a_tracker_that_is_not_installed_is_one_line(monkeypatch, tmp_path, capsys):
    from tge_ray.cli import main

    monkeypatch.setitem(tracking.EXTRAS, "mlflow", "no_such_mlflow_module")
    with pytest.raises(ConfigError, match=r"tracking.mlflow=true needs the no_such_mlflow_module package: "
                                          r"pip install 'tge-ray\[mlflow\]'"):
        tracking.check_available(TrackingConfig(mlflow=True))
    tracking.check_available(TrackingConfig(wandb=True))  # installed: nothing to say
    assert main(["run", "smoke", f"storage={tmp_path / 'runs'}", "tracking.mlflow=true"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tge: error: tracking.mlflow=true needs" in err
    assert not (tmp_path / "runs").exists(), "nothing was run or written"
