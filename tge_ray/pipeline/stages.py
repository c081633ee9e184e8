"""The stages of ``tge run`` up to the rewards, each an artifact keyed by what it depends on.

A stage's key holds the whole config sections it consumes (:func:`tge_ray.config.key_part`),
the artifact it builds on and :data:`~tge_ray.pipeline.files.ARTIFACT_FORMAT`; artifacts that an
earlier version keyed otherwise are reused where :mod:`tge_ray.pipeline.upgrade` says they are
equal.

    data        make missing ``tge/*`` datasets (:func:`ensure_datasets`)
    diffusion   temporal U-Net DDPM on D_mu's windows (Ray Train)           -> artifact
    embeddings  z = phi(tau, 0) for every window of D_mu and D_E (Ray Data)  -> artifact
    rewards     k-NN kernel reward per transition (Ray Data + faiss)         -> artifact

The windows themselves are cut in :func:`tge_ray.pipeline.run.run_experiment`; the policy stage
is :mod:`tge_ray.pipeline.policies`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.config import ExperimentConfig, key_part, to_dict
from tge_ray.data.minari_io import check_loadable, dataset_fingerprint, is_local
from tge_ray.data.task import LfOTask
from tge_ray.data.windows import GATHER_CPUS, Windows, after_start, complete_after_start, to_ray_dataset
from tge_ray.errors import TGEError
from tge_ray.pipeline.artifacts import Artifact, ArtifactStore
from tge_ray.pipeline.files import (
    ARTIFACT_FORMAT,
    diffusion_file,
    read_embeddings,
    read_rewards,
    write_embeddings,
    write_rewards,
    write_stage_metrics,
)
from tge_ray.pipeline.upgrade import earlier_artifacts


def say(progress: bool, message: str) -> None:
    """A stage line on stderr, when the run shows progress."""
    if progress:
        print(message, file=sys.stderr, flush=True)


def note(message: str) -> None:
    """A line about the store (an earlier artifact that is not reused), shown quiet or not."""
    print(f"      note: {message}", file=sys.stderr, flush=True)


def datasets_to_make(cfg: ExperimentConfig) -> list[str]:
    """The ``tge/*`` datasets of ``cfg`` that are missing and will be made (``task.make_missing``)."""
    ids = dict.fromkeys((cfg.task.offline, cfg.task.expert))
    return [i for i in ids if cfg.task.make_missing and i.startswith("tge/") and not is_local(i)]


def check_datasets(cfg: ExperimentConfig) -> None:
    """Refuse, before the data stage says anything, a dataset that will not be made and is neither
    on disk nor to be downloaded (``task.download``). The ids to be made are refused, when they
    cannot be, by ``tge_ray.data.make.dataset_dims`` in the policies' memory check before it."""
    to_make = datasets_to_make(cfg)
    for dataset_id in dict.fromkeys((cfg.task.offline, cfg.task.expert)):
        if dataset_id not in to_make:
            check_loadable(dataset_id, cfg.task.download)


def ensure_datasets(cfg: ExperimentConfig, progress: bool) -> None:
    """Make missing ``tge/*`` datasets (when ``task.make_missing``)."""
    for dataset_id in datasets_to_make(cfg):
        from tge_ray.data.make import make_dataset

        say(progress, f"      making {dataset_id} (first use) ...")
        make_dataset(dataset_id, seed=cfg.seed, progress=progress)


def data_dependencies(cfg: ExperimentConfig) -> dict[str, Any]:
    """What D_mu and D_E are made of (ids, file fingerprints, N, M)."""
    return {
        "offline": cfg.task.offline,
        "offline_files": dataset_fingerprint(cfg.task.offline),
        "expert": cfg.task.expert,
        "expert_files": dataset_fingerprint(cfg.task.expert),
        "n_expert_trajs": cfg.task.n_expert_trajs,
        "format": ARTIFACT_FORMAT,
    }


def diffusion_stage(
    cfg: ExperimentConfig, store: ArtifactStore, task: LfOTask, mixed_windows: Windows, progress: bool
) -> Artifact:
    from tge_ray.diffusion.train import holds_a_checkpoint, train_diffusion

    deps = {
        "format": ARTIFACT_FORMAT,
        "data_files": {"offline": dataset_fingerprint(cfg.task.offline), "expert": dataset_fingerprint(cfg.task.expert)},
        "task": key_part(cfg.task),
        "windows": key_part(cfg.windows),
        "diffusion": key_part(cfg.diffusion),
        "seed": cfg.seed,
        # The one resource that changes the model: each worker trains on its own shard and stream.
        "train_workers": cfg.resources.train_workers,
    }
    earlier = earlier_artifacts("diffusion", to_dict(cfg), data=data_dependencies(cfg))

    def build(folder: Path, scratch: Path) -> dict[str, Any]:
        dataset = to_ray_dataset(mixed_windows, batch_size=cfg.windows.batch_size, shuffle_seed=cfg.seed)
        # Ray Train's run folder, checkpoints included, lives in the store's resume folder for this
        # artifact: a run interrupted or crashed after a checkpoint leaves it, the rerun's Ray Train
        # resumes from that checkpoint, and the store removes it once the artifact is in place.
        # Without a checkpoint, or after a refusal (TGEError: the same input would be refused
        # again), nothing is left.
        ray_train = scratch / "ray_train"
        if holds_a_checkpoint(ray_train):
            note(f"diffusion: resuming the interrupted training from its last checkpoint (in {scratch})")
        try:
            train_diffusion(cfg, dataset, task.mixed.obs_dim, ray_train, diffusion_file(folder), progress=progress)
        except BaseException as exc:
            if isinstance(exc, TGEError) or not holds_a_checkpoint(ray_train):
                shutil.rmtree(ray_train, ignore_errors=True)
            raise
        from tge_ray.diffusion.checkpoint import read_checkpoint

        losses = read_checkpoint(diffusion_file(folder))["losses"]  # the loss the loop logged, by step
        write_stage_metrics(folder, ({"step": int(step), "loss": float(loss)} for step, loss in losses))
        return {"windows": len(mixed_windows)}

    return store.get_or_build("diffusion", deps, build, earlier=earlier, note=note, resumable=True)


def _shift_index(batch: dict[str, np.ndarray], by: int) -> dict[str, np.ndarray]:
    return {**batch, "index": batch["index"] + by}


def _collect_embeddings(dataset: Any, n_rows: int) -> np.ndarray:
    """Gather ``{"index", "embedding"}`` batches into an (N, D) array in index order."""
    out: np.ndarray | None = None
    seen = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        embedding = batch["embedding"]
        if out is None:
            out = np.empty((n_rows, embedding.shape[1]), dtype=np.float32)
        out[batch["index"]] = embedding
        seen += len(batch["index"])
    if out is None or seen != n_rows:
        raise RuntimeError(f"embedding stage returned {seen} rows for {n_rows} windows")
    return out


def embedding_stage(
    cfg: ExperimentConfig,
    store: ArtifactStore,
    diffusion: Artifact,
    mixed_windows: Windows,
    demo_windows: Windows,
) -> Artifact:
    from tge_ray.diffusion.embed import embed_dataset

    # The demos (task.n_demos, task.demos) are in the diffusion model's key, through its name.
    deps = {"format": ARTIFACT_FORMAT, "diffusion": diffusion.name, "embedding": key_part(cfg.embedding)}
    earlier = earlier_artifacts("embeddings", to_dict(cfg), upstream=diffusion.name)

    def build(folder: Path) -> dict[str, Any]:
        # D_mu's and D_E's windows go through one actor pool (rows of D_E after D_mu's): a pool
        # costs seconds to start, its actors each loading torch and the model.
        n_mixed = len(mixed_windows)
        demos = to_ray_dataset(demo_windows, batch_size=cfg.windows.batch_size).map_batches(
            _shift_index, fn_kwargs={"by": n_mixed}, batch_format="numpy", num_cpus=GATHER_CPUS)
        both = to_ray_dataset(mixed_windows, batch_size=cfg.windows.batch_size).union(demos)
        embedded = _collect_embeddings(embed_dataset(both, diffusion_file(diffusion.path), cfg), n_mixed + len(demo_windows))
        write_embeddings(folder, embedded[:n_mixed], embedded[n_mixed:])
        return {"dim": int(embedded.shape[1]), "mixed": n_mixed, "demos": len(demo_windows)}

    return store.get_or_build("embeddings", deps, build, earlier=earlier, note=note)


def expert_index_rows(cfg: ExperimentConfig, task: LfOTask) -> np.ndarray:
    """(N_E,) bool: the windows of D_E that enter the k-NN index (``reward.expert_windows``,
    ``reward.skip_demo_start``)."""
    ids, skip = task.demo_episode_ids, cfg.reward.skip_demo_start
    if cfg.reward.expert_windows == "complete":
        return complete_after_start(ids, cfg.windows.horizon, skip)  # skip 0: complete_windows
    return after_start(ids, skip)  # skip 0: every row


def reward_stage(
    cfg: ExperimentConfig, store: ArtifactStore, embeddings: Artifact, task: LfOTask
) -> Artifact:
    from tge_ray.reward.diagnostics import separation
    from tge_ray.reward.kernels import scale_rewards
    from tge_ray.reward.label import label_rewards

    scale = cfg.reward_scale()  # auto resolved: an auto run shares the artifact of its explicit twin
    reward_key = {**key_part(cfg.reward), "scale": scale}
    deps = {"format": ARTIFACT_FORMAT, "embeddings": embeddings.name, "reward": reward_key}
    config = to_dict(cfg)
    config["reward"]["scale"] = scale
    earlier = earlier_artifacts("rewards", config, upstream=embeddings.name)

    def build(folder: Path) -> dict[str, Any]:
        stored = read_embeddings(embeddings.path)
        mixed, demos = stored.mixed, stored.demos[expert_index_rows(cfg, task)]
        table = to_ray_dataset(mixed, column="embedding", batch_size=cfg.reward.batch_size)
        raw = label_rewards(table, demos, cfg.reward, cfg.resources)
        scaled, scaling = scale_rewards(raw, scale)
        stats = separation(raw, task.expert_flags)
        write_rewards(folder, raw, scaled)
        return {"scaling": scaling.to_dict(), "separation": stats}

    return store.get_or_build("rewards", deps, build, earlier=earlier, note=note)


def true_reward_correlation_of(rewards: Artifact, task: LfOTask) -> dict[str, float]:
    """Computed by every run rather than stored with the reward artifact, so runs that reuse an
    artifact made before this diagnostic report it too."""
    from tge_ray.reward.diagnostics import true_reward_correlation

    raw = read_rewards(rewards.path).raw
    return true_reward_correlation(raw, task.mixed.rewards, task.mixed.episode_ids)
