"""``tge data make``: D4RL-style Minari datasets made locally, no internet needed.

Ids are ``tge/<task>/<quality>-v0`` with tasks in :data:`TASKS` and qualities
``random`` (uniform random actions, ``size`` steps), ``medium`` (a snapshot from the expert's
training at about 0.4 of its return for locomotion; the wandering, noisy waypoint controller for
PointMaze; ``size`` steps) and ``expert`` (the shipped expert, ``episodes`` full episodes). With
``env_id`` + ``expert_path`` any Gymnasium continuous-control env gets ``random`` or ``expert``
data (id ``tge/<env-id-lowercased>/<quality>-v0``); when the expert file is
``tge data train-expert``'s output (``<name>_expert.pt`` with its record ``<name>.json`` beside
it), ``medium`` data too (from ``<name>_medium.pt``), and the reference scores are the record's.

Every dataset stores ``ref_min_score`` (mean return of the random policy) and ``ref_max_score``
(mean return of the expert) over :data:`REF_EPISODES` episodes with seed :data:`REF_SEED`, the
same for all qualities of a task, and its evaluation env, so ``minari.get_normalized_score`` and
``recover_environment(eval_env=True)`` work. The rollouts themselves are
:mod:`tge_ray.data.rollouts`'; the seed, the size and the worker count fix the data. A dataset is built under a temporary
``MINARI_DATASETS_PATH`` beside the real one and moved into place with one ``os.replace``, so a
run killed half way never leaves something that loads as a complete dataset.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from minari.namespace import create_namespace, list_local_namespaces
from minari.storage import get_dataset_path

from tge_ray.data import experts, pointmaze
from tge_ray.data.envs import check_env, make_env, slug
from tge_ray.data.rollouts import DEFAULT_WORKERS, Policy, Task, collect_parallel
from tge_ray.errors import DataError

log = logging.getLogger(__name__)

QUALITIES = ("random", "medium", "expert")
DEFAULT_SIZE = 200_000  # steps of random and medium datasets
DEFAULT_EPISODES = 250  # full episodes of expert datasets (200 to mix into D_mu, the rest demos)
REF_EPISODES = 10
REF_SEED = 0  # fixed, so a task's reference scores agree across qualities and dataset seeds


TASKS: dict[str, Task] = {
    **{name: Task(env_id) for name, env_id in experts.LOCOMOTION_ENVS.items()},
    **{name: Task(env_id, pointmaze.env_kwargs(name), scripted=True) for name, (env_id, _) in pointmaze.MAZES.items()},
}



# ----------------------------------------------------------------------------- policies and scores


@dataclass(frozen=True)
class PolicySpec:
    """What a rollout worker needs to rebuild the policy in its own process (picklable).

    ``task`` is a :data:`TASKS` name, or None for a custom env whose expert is ``expert_path``.
    """

    task: str | None
    quality: str
    action_space: gym.spaces.Box
    expert_path: str | None = None

    def build(self, seed: int) -> Policy:
        """The policy; ``seed`` seeds its randomness (random actions, PointMaze's wandering)."""
        if self.quality == "random":
            return experts.random_policy(self.action_space, seed)
        if self.task is None:
            return experts.load_policy(self.expert_path)
        if TASKS[self.task].scripted and self.quality == "medium":
            return pointmaze.WaypointController(self.task, noise_std=0.3, wander=True, seed=seed)
        return experts.load_policy(self.task, self.quality)


@functools.cache
def _task_ref_scores(task: str) -> tuple[float, float]:
    """(ref_min, ref_max): shipped figures for locomotion, computed (cheaply, once) for scripted tasks."""
    spec = TASKS[task]
    if spec.scripted:
        action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)  # PointMaze's force on the ball
        low = experts.evaluate(experts.random_policy(action_space, REF_SEED), spec.env_id,
                               episodes=REF_EPISODES, seed=REF_SEED, **spec.env_kwargs)
        high = experts.evaluate(pointmaze.WaypointController(task), spec.env_id,
                                episodes=REF_EPISODES, seed=REF_SEED, **spec.env_kwargs)
        return float(low.mean()), float(high.mean())
    info_path = experts.EXPERTS_DIR / f"{task}.json"
    try:
        info = json.loads(info_path.read_text())
        return float(info["random"]["return_mean"]), float(info["expert"]["return_mean"])
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"no readable expert record {str(info_path)!r} ({type(exc).__name__}): "
            f"retrain it with `tge data train-expert {task}`"
        ) from None


