"""Ray Train (V2) loop that trains the window DDPM.

One window's way through this module: the driver hands a Ray Dataset of standardised windows
(column ``window``, (H, obs_dim) float32) to a :class:`ray.train.torch.TorchTrainer`; each worker
streams its shard, takes DDP gradient steps (:class:`DiffusionTrainerState`), and rank 0 reports
a checkpoint every ``diffusion.checkpoint_every`` steps. A worker that dies is replaced and the
group resumes from the last checkpoint (``FailureConfig``); a driver that is restarted with the
same ``out_dir`` resumes too (Ray Train V2 restores the run from its storage folder), which is
how an interrupted ``tge run`` continues its diffusion stage. At the end the driver turns the
last checkpoint into one file in the format of :mod:`tge_ray.diffusion.checkpoint`, which the
embedding stage loads the encoder from.

A checkpoint holds the trainer (weights, EMA, Adam, the step and noise generator) and where the
worker was in its data: the epoch and the batches of it already taken. A resumed worker reads
that epoch again and passes over those batches without training on them, so with one worker
(``resources.train_workers=1``, the default) a resumed run trains on the same batches as one
never stopped and ends with the same weights. With several, each worker's shard of an epoch is
whatever Ray Data's split hands it, and only rank 0's noise stream is saved: a resumed run
continues from the checkpoint's weights but not bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tge_ray.accel import compile_model
from tge_ray.config import ExperimentConfig, to_dict
from tge_ray.diffusion.checkpoint import diffusion_config_from_dict, write_checkpoint
from tge_ray.diffusion.ddpm import DiffusionTrainerState
from tge_ray.diffusion.unet import TemporalUnet
from tge_ray.errors import TGEError
from tge_ray.io import torch_save

STATE_FILE = "state.pt"  # inside each Ray Train checkpoint directory
HEALTH_CHECK_ENV, HEALTH_CHECK_INTERVAL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5"
"""Ray Train's controller poll interval, unless the environment sets one (its default is 2 s)."""


# ----------------------------------------------------------------------------- helpers


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def resolve_use_gpu(use_gpu: bool | str) -> bool:
    """``auto`` -> whether the Ray cluster has GPUs; ``True`` requires them."""
    if use_gpu == "auto":
        return cluster_has_gpus()
    if use_gpu is True and not cluster_has_gpus():
        raise TGEError("resources.use_gpu=true but the Ray cluster has no GPUs: use auto or false")
    return bool(use_gpu)


def _feedable(windows: Any, train_workers: int) -> Any:
    """The windows dataset, run to the end first when the workers would take every CPU.

    Ray Data needs a free CPU for any pending map step; with one CPU per worker and no CPU
    left (e.g. 2 workers on a 2-CPU laptop) streaming would wait forever, so the windows are
    materialised into the object store before the workers start.
    """
    import ray

    if ray.cluster_resources().get("CPU", 0) - train_workers < 1:
        return windows.materialize()
    return windows


def _ingest_as_the_dataset_says(windows: Any) -> Any:
    """Ray Train's data config carrying the dataset's own execution options.

    Train replaces a dataset's options with its own at ingest. Handing it the dataset's keeps
    what the dataset asks for: a seeded permutation from ``to_ray_dataset`` keeps its order
    (``preserve_order``), so one seed trains one model. It also avoids
    ``DataConfig.default_ingest_options``, which passes the deprecated ``exclude_resources``
    and warns on every run.
    """
    import copy

    import ray.train

    return ray.train.DataConfig(execution_options=copy.copy(windows.context.execution_options))


def _check_windows(windows: Any, horizon: int, obs_dim: int) -> None:
    """One row on the driver: a wrong column or shape is one line here, not a failed worker group
    that Ray Train would retry ``max_failures`` times."""
    try:
        batch = windows.take_batch(1, batch_format="numpy")
    except ValueError:  # Ray Data's answer for an empty dataset
        batch = {"window": np.empty((0, horizon, obs_dim), np.float32)}
    if "window" not in batch:
        raise TGEError(f"the windows dataset needs a column 'window', got {sorted(batch)}")
    if len(batch["window"]) == 0:
        raise TGEError("the windows dataset is empty: give the diffusion stage some windows")
    shape = tuple(np.asarray(batch["window"]).shape[1:])
    if shape != (horizon, obs_dim):
        raise TGEError(f"windows have shape {shape}, expected (horizon={horizon}, obs_dim={obs_dim})")


