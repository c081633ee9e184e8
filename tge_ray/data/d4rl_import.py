"""``tge data import``: D4RL-format files (HDF5 or NumPy .npz) as Minari datasets.

A file holds flat arrays over N steps: ``observations`` (N, obs_dim), ``actions`` (N, act_dim),
``rewards``, ``terminals`` and ``timeouts`` (N,); other keys (D4RL's ``infos/*``,
``next_observations``) are not read. Episodes end at rows where ``terminals | timeouts``.
Transitions are the ones ``d4rl.qlearning_dataset`` keeps: the next observation of row i is
row i + 1; a row flagged ``timeouts`` is dropped (its next observation is the next episode's
first), so an episode ending in a timeout keeps its last observation as its final one and is
marked truncated; a terminal row is kept, with row i + 1 (the next episode's first observation,
as D4RL does; no learner bootstraps through a terminal) as its final observation; the file's last
row is dropped, and its episode marked truncated.

Reference scores and the evaluation env come from the command line or from the file's D4RL name
(``hopper-random-v2``, or D4RL's own file name ``hopper_random-v2.hdf5``): D4RL's
:data:`D4RL_REF_SCORES` and :data:`D4RL_EVAL_ENVS`. The Gymnasium v5 envs stand in for D4RL's
mujoco-py v2 envs, which Gymnasium no longer runs; their dynamics differ in small ways (see
Gymnasium's version notes). D4RL's Ant observations have 111 columns, of which the last 84
(contact forces) read zero under MuJoCo 2: they are dropped, and Ant-v5 evaluates without
contact forces in its observations or its reward, as D4RL's Ant-v2 did in effect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from minari.data_collector import EpisodeBuffer
from minari.storage import get_dataset_path

from tge_ray.data import make, rollouts
from tge_ray.data.envs import check_env
from tge_ray.data.minari_io import check_dataset_id
from tge_ray.errors import DataError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")

# D4RL's reference returns (random policy, expert policy) of its Gym-MuJoCo locomotion datasets,
# the same for every dataset and version (v0, v1, v2) of one env. Source: REF_MIN_SCORE and
# REF_MAX_SCORE in d4rl/infos.py of Farama-Foundation/D4RL.
D4RL_REF_SCORES = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}
D4RL_DATASETS = ("random", "medium", "expert", "medium-replay", "full-replay", "medium-expert")
# D4RL env -> the Gymnasium env (id, kwargs) that evaluates policies learnt from its data.
D4RL_EVAL_ENVS: dict[str, tuple[str, dict[str, Any]]] = {
    "halfcheetah": ("HalfCheetah-v5", {}),
    "hopper": ("Hopper-v5", {}),
    "walker2d": ("Walker2d-v5", {}),
    "ant": ("Ant-v5", {"include_cfrc_ext_in_observation": False, "contact_cost_weight": 0.0}),
}
ANT_D4RL_COLUMNS, ANT_STATE_COLUMNS = 111, 27  # D4RL Ant-v2 observations, and without contact forces


@dataclass(frozen=True)
class D4RLName:
    """A D4RL locomotion dataset name: ``hopper-medium-replay-v2`` -> (hopper, medium-replay, 2)."""

    env: str
    dataset: str
    version: int

    @property
    def dataset_id(self) -> str:
        return f"d4rl/{self.env}/{self.dataset}-v{self.version}"


def parse_d4rl_name(name: str) -> D4RLName | None:
    """``hopper-random-v2`` or D4RL's file stem ``hopper_random-v2`` -> :class:`D4RLName`; else None."""
    match = re.fullmatch(r"([a-z0-9]+)[-_]([a-z_-]+)-v(\d+)", name.lower())
    if match is None:
        return None
    env, dataset, version = match.group(1), match.group(2).replace("_", "-"), int(match.group(3))
    if env not in D4RL_REF_SCORES or dataset not in D4RL_DATASETS:
        return None
    return D4RLName(env, dataset, version)