def _file_digest(path: Path) -> str:
    """First 12 hex digits of a file's sha256: which shipped actor made a dataset."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def _check_shipped_references(dataset_id: str, target: Path, shipped: tuple[float, float]) -> None:
    """Refuse a kept locomotion dataset whose reference scores are not the shipped expert's.

    The scores come from ``<task>.json``, so they change with the shipped expert: a dataset made
    with an earlier expert (or its reference figures) would otherwise be reused silently.
    """
    try:
        meta = json.loads((target / "data" / "metadata.json").read_text())
        stored = (float(meta["ref_min_score"]), float(meta["ref_max_score"]))
    except (OSError, ValueError, KeyError, TypeError):
        return  # not this module's layout (e.g. downloaded): minari.load_dataset judges it
    if not np.allclose(stored, shipped, rtol=1e-9, atol=1e-9):
        raise DataError(
            f"dataset {dataset_id} at {target} was made with another expert (reference scores "
            f"{stored[0]:.1f} / {stored[1]:.1f}, the shipped expert's are {shipped[0]:.1f} / {shipped[1]:.1f}): "
            f"remake it with `tge data make {dataset_id} --force`"
        )


def _actor_label(record: dict[str, Any], actor: Path, quality: str) -> str:
    """``SB3 SAC expert (hopper_expert.pt, sha256 ...)``: which trained actor made a dataset."""
    library = str(record.get("algorithm", "SB3 SAC")).split(" (")[0]
    what = "snapshot" if quality == "medium" else "expert"
    return f"{library} {what} ({actor.name}, sha256 {_file_digest(actor)})"


def _custom_policy(env: gym.Env, expert_path: str) -> Policy:
    policy = experts.load_policy(expert_path)
    obs, _ = env.reset(seed=REF_SEED)
    try:
        action = policy(np.asarray(obs, dtype=np.float32)[None])
    except RuntimeError as exc:
        raise DataError(f"expert file {expert_path!r} does not fit {env.spec.id}'s observations ({exc}): "
                        f"give an actor trained on this env") from None
    if action.shape[1:] != env.action_space.shape:
        raise DataError(f"expert file {expert_path!r} gives actions of shape {action.shape[1:]}, "
                        f"{env.spec.id} needs {env.action_space.shape}: give an actor trained on this env")
    return policy


# ----------------------------------------------------------------------------- writing


@contextlib.contextmanager
def _datasets_path(root: Path) -> Iterator[None]:
    """Point Minari at ``root`` for the duration (Minari reads the variable at each call)."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def check_disk(root: Path, steps: int, task: Task) -> None:
    env = make_env(task.env_id, **task.env_kwargs)
    obs_bytes = gym.spaces.flatdim(env.observation_space) * 8
    act_bytes = gym.spaces.flatdim(env.action_space) * 4
    env.close()
    needed = int(steps * (obs_bytes + act_bytes + 10) * 1.2) + (1 << 20)  # + rewards, flags, metadata
    free = shutil.disk_usage(root).free
    if free < needed:
        raise DataError(f"not enough disk space in {root}: the dataset needs about {needed >> 20} MiB, "
                        f"{free >> 20} MiB are free; free some or set MINARI_DATASETS_PATH to another disk")


