"""Open Minari datasets by id and read their episodes into flat arrays, cached on disk.

A dataset is looked up in Minari's datasets folder (``MINARI_DATASETS_PATH``, by default
``~/.minari/datasets``); when it is missing it is downloaded only if the caller allows it and a
host answers. Otherwise one clear line names the id, the folder searched and the way out
(``tge data make`` for ``tge/*`` ids).

The flat arrays of a dataset are written once to ``$TGE_CACHE_DIR`` (default
``~/.cache/tge_ray``) as an ``.npz`` keyed by the dataset's files, so a second open skips HDF5.

Dict observations (PointMaze) are flattened in ``gymnasium.spaces.flatten`` order: the keys in
the order of the Dict space (for PointMaze: achieved_goal, desired_goal, observation), each
sub-array flattened; this is the order ``gymnasium.wrappers.FlattenObservation`` gives, so the
evaluation environments see the same layout.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from tge_ray.errors import DataError
from tge_ray.io import atomic_path

CACHE_FORMAT = 1


def datasets_path() -> Path:
    """Minari's datasets folder (``MINARI_DATASETS_PATH`` or ``~/.minari/datasets``)."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def cache_path() -> Path:
    """Where flat-array caches live (``TGE_CACHE_DIR`` or ``~/.cache/tge_ray``)."""
    env = os.environ.get("TGE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "tge_ray"


def check_dataset_id(dataset_id: str) -> tuple[str | None, str, int]:
    """Parse ``namespace/name-vN``; a malformed id raises one clear line."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        return parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise DataError(
            f"malformed dataset id {dataset_id!r}: ids look like namespace/name-vN, "
            "e.g. tge/hopper/random-v0 or mujoco/hopper/expert-v0"
        ) from None


def dataset_dir(dataset_id: str) -> Path:
    """Folder of a dataset inside Minari's datasets folder (it may not exist)."""
    check_dataset_id(dataset_id)
    return datasets_path() / dataset_id


def is_local(dataset_id: str) -> bool:
    """True when a complete dataset with this id is on disk."""
    return (dataset_dir(dataset_id) / "data" / "metadata.json").is_file()


def check_loadable(dataset_id: str, download: bool = False) -> None:
    """Refuse, as :func:`load_minari` would, a dataset that is neither on disk nor to be downloaded."""
    if not download and not is_local(dataset_id):
        hint = (
            f"make it offline with `tge data make {dataset_id}`"
            if dataset_id.startswith("tge/")
            else "allow downloading with task.download=true when online, or make an offline "
            "dataset with `tge data make tge/<task>/<quality>-v0`"
        )
        raise DataError(f"dataset {dataset_id!r} not found in {dataset_dir(dataset_id).parent}: {hint}")


def load_minari(dataset_id: str, download: bool = False) -> Any:
    """Return the ``minari.MinariDataset`` for ``dataset_id``, downloading only if allowed."""
    import minari

    folder = dataset_dir(dataset_id)
    check_loadable(dataset_id, download)
    if not is_local(dataset_id):
        try:
            minari.download_dataset(dataset_id)
        except Exception as exc:  # network stacks raise many types; the message says which.
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(
                f"could not download {dataset_id!r} into {folder.parent} ({reason}); "
                "check the network, or make an offline dataset with `tge data make`"
            ) from None
    try:
        return minari.load_dataset(dataset_id)
    except Exception as exc:
        raise DataError(f"dataset {dataset_id!r} at {folder} cannot be opened: {exc}") from None


# ----------------------------------------------------------------------------- flattening


def flatten_observations(observations: Any, space: gym.Space) -> np.ndarray:
    """Episode observations (T, ...) or a dict of them -> (T, flat_dim) float32.

    The order is ``gymnasium.spaces.flatten``'s: Dict keys in the order of the space.
    """
    if isinstance(space, gym.spaces.Dict):
        parts = [flatten_observations(observations[key], sub) for key, sub in space.spaces.items()]
        return np.concatenate(parts, axis=1)
    if isinstance(space, gym.spaces.Box):
        array = np.asarray(observations, dtype=np.float32)
        return array.reshape(array.shape[0], -1)
    raise DataError(
        f"observation space {space} is not supported: TGE needs Box or Dict-of-Box observations"
    )


def flat_dim(space: gym.Space) -> int:
    """Length of a flattened observation of ``space``."""
    return int(gym.spaces.flatdim(space))


# ----------------------------------------------------------------------------- flat dataset


@dataclass(frozen=True)
class FlatDataset:
    """All transitions of a dataset as flat arrays, in episode order.

    Shapes (N transitions, E episodes):
        observations, next_observations: (N, obs_dim) float32
        actions: (N, act_dim) float32
        rewards: (N,) float32 -- never used for training TGE (oracle and reports only)
        terminals, timeouts: (N,) bool -- true terminations vs. truncations
        episode_ids: (N,) int64, 0..E-1
        episode_returns: (E,) float32
    """

    dataset_id: str
    path: Path
    observations: np.ndarray
    actions: np.ndarray
    next_observations: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_ids: np.ndarray
    episode_returns: np.ndarray
    observation_space: gym.Space
    action_space: gym.Space
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_transitions(self) -> int:
        return int(self.observations.shape[0])

    @property
    def n_episodes(self) -> int:
        return int(self.episode_returns.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def episode_starts(self) -> np.ndarray:
        """(E + 1,) offsets: episode e is rows [starts[e], starts[e + 1])."""
        lengths = np.bincount(self.episode_ids, minlength=self.n_episodes)
        return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    @property
    def ref_min_score(self) -> float | None:
        return self.metadata.get("ref_min_score")

    @property
    def ref_max_score(self) -> float | None:
        return self.metadata.get("ref_max_score")

    @property
    def eval_env_spec(self) -> Any:
        """The evaluation environment's ``EnvSpec`` (falls back to the data's env)."""
        return self.metadata.get("eval_env_spec") or self.metadata.get("env_spec")


_ARRAYS = (
    "observations",
    "actions",
    "next_observations",
    "rewards",
    "terminals",
    "timeouts",
    "episode_ids",
    "episode_returns",
)


def dataset_fingerprint(dataset_id: str) -> str:
    """16 hex digits over the names, sizes and modification times of a local dataset's files.

    Remaking a dataset (``--force``) changes it, so caches and artifacts built on the old
    files are not reused.
    """
    data_dir = dataset_dir(dataset_id) / "data"
    stamp = hashlib.sha256(f"v{CACHE_FORMAT}".encode())
    for path in sorted(data_dir.rglob("*")):
        if path.is_file():
            stat = path.stat()
            stamp.update(f"{path.relative_to(data_dir)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return stamp.hexdigest()[:16]


def _cache_file(dataset_id: str) -> Path:
    return cache_path() / "flat" / f"{dataset_id.replace('/', '__')}-{dataset_fingerprint(dataset_id)}.npz"


def _read_episodes(minari_dataset: Any) -> dict[str, np.ndarray]:
    """Read every episode once and concatenate (the only pass over HDF5)."""
    obs_space = minari_dataset.observation_space
    storage = minari_dataset.storage
    episodes = storage.get_episodes(minari_dataset.episode_indices)
    obs, next_obs, actions, rewards, terms, truncs, ids, returns = [], [], [], [], [], [], [], []
    for episode in episodes:
        flat = flatten_observations(episode["observations"], obs_space)  # (T + 1, obs_dim)
        steps = flat.shape[0] - 1
        if steps < 1:
            continue
        obs.append(flat[:-1])
        next_obs.append(flat[1:])
        actions.append(np.asarray(episode["actions"], dtype=np.float32).reshape(steps, -1))
        episode_rewards = np.asarray(episode["rewards"], dtype=np.float32).reshape(steps)
        rewards.append(episode_rewards)
        terms.append(np.asarray(episode["terminations"], dtype=bool).reshape(steps))
        truncs.append(np.asarray(episode["truncations"], dtype=bool).reshape(steps))
        ids.append(np.full(steps, len(returns), dtype=np.int64))
        returns.append(float(episode_rewards.sum(dtype=np.float64)))
    if not obs:
        raise DataError(f"dataset {minari_dataset.id!r} holds no transitions")
    return {
        "observations": np.concatenate(obs),
        "actions": np.concatenate(actions),
        "next_observations": np.concatenate(next_obs),
        "rewards": np.concatenate(rewards),
        "terminals": np.concatenate(terms),
        "timeouts": np.concatenate(truncs),
        "episode_ids": np.concatenate(ids),
        "episode_returns": np.asarray(returns, dtype=np.float32),
    }


def _check_finite(dataset_id: str, arrays: dict[str, np.ndarray]) -> None:
    for name in ("observations", "actions", "next_observations"):
        bad = ~np.isfinite(arrays[name])
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DataError(
                f"dataset {dataset_id!r} has NaN or inf in {name} (first at transition {row}, "
                f"episode {int(arrays['episode_ids'][row])}): clean or regenerate the dataset"
            )


def _metadata(minari_dataset: Any) -> dict[str, Any]:
    storage_meta = dict(minari_dataset.storage.metadata)
    meta: dict[str, Any] = {
        "ref_min_score": storage_meta.get("ref_min_score"),
        "ref_max_score": storage_meta.get("ref_max_score"),
        "env_spec": minari_dataset.env_spec,
        "eval_env_spec": None,
        "total_episodes": minari_dataset.total_episodes,
        "total_steps": minari_dataset.total_steps,
        "author": storage_meta.get("author"),
        "algorithm_name": storage_meta.get("algorithm_name"),
    }
    eval_spec = storage_meta.get("eval_env_spec")
    if eval_spec:
        meta["eval_env_spec"] = gym.envs.registration.EnvSpec.from_json(eval_spec)
    for key in ("ref_min_score", "ref_max_score"):
        if meta[key] is not None:
            meta[key] = float(np.asarray(meta[key]).reshape(-1)[0])
    return meta


def open_dataset(dataset_id: str, download: bool = False, use_cache: bool = True) -> FlatDataset:
    """Open a Minari dataset and return its transitions as a :class:`FlatDataset`.

    The first open reads HDF5 and writes the cache; later opens read the cache (``.npz``).
    """
    minari_dataset = load_minari(dataset_id, download=download)
    cache = _cache_file(dataset_id)
    arrays: dict[str, np.ndarray] | None = None
    if use_cache and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in _ARRAYS}
        except Exception:  # a damaged cache is rebuilt, never trusted
            arrays = None
    if arrays is None:
        arrays = _read_episodes(minari_dataset)
        _check_finite(dataset_id, arrays)
        if use_cache:
            with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
    return FlatDataset(
        dataset_id=dataset_id,
        path=dataset_dir(dataset_id),
        observation_space=minari_dataset.observation_space,
        action_space=minari_dataset.action_space,
        metadata=_metadata(minari_dataset),
        **arrays,
    )


def list_datasets() -> list[dict[str, Any]]:
    """Local datasets with their size on disk, episodes, steps and reference scores."""
    import minari

    rows = []
    for dataset_id, meta in sorted(minari.list_local_datasets().items()):
        folder = datasets_path() / dataset_id
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        rows.append(
            {
                "id": dataset_id,
                "episodes": meta.get("total_episodes"),
                "steps": meta.get("total_steps"),
                "ref_min_score": meta.get("ref_min_score"),
                "ref_max_score": meta.get("ref_max_score"),
                "size_mb": size / 2**20,
                "path": str(folder),
            }
        )
    return rows