# ----------------------------------------------------------------------------- reading


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The five arrays of a D4RL-format file, checked: present, one length N, finite.

    Returns observations (N, obs_dim), actions (N, act_dim), rewards (N,) float; terminals,
    timeouts (N,) bool.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file {str(path)!r} does not exist: give the path of a D4RL .hdf5 or a .npz file")
    arrays = _read_hdf5(path) if path.suffix in (".hdf5", ".h5") else _read_npz(path) if path.suffix == ".npz" else None
    if arrays is None:
        raise DataError(f"file {str(path)!r} is neither .hdf5/.h5 nor .npz: give a D4RL HDF5 file or NumPy arrays")
    lengths = {key: len(value) if value.ndim else 0 for key, value in arrays.items()}
    if len(set(lengths.values())) != 1:
        found = ", ".join(f"{key} {length}" for key, length in lengths.items())
        raise DataError(f"arrays of {path.name} differ in length ({found}): every key needs one row per step")
    n = lengths["observations"]
    if n < 2:
        raise DataError(f"{path.name} holds {n} steps: a transition needs at least two")
    for key in ("observations", "actions"):
        if arrays[key].ndim == 1:  # one-dimensional observations or actions stored flat
            arrays[key] = arrays[key][:, None]
        if arrays[key].ndim != 2:
            raise DataError(f"{key} of {path.name} have shape {arrays[key].shape}: give ({n}, dim) arrays")
    for key in ("rewards", "terminals", "timeouts"):
        if arrays[key].ndim == 2 and arrays[key].shape[1] == 1:
            arrays[key] = arrays[key][:, 0]
        if arrays[key].ndim != 1:
            raise DataError(f"{key} of {path.name} have shape {arrays[key].shape}: give one value per step ({n},)")
    for key in ("observations", "actions", "rewards"):
        try:
            values = arrays[key].astype(np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{key} of {path.name} are not numbers ({arrays[key].dtype}): give float arrays") from None
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DataError(f"{key} of {path.name} hold NaN or inf (first at row {row}): clean the file before importing")
    arrays["terminals"] = arrays["terminals"].astype(bool)
    arrays["timeouts"] = arrays["timeouts"].astype(bool)
    return arrays


def _missing(path: Path, keys: Any) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in keys]
    if missing:
        raise DataError(f"{path.name} lacks {', '.join(missing)}: a D4RL-format file needs {', '.join(REQUIRED_KEYS)}")


def _read_hdf5(path: Path) -> dict[str, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            _missing(path, handle.keys())
            return {key: np.asarray(handle[key][()]) for key in REQUIRED_KEYS}
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r} as HDF5 ({exc}): give a D4RL .hdf5 file") from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            _missing(path, npz.files)
            return {key: np.asarray(npz[key]) for key in REQUIRED_KEYS}
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {str(path)!r} as .npz ({exc}): save the arrays with numpy.savez") from None


# ----------------------------------------------------------------------------- episodes


def episodes_from_arrays(arrays: dict[str, np.ndarray]) -> list[EpisodeBuffer]:
    """Minari episodes from flat D4RL arrays, with qlearning_dataset's transitions (module docstring)."""
    observations, actions, rewards = arrays["observations"], arrays["actions"], arrays["rewards"]
    terminals, timeouts = arrays["terminals"], arrays["timeouts"]
    n = len(rewards)
    ends = np.flatnonzero(terminals | timeouts)
    if len(ends) == 0 or ends[-1] != n - 1:
        ends = np.append(ends, n - 1)  # the file's last episode, cut
    buffers, first = [], 0
    for end in ends:
        end = int(end)
        terminated = bool(terminals[end]) and not timeouts[end] and end < n - 1
        last = end if terminated else end - 1  # last transition kept
        if last >= first:
            steps = last - first + 1
            done = np.zeros(steps, dtype=bool)
            buffers.append(EpisodeBuffer(
                id=len(buffers),
                observations=observations[first:last + 2],
                actions=actions[first:last + 1],
                rewards=rewards[first:last + 1],
                terminations=np.where(np.arange(steps) == steps - 1, terminated, done),
                truncations=np.where(np.arange(steps) == steps - 1, not terminated, done),
                infos={},
            ))
        first = end + 1
    if not buffers:
        raise DataError("the file holds no transition once timeout rows are dropped: every episode is one step long")
    return buffers


# ----------------------------------------------------------------------------- entry point