def write_dataset(dataset_id: str, buffers: list[EpisodeBuffer], target: Path, root: Path, **create_kwargs: Any) -> None:
    """Build the dataset under a temporary root beside ``root``, then move it into place."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        with _datasets_path(scratch), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # minari nags about optional metadata
            minari.create_dataset_from_buffers(dataset_id, buffers, **create_kwargs)
        namespace = dataset_id.rsplit("/", 1)[0]
        with _datasets_path(root):
            if namespace not in list_local_namespaces():
                create_namespace(namespace)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            os.replace(target, scratch / "replaced")
        os.replace(scratch / dataset_id, target)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DataError(f"disk full while writing {dataset_id} under {root}: free space or set "
                            f"MINARI_DATASETS_PATH to another disk (nothing was written)") from None
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ----------------------------------------------------------------------------- entry point


def _parse_id(dataset_id: str) -> tuple[str, str]:
    match = re.fullmatch(r"tge/([a-z0-9-]+)/([a-z]+)-v0", dataset_id)
    if match is None:
        raise DataError(f"dataset id {dataset_id!r} is not of the form tge/<task>/<quality>-v0 "
                        f"(e.g. tge/hopper/expert-v0)")
    task, quality = match.groups()
    if task not in TASKS:
        raise DataError(f"unknown task {task!r} in {dataset_id!r}: use one of {', '.join(TASKS)} "
                        f"(another env's data: `tge data make --env ENV_ID --expert PATH`)")
    if quality not in QUALITIES:
        raise DataError(f"unknown quality {quality!r} in {dataset_id!r}: use one of {', '.join(QUALITIES)}")
    return task, quality


def dataset_dims(dataset_id: str) -> tuple[int, int]:
    """(observation, action) sizes a ``tge/<task>/<quality>-v0`` dataset will have, from its
    task's env, without making it (the id is refused as :func:`make_dataset` would refuse it)."""
    task = TASKS[_parse_id(dataset_id)[0]]
    env = make_env(task.env_id, **task.env_kwargs)
    try:
        return gym.spaces.flatdim(env.observation_space), gym.spaces.flatdim(env.action_space)
    finally:
        env.close()


