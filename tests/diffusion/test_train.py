"""Ray Train loop (2 CPU workers, one killed mid-run), a stopped run resumed by a new driver, and
windows it cannot take."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tge_ray.config import load_config
from tge_ray.diffusion.checkpoint import FORMAT, load_encoder, read_checkpoint
from tge_ray.diffusion.train import holds_a_checkpoint, train_diffusion
from tge_ray.errors import TGEError

torch.set_num_threads(1)
OBS_DIM, HORIZON = 3, 8
TINY_OVERRIDES = [
    f"windows.horizon={HORIZON}",
    "diffusion.dim=8",
    "diffusion.dim_mults=[1,2]",
    "diffusion.steps=12",
    "diffusion.batch_size=16",
    "diffusion.checkpoint_every=4",
    "diffusion.ema_start=2",
    "resources.train_workers=2",
    "resources.use_gpu=false",
]


def test_ray_train_two_workers_survives_a_dead_worker(ray_session, tmp_path):
    import ray

    cfg = load_config(None, TINY_OVERRIDES)
    windows = np.random.default_rng(0).standard_normal((96, HORIZON, OBS_DIM)).astype(np.float32)
    dataset = ray.data.from_numpy(windows).rename_columns({"data": "window"})
    # Rank 0 dies at step 10 (after the step-8 report, which waits until the controller has
    # taken the step-4 checkpoint); the new group must resume from a checkpoint: a run that
    # started over would die again and exceed max_failures=1.
    target = tmp_path / "model.pt"
    path = train_diffusion(cfg, dataset, OBS_DIM, tmp_path, target, progress=False, max_failures=1, _fail_at_step=10)

    assert path == target
    data = read_checkpoint(path)
    assert data["format"] == FORMAT and data["step"] == 12
    assert (data["obs_dim"], data["horizon"]) == (OBS_DIM, HORIZON)
    logged_steps = [step for step, _ in data["losses"]]
    assert logged_steps == sorted(logged_steps) and logged_steps[-1] == 12
    assert all(np.isfinite(loss) for _, loss in data["losses"])
    encoder = load_encoder(path, obs_dim=OBS_DIM, horizon=HORIZON)
    assert not encoder.training
    z = encoder.embed(torch.from_numpy(windows[:5]))
    assert z.shape == (5, 16) and torch.isfinite(z).all()
    # Ray Train's own files stay inside the run folder.
    assert any(p.name.startswith("ray_train-") for p in tmp_path.iterdir())
    assert not list(tmp_path.glob("*.tmp"))


def test_a_run_stopped_and_resumed_by_a_new_driver_equals_one_never_stopped(ray_session, tmp_path):
    """One worker, 16 steps of 6 batches an epoch, checkpoints every 4. The first driver's run dies
    at step 10 with no retries; a second driver on the same folder resumes it (Ray Train restores
    the run from its storage folder, as a rerun of `tge run` does) and must end with the weights
    of an uninterrupted run: the data position in the checkpoint puts the resumed worker at the
    same batch of the same epoch."""
    from tge_ray.data.windows import to_ray_dataset

    cfg = load_config(None, [*TINY_OVERRIDES, "diffusion.steps=16", "resources.train_workers=1"])
    windows = np.random.default_rng(1).standard_normal((96, HORIZON, OBS_DIM)).astype(np.float32)

    def train(folder: str, **hooks: int) -> dict:
        dataset = to_ray_dataset(windows, shuffle_seed=cfg.seed)
        path = train_diffusion(cfg, dataset, OBS_DIM, tmp_path / folder, tmp_path / f"{folder}.pt", progress=False,
                               max_failures=0, **hooks)
        return read_checkpoint(path)

    straight = train("straight")
    with pytest.raises(Exception):  # noqa: B017 (Ray's error for a dead worker group)
        train("stopped", _fail_at_step=10)
    assert not (tmp_path / "stopped.pt").exists() and holds_a_checkpoint(tmp_path / "stopped")
    # The hook fires only in a run that did not resume: a run started over would die at step 10 again.
    resumed = train("stopped", _fail_at_step=10)

    assert resumed["step"] == straight["step"] == 16
    assert resumed["losses"] == straight["losses"]
    for name in ("model_state_dict", "ema_state_dict"):
        for key, value in straight[name].items():
            assert torch.equal(value, resumed[name][key]), f"{name}[{key}] differs after the resume"


def test_windows_of_the_wrong_shape_fail_on_the_driver(ray_session, tmp_path):
    import ray

    cfg = load_config(None, TINY_OVERRIDES)
    dataset = ray.data.from_numpy(np.zeros((4, 4, OBS_DIM), np.float32)).rename_columns({"data": "window"})
    with pytest.raises(TGEError, match=r"windows have shape \(4, 3\), expected \(horizon=8, obs_dim=3\)"):
        train_diffusion(cfg, dataset, OBS_DIM, tmp_path, tmp_path / "model.pt", progress=False)