def import_dataset(path: str | Path, *, dataset_id: str | None = None, d4rl_name: str | None = None,
                   env_id: str | None = None, ref_min: float | None = None, ref_max: float | None = None,
                   force: bool = False) -> tuple[Path, bool]:
    """Import a D4RL-format file as a Minari dataset; returns (its folder, whether it was written).

    ``d4rl_name`` (default: the file's stem, when it is one) supplies what is not given:
    ``dataset_id`` (``d4rl/<env>/<dataset>-v<N>``), ``env_id`` (with D4RL's eval-env kwargs) and
    ``ref_min``/``ref_max`` (D4RL's). An existing dataset is kept unless ``force``.
    """
    path = Path(path)
    name = parse_d4rl_name(d4rl_name if d4rl_name is not None else path.stem)
    if d4rl_name is not None and name is None:
        raise DataError(f"{d4rl_name!r} is not a D4RL locomotion name: use <env>-<dataset>-v<N> with env in "
                        f"{', '.join(D4RL_REF_SCORES)} and dataset in {', '.join(D4RL_DATASETS)}")
    if (ref_min is None) != (ref_max is None):
        raise DataError("give both --ref-min and --ref-max, or neither (then D4RL's scores of the name)")
    if ref_min is None:
        if name is None:
            raise DataError(f"no reference scores for {path.name}: pass --ref-min and --ref-max, or --d4rl-name "
                            f"(e.g. hopper-random-v2) for D4RL's")
        ref_min, ref_max = D4RL_REF_SCORES[name.env]
    if not ref_max > ref_min:
        raise DataError(f"--ref-max {ref_max} must be above --ref-min {ref_min}: they are the expert's and the "
                        f"random policy's returns")
    if env_id is not None:
        env_kwargs: dict[str, Any] = {}
    elif name is not None:
        env_id, env_kwargs = D4RL_EVAL_ENVS[name.env]
    else:
        raise DataError(f"no evaluation env for {path.name}: pass --env ENV_ID (e.g. Hopper-v5) or --d4rl-name")
    dataset_id = dataset_id or (name.dataset_id if name is not None else None)
    if dataset_id is None:
        raise DataError(f"no dataset id for {path.name}: pass --id namespace/name-vN (e.g. mine/hopper/random-v0)")
    namespace, _, _ = check_dataset_id(dataset_id)
    if namespace is None:
        raise DataError(f"dataset id {dataset_id!r} has no namespace: use namespace/name-vN (e.g. mine/hopper/random-v0)")

    target = Path(get_dataset_path(dataset_id))
    if target.exists() and not force:
        return target, False
    env = check_env(env_id, **env_kwargs)
    eval_spec, obs_space, act_space = env.spec, env.observation_space, env.action_space
    env.close()

    arrays = read_arrays(path)
    columns = arrays["observations"].shape[1]
    if (name is not None and name.env == "ant" and env_kwargs and columns == ANT_D4RL_COLUMNS
            and obs_space.shape == (ANT_STATE_COLUMNS,)):
        if np.any(arrays["observations"][:, ANT_STATE_COLUMNS:]):
            raise DataError(f"{path.name}'s contact-force columns {ANT_STATE_COLUMNS}.. are not zero, so they cannot be "
                            f"dropped: pass --env Ant-v5 with a file whose observations fit it")
        arrays["observations"] = arrays["observations"][:, :ANT_STATE_COLUMNS]
        columns = ANT_STATE_COLUMNS
    if (columns,) != obs_space.shape:
        raise DataError(f"observations of {path.name} have {columns} columns, {eval_spec.id} gives {obs_space.shape}: "
                        f"pass --env with the env that made the data")
    if arrays["actions"].shape[1:] != act_space.shape:
        raise DataError(f"actions of {path.name} have shape {arrays['actions'].shape[1:]}, {eval_spec.id} takes "
                        f"{act_space.shape}: pass --env with the env that made the data")
    arrays["observations"] = arrays["observations"].astype(obs_space.dtype)
    arrays["actions"] = arrays["actions"].astype(act_space.dtype)
    arrays["rewards"] = arrays["rewards"].astype(np.float64)
    buffers = episodes_from_arrays(arrays)

    root = Path(get_dataset_path())
    make.check_disk(root, len(arrays["rewards"]), rollouts.Task(eval_spec.id, env_kwargs))
    source = f"D4RL {name.env}-{name.dataset}-v{name.version}" if name is not None else "D4RL-format arrays"
    make.write_dataset(
        dataset_id, buffers, target, root, env=eval_spec, eval_env=eval_spec,
        algorithm_name=f"{source} ({path.name})", author="tge_ray import", author_email="n/a",
        code_permalink="tge_ray/data/d4rl_import.py", ref_min_score=float(ref_min), ref_max_score=float(ref_max),
        description=f"{path.name} imported by `tge data import`; transitions as d4rl.qlearning_dataset keeps them",
        requirements=["gymnasium[mujoco]>=1.0"],
    )
    return target, True