def make_dataset(dataset_id: str | None = None, *, env_id: str | None = None, expert_path: str | None = None,
                 quality: str | None = None, size: int | None = None, episodes: int | None = None,
                 seed: int = 0, force: bool = False, progress: bool = True,
                 workers: int = DEFAULT_WORKERS) -> Path:
    """Make (or keep) a ``tge/...`` Minari dataset; returns its folder.

    Either ``dataset_id`` (``tge/<task>/<quality>-v0``) or ``env_id`` (+ ``expert_path`` for
    expert data, ``quality`` in random/expert). ``size``: steps of random/medium data (default
    200k); ``episodes``: full episodes of expert data (default 250). An existing dataset is kept
    unless ``force``. ``workers``: rollout processes (see :func:`collect_parallel`; with the
    seed and the size, it fixes the data).
    """
    if size is not None and size <= 0:
        raise DataError(f"size={size} must be > 0: pass the number of steps to collect")
    if episodes is not None and episodes <= 0:
        raise DataError(f"episodes={episodes} must be > 0: pass the number of expert episodes to collect")
    if workers < 1:
        raise DataError(f"workers={workers} must be >= 1: pass the number of rollout processes")
    if (dataset_id is None) == (env_id is None):
        raise DataError("give either a dataset id (tge/<task>/<quality>-v0) or --env ENV_ID, not both or neither")

    if dataset_id is not None:
        task_name, id_quality = _parse_id(dataset_id)
        if quality is not None and quality != id_quality:
            raise DataError(f"quality {quality!r} contradicts the id {dataset_id!r}: drop one of them")
        quality, task = id_quality, TASKS[task_name]
    else:
        quality = quality or ("expert" if expert_path else "random")
        if quality not in QUALITIES:
            raise DataError(f"unknown quality {quality!r}: use one of {', '.join(QUALITIES)}")
        if expert_path is None:
            raise DataError(f"--env {env_id} needs --expert PATH (an actor state_dict) for its reference score")
        record = experts.expert_record(expert_path)
        if quality == "medium" and record is None:
            if not Path(expert_path).is_file():
                raise DataError(f"expert file {str(expert_path)!r} does not exist: give the actor file `tge data "
                                f"train-expert --env {env_id}` writes (DIR/<name>_expert.pt)")
            raise DataError("quality 'medium' with --env needs --expert DIR/<name>_expert.pt as `tge data "
                            "train-expert` writes it, with <name>_medium.pt and <name>.json beside it")
        if record is not None and record["env_id"] != env_id:
            raise DataError(f"expert file {expert_path!r} was trained on {record['env_id']} (its record says so), "
                            f"not {env_id}: pass --env {record['env_id']}")
        dataset_id = f"tge/{slug(env_id)}/{quality}-v0"
        task_name, task = None, Task(env_id)

    target = Path(get_dataset_path(dataset_id))
    if target.exists() and not force:
        if task_name is not None and not task.scripted:
            _check_shipped_references(dataset_id, target, _task_ref_scores(task_name))
        log.info("kept existing dataset %s at %s (pass force to remake it)", dataset_id, target)
        return target
    root = Path(get_dataset_path())

    env = make_env(task.env_id, **task.env_kwargs) if task_name else check_env(task.env_id)
    action_space, eval_spec = env.action_space, env.spec
    if task_name is not None:
        spec = PolicySpec(task_name, quality, action_space)
        ref_min, ref_max = _task_ref_scores(task_name)
        if quality == "random":
            algorithm = "uniform random actions"
        elif task.scripted:
            algorithm = {"medium": "waypoint controller, noisy, wandering to random goals",
                         "expert": "scripted waypoint controller (BFS + PD)"}[quality]
        else:  # a shipped actor, named with its digest
            record = json.loads((experts.EXPERTS_DIR / f"{task_name}.json").read_text())
            algorithm = _actor_label(record, experts.EXPERTS_DIR / f"{task_name}_{quality}.pt", quality)
    else:
        expert = _custom_policy(env, expert_path)
        policy_path = Path(expert_path)
        if quality == "medium":
            policy_path = policy_path.with_name(policy_path.name.removesuffix("_expert.pt") + "_medium.pt")
            _custom_policy(env, str(policy_path))
        spec = PolicySpec(None, quality, action_space, expert_path=str(policy_path))
        if record is not None:  # train-expert's figures: the same ones `tge/<task>/*` ids use
            ref_min, ref_max = float(record["random"]["return_mean"]), float(record["expert"]["return_mean"])
        else:
            ref_min = float(experts.evaluate(experts.random_policy(action_space, REF_SEED), task.env_id,
                                             episodes=REF_EPISODES, seed=REF_SEED).mean())
            ref_max = float(experts.evaluate(expert, task.env_id, episodes=REF_EPISODES, seed=REF_SEED).mean())
        if quality == "random":
            algorithm = "uniform random actions"
        elif record is not None:
            algorithm = _actor_label(record, policy_path, quality)
        else:
            algorithm = f"expert actor {expert_path}"
    env.close()

    if quality == "expert":
        episodes = episodes or DEFAULT_EPISODES
        check_disk(root, episodes * eval_spec.max_episode_steps, task)
        buffers = collect_parallel(task, spec, seed=seed, episodes=episodes, workers=workers, progress=progress,
                                   desc=dataset_id)
    else:
        size = size or DEFAULT_SIZE
        check_disk(root, size, task)
        buffers = collect_parallel(task, spec, seed=seed, size=size, workers=workers, progress=progress,
                                   desc=dataset_id)

    write_dataset(dataset_id, buffers, target, root,
           env=eval_spec, eval_env=eval_spec, algorithm_name=algorithm, author="tge_ray",
           author_email="n/a", code_permalink="tge_ray/data/make.py",
           ref_min_score=ref_min, ref_max_score=ref_max, num_episodes_average_score=REF_EPISODES,
           description=f"{quality} data for {task.env_id} made by `tge data make` with seed {seed}",
           requirements=["gymnasium[mujoco]>=1.0"] + (["gymnasium-robotics>=1.4"] if task.scripted else []))
    return target