def _run_name(cfg: ExperimentConfig, obs_dim: int) -> str:
    """Ray Train run folder keyed by what the weights depend on, so a restarted driver resumes
    only a run of the same settings."""
    key = json.dumps(
        [to_dict(cfg.diffusion), obs_dim, cfg.windows.horizon, cfg.seed, cfg.resources.train_workers],
        sort_keys=True,
    )
    return "ray_train-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def holds_a_checkpoint(out_dir: Path) -> bool:
    """Whether ``out_dir`` (the ``out_dir`` of :func:`train_diffusion`) holds a run with a
    registered checkpoint, which a restarted driver resumes from. Ray Train V2 writes its
    checkpoint manager's snapshot once a checkpoint is complete, so a folder with only a
    checkpoint cut short (a full disk, ``kill -9``) does not count."""
    return any(Path(out_dir).glob("ray_train-*/checkpoint_manager_snapshot.json"))


# ----------------------------------------------------------------------------- worker


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import ray.train.torch

    # 1. Settings and seeding: every rank builds the same initial weights.
    cfg = diffusion_config_from_dict(config["diffusion"])
    obs_dim, horizon, seed = config["obs_dim"], config["horizon"], config["seed"]
    if config.get("torch_threads"):
        torch.set_num_threads(config["torch_threads"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = ray.train.torch.get_device()
    torch.manual_seed(seed)

    # 2. Model (DDP when several workers), EMA, optimiser, RNG.
    model = ray.train.torch.prepare_model(TemporalUnet(obs_dim, horizon, cfg))
    model = compile_model(model, config.get("compile", False), device, context.get_world_size())
    # Rank 0 draws exactly what an in-process run with this seed draws; others their own stream.
    state = DiffusionTrainerState(model, cfg, seed=seed + 100_003 * rank, device=device)
    losses: list[tuple[int, float]] = []
    epoch, skip = 0, 0  # where this worker starts in its data: the epoch, and its batches already taken

    # 3. Resume from the last checkpoint (after a worker failure or a driver restart).
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder) / STATE_FILE, map_location=device, weights_only=False)
        state.load_state_dict(saved["trainer"])
        losses = [tuple(x) for x in saved["losses"]]
        epoch, skip = saved.get("data", (0, 0))  # an earlier version's checkpoint: the epoch's start
        if rank != 0:  # only rank 0's stream is saved; the others restart theirs by step
            state.generator.manual_seed(seed + 100_003 * rank + state.step)
    fail_at = config.get("_fail_at_step") if checkpoint is None else None  # test hook

    def report(with_checkpoint: bool) -> None:
        metrics = {"step": state.step, "loss": losses[-1][1] if losses else float("nan")}
        if not with_checkpoint or rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch_save({"trainer": state.state_dict(), "losses": losses, "data": (epoch, taken)},
                       Path(folder) / STATE_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

    # 4. Epochs over this worker's shard until the step budget is spent.
    shard = ray.train.get_dataset_shard("windows")
    progress = config.get("progress")
    log_every = config["log_every"]
    taken = 0  # batches of this epoch taken; a resumed epoch passes over the first ``skip``
    while state.step < cfg.steps:
        saw_a_batch = False
        for batch in shard.iter_torch_batches(
            batch_size=cfg.batch_size,
            dtypes=torch.float32,
            drop_last=False,
            local_shuffle_buffer_size=4 * cfg.batch_size,
            local_shuffle_seed=seed + epoch,
        ):
            taken += 1
            saw_a_batch = True
            if taken <= skip:
                continue
            windows = batch["window"]  # (B, H, obs_dim)
            if windows.shape[1:] != (horizon, obs_dim):
                raise TGEError(
                    f"windows have shape {tuple(windows.shape[1:])}, expected (horizon={horizon}, obs_dim={obs_dim})"
                )
            state.update(windows)
            if fail_at is not None and rank == 0 and state.step == fail_at:
                os._exit(1)  # simulate a dead worker
            if state.step % log_every == 0 or state.step == cfg.steps:
                losses.append((state.step, state.mean_loss()))
                if rank == 0 and progress is not None:
                    progress.push.remote(state.step, losses[-1][1])
            if state.step % cfg.checkpoint_every == 0 and state.step < cfg.steps:
                report(with_checkpoint=True)
            if state.step >= cfg.steps:
                break
        if not saw_a_batch:
            raise TGEError("the windows dataset shard is empty: give the diffusion stage some windows")
        epoch, taken, skip = epoch + 1, 0, 0
    report(with_checkpoint=True)


# ----------------------------------------------------------------------------- driver


def _progress_sink():
    import ray

    @ray.remote(num_cpus=0)
    class ProgressSink:
        """Rank 0 pushes (step, loss); the driver drains them into its progress bar."""

        def __init__(self) -> None:
            self.items: list[tuple[int, float]] = []

        def push(self, step: int, loss: float) -> None:
            self.items.append((step, loss))

        def drain(self) -> list[tuple[int, float]]:
            items, self.items = self.items, []
            return items

    return ProgressSink.remote()


def _fit_with_progress(trainer: Any, sink: Any, total: int, log_every: int) -> Any:
    import ray
    from tqdm.auto import tqdm

    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    with tqdm(total=total, desc="diffusion", unit="step", dynamic_ncols=True) as bar:
        while thread.is_alive():
            thread.join(timeout=0.5)
            for step, loss in ray.get(sink.drain.remote()):
                if bar.n == 0:  # the first step logged: a resumed run's starts past its checkpoint,
                    bar.initial = step - log_every  # and the rate counts only the steps taken here
                bar.n = step  # not update(): a resumed run may step back
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                bar.refresh()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def train_diffusion(
    cfg: ExperimentConfig,
    windows: Any,
    obs_dim: int,
    out_dir: Path,
    checkpoint: Path,
    *,
    progress: bool = True,
    max_failures: int | None = None,
    _fail_at_step: int | None = None,
) -> Path:
    """Train the window DDPM with Ray Train; write the final model to ``checkpoint`` and return it.

    Args:
        cfg: the experiment config (``diffusion``, ``windows.horizon``, ``seed``, ``resources``).
        windows: ``ray.data.Dataset`` with one column ``window`` of (H, obs_dim) float32 arrays,
            already standardised, in the order to train on; every epoch reads it again, with
            the dataset's own execution options (``to_ray_dataset(..., shuffle_seed=...)``
            gives a shuffled one that keeps its order).
        obs_dim: state dimension.
        out_dir: working folder; Ray Train's own files go to ``out_dir/ray_train-<key>``.
        checkpoint: where the final model goes (:mod:`tge_ray.diffusion.checkpoint`'s format).
        progress: show a progress bar with the live loss.
        max_failures: worker failures to recover from (each resumes from the last checkpoint);
            ``None``: ``resources.train_max_failures``.
        _fail_at_step: test hook, rank 0 dies once at this step.
    """
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    horizon = cfg.windows.horizon
    TemporalUnet(obs_dim, horizon, cfg.diffusion)  # fail fast on a horizon the U-Net cannot take
    use_gpu = resolve_use_gpu(cfg.resources.use_gpu)
    windows = _feedable(windows, cfg.resources.train_workers)
    _check_windows(windows, horizon, obs_dim)
    sink = _progress_sink() if progress else None
    loop_config = {
        "diffusion": to_dict(cfg.diffusion),
        "obs_dim": obs_dim,
        "horizon": horizon,
        "seed": cfg.seed,
        "torch_threads": cfg.resources.torch_threads,
        "compile": cfg.resources.compile,
        "log_every": max(1, min(50, cfg.diffusion.steps // 20)),
        "progress": sink,
        "_fail_at_step": _fail_at_step,
    }
    # Ray Train's controller polls its workers every 2 s by default, and a finished run waits for
    # the next poll: seconds on every run of a small model. The variable reaches the controller
    # from this process's environment; a value the user set is kept.
    os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_INTERVAL_S)
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.resources.train_workers, use_gpu=use_gpu,
            resources_per_worker={"CPU": cfg.resources.stage_cpus, **({"GPU": 1} if use_gpu else {})},
        ),
        run_config=ray.train.RunConfig(
            name=_run_name(cfg, obs_dim),
            storage_path=str(out_dir),
            failure_config=ray.train.FailureConfig(
                max_failures=cfg.resources.train_max_failures if max_failures is None else max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
        datasets={"windows": windows},
        dataset_config=_ingest_as_the_dataset_says(windows),
    )
    try:
        if sink is not None:
            result = _fit_with_progress(trainer, sink, cfg.diffusion.steps, loop_config["log_every"])
        else:
            result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        cause = _tge_cause(exc)
        if cause is not None:
            raise TGEError(str(cause)) from None
        raise
    finally:
        if sink is not None:
            ray.kill(sink)
    if result.checkpoint is None:
        raise RuntimeError("Ray Train finished without a checkpoint")  # a bug, not a user error
    with result.checkpoint.as_directory() as folder:
        saved = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
    trainer_state = saved["trainer"]
    return write_checkpoint(
        checkpoint,
        obs_dim=obs_dim,
        horizon=horizon,
        cfg=cfg.diffusion,
        ema_state_dict=trainer_state["ema"],
        model_state_dict=trainer_state["model"],
        step=trainer_state["step"],
        losses=saved["losses"],
    )


def _tge_cause(exc: BaseException) -> BaseException | None:
    """The first TGEError a worker raised, if any (so the user sees one line, not a traceback).

    Ray re-raises a worker's exception as a class that derives from the original one, so an
    ``isinstance`` check finds it among ``worker_failures``.
    """
    stack: list[Any] = [exc]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, TGEError):
            return item
        stack.extend(getattr(item, "worker_failures", {}).values())
        # Ray Train wraps a worker's exception (``_base_exc``) with its traceback text.
        stack.extend([getattr(item, "_base_exc", None), getattr(item, "controller_failure", None)])
        stack.extend([item.__cause__, item.__context__])
    return None
