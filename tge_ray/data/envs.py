"""Which Gymnasium envs the data tools accept, and the names their files and datasets get.

``train-expert``, ``make --env`` and ``import`` all take continuous-control envs with flat Box
observations and a time limit; :func:`check_env` says in one line what else is wrong.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from typing import Any

import gymnasium as gym

from tge_ray.errors import DataError

mujoco_log = logging.getLogger("tge_ray.mujoco")

# task -> Gymnasium id of the locomotion tasks whose experts are trained with RL (shipped in experts/).
LOCOMOTION_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5",
                   "ant": "Ant-v5"}


def ensure_registered(env_id: str) -> None:
    """Register Gymnasium-Robotics' envs (PointMaze) in this process if ``env_id`` is not known yet.

    Every process that makes an env calls this first: a Ray worker or a `tge run` driver imports
    only the modules its stage needs, and a PointMaze id is unknown until gymnasium_robotics is
    imported. Idempotent; ids Gymnasium already knows cost a dict lookup.
    """
    if env_id in gym.registry:
        return
    # Importing gymnasium_robotics prints a notice about its Adroit envs (not used here) to stderr.
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            import gymnasium_robotics
        except ImportError:  # not installed: gym.make names the unknown id
            return
    gym.register_envs(gymnasium_robotics)


def route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings to the ``tge_ray.mujoco`` logger instead of stdout and a file.

    MuJoCo's default prints each warning to stdout and appends it to ``MUJOCO_LOG.TXT`` in the
    working directory: every HalfCheetah env Gymnasium builds printed a notice that its model file
    uses a deprecated attribute, and left that file behind in the user's folder. Here, MuJoCo's
    deprecation notices (its text says "is deprecated": about Gymnasium's model files, nothing a
    run can act on) go out at DEBUG; every other warning (an unstable simulation, say) at WARNING,
    which Python prints to stderr when logging is not configured. Once per process, and only
    where no one else has set MuJoCo's warning handler. The handler lets no exception out: one
    raised inside it would abort the process from MuJoCo's C code.
    """
    try:
        import mujoco
    except ImportError:  # a non-MuJoCo env
        return
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_mujoco_warning)


def _mujoco_warning(message: str) -> None:
    try:
        mujoco_log.log(logging.DEBUG if "is deprecated" in message else logging.WARNING, "MuJoCo: %s", message)
    except Exception:  # see route_mujoco_warnings
        pass


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` after :func:`ensure_registered` and :func:`route_mujoco_warnings`."""
    ensure_registered(env_id)
    route_mujoco_warnings()
    return gym.make(env_id, **kwargs)


def make_env_vec(env_id: str, num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    """``gym.make_vec`` after :func:`ensure_registered` and :func:`route_mujoco_warnings`."""
    ensure_registered(env_id)
    route_mujoco_warnings()
    return gym.make_vec(env_id, num_envs, **kwargs)


def slug(env_id: str) -> str:
    """``Ant-v5`` -> ``ant-v5``: the name of a custom env's expert files and datasets."""
    return re.sub(r"[^a-z0-9]+", "-", env_id.lower()).strip("-")


def expert_name(env_id: str) -> str:
    """The task whose env is ``env_id`` (``Hopper-v5`` -> ``hopper``), else :func:`slug`."""
    return next((task for task, known in LOCOMOTION_ENVS.items() if known == env_id), slug(env_id))


def check_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make(env_id, **kwargs)``, refused in one line unless it is flat continuous control.

    Returns the open env (the caller closes it).
    """
    try:
        env = make_env(env_id, **kwargs)
    except Exception as exc:  # noqa: BLE001 - unknown ids, missing extras, bad kwargs all land here
        reason = (str(exc).splitlines() or [""])[0]
        raise DataError(f"cannot make env {env_id!r} ({type(exc).__name__}: {reason}): give a registered "
                        f"Gymnasium id such as Hopper-v5") from None
    problem = None
    if not isinstance(env.action_space, gym.spaces.Box):
        problem = (f"env {env_id!r} has {type(env.action_space).__name__} actions, not continuous control (Box): "
                   f"pick a continuous-control env such as Hopper-v5")
    elif not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        problem = (f"env {env_id!r} has {env.observation_space} observations, not a flat Box: wrap the env with "
                   f"FlattenObservation and register it")
    elif env.spec is None or env.spec.max_episode_steps is None:
        problem = f"env {env_id!r} has no time limit: register it with max_episode_steps"
    if problem is not None:
        env.close()
        raise DataError(problem)
    return env
