"""Rollouts of a policy in vectorised Gymnasium envs into Minari episode buffers, over worker processes.

Rollouts run in synchronous vectorised envs (one batched policy call per step), split over
``workers`` processes (default :data:`DEFAULT_WORKERS`, fixed rather than the machine's CPU
count so that the same command makes the same data everywhere): worker ``w`` steps its share of
the :data:`NUM_ENVS` envs (env ``i`` is always reset with ``seed + i``) for its share of the
steps or episodes, and its policy's own randomness is seeded with ``seed + w *``
:data:`WORKER_SEED_STRIDE`. The seed, the size and the worker count fix the data; small jobs
(under :data:`STEPS_PER_WORKER` steps or :data:`EPISODES_PER_WORKER` episodes per worker) use
fewer workers, by that same rule. ``tge data make`` (:mod:`tge_ray.data.make`) writes what they
collect as a Minari dataset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from minari.data_collector import EpisodeBuffer
from tqdm import tqdm

from tge_ray.data.envs import make_env_vec
from tge_ray.errors import DataError

NUM_ENVS = 8
DEFAULT_WORKERS = 2  # rollout processes; part of what fixes the data, so not the machine's CPU count
STEPS_PER_WORKER = 10_000  # below this many steps (random/medium) per worker, use fewer workers
EPISODES_PER_WORKER = 10  # the same for expert episodes
WORKER_SEED_STRIDE = 1_000_003  # worker w's policy randomness is seeded with seed + w * stride


@dataclass(frozen=True)
class Task:
    """One task: its Gymnasium env (with kwargs) and how its policies are made.

    Attributes:
        env_id: Gymnasium id; the env with ``env_kwargs`` collects the data and is the eval env.
        env_kwargs: kwargs for ``gym.make`` (PointMaze: the fixed-goal maze map).
        scripted: policies are scripted (PointMaze) rather than shipped SAC actors.
        num_envs: vectorised envs for rollouts.
    """

    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    scripted: bool = False
    num_envs: int = NUM_ENVS


Policy = Callable[[Any], np.ndarray]  # obs batch (B, obs_dim) or dict of (B, ...) -> actions (B, act_dim)


class PolicyBuilder(Protocol):
    """What a worker process rebuilds its policy from (picklable), e.g. ``tge_ray.data.make.PolicySpec``."""

    def build(self, seed: int) -> Policy: ...


def _take(obs: Any, rows: Any, col: int) -> Any:
    """obs (T, B, ...) or dict of them -> (len(rows), ...) of env ``col``."""
    if isinstance(obs, dict):
        return {key: _take(value, rows, col) for key, value in obs.items()}
    return obs[rows, col]


def _stack(steps: list[Any]) -> Any:
    if isinstance(steps[0], dict):
        return {key: _stack([s[key] for s in steps]) for key in steps[0]}
    return np.stack(steps)


def _append(first: Any, last: Any) -> Any:
    """(T, ...) + (...) -> (T+1, ...), key by key for dicts."""
    if isinstance(first, dict):
        return {key: _append(first[key], last[key]) for key in first}
    return np.concatenate([first, np.asarray(last)[None]])


def collect(task: Task, policy: Policy, *, seed: int, size: int | None = None, episodes: int | None = None,
            progress: bool = True, desc: str = "", on_steps: Callable[[int], None] | None = None) -> list[EpisodeBuffer]:
    """Roll ``policy`` out in ``task.num_envs`` vectorised envs; returns Minari episode buffers.

    With ``size``: exactly ``size`` steps; episodes still running at the end are kept and marked
    truncated (as D4RL's timeouts). With ``episodes``: the first ``episodes`` episodes to finish
    (in order of step, then env index); running ones are dropped. Env ``i`` is reset once with
    ``seed + i`` and then auto-resets, so the seed fixes the data. ``on_steps(n)`` is told of
    every ``n`` env steps taken (progress from another process).
    """
    num_envs = task.num_envs if size is None else min(task.num_envs, size)
    envs = make_env_vec(task.env_id, num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}, **task.env_kwargs)
    obs_steps, actions, rewards, terminations, truncations = [], [], [], [], []
    finished: list[tuple[int, int, int, Any]] = []  # (first step, last step, env, final obs)
    starts = np.zeros(num_envs, dtype=int)
    vector_steps = -(-size // num_envs) if size is not None else None
    bar = tqdm(total=size if size is not None else episodes, desc=desc, unit="step" if size else "episode",
               disable=not progress, leave=False)
    try:
        obs, _ = envs.reset(seed=[seed + i for i in range(num_envs)])
        t = 0
        while (t < vector_steps) if vector_steps is not None else (len(finished) < episodes):
            action = policy(obs)
            obs_steps.append(obs)
            next_obs, reward, terminated, truncated, info = envs.step(action)
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
            for i in np.flatnonzero(terminated | truncated):
                finished.append((starts[i], t, i, info["final_obs"][i]))
                starts[i] = t + 1
            obs = next_obs
            t += 1
            bar.update(num_envs if size is not None else len(finished) - bar.n)
            if on_steps is not None:
                on_steps(num_envs)
        obs_steps.append(obs)
    finally:
        bar.close()
        envs.close()

    all_obs = _stack(obs_steps)  # (T+1, B, ...)
    all_actions, all_rewards = np.stack(actions), np.stack(rewards)  # (T, B, act_dim), (T, B)
    all_terms, all_truncs = np.stack(terminations), np.stack(truncations)  # (T, B)
    pieces = [(first, last, i, final, False) for first, last, i, final in finished]
    if size is not None:
        # The last vector step may overshoot ``size``: its surplus envs stop one step earlier.
        counted = size - (t - 1) * num_envs
        last_steps = [t - 1 if i < counted else t - 2 for i in range(num_envs)]
        for piece in [p for p in pieces if p[1] > last_steps[p[2]]]:
            pieces.remove(piece)
            starts[piece[2]] = piece[0]
        for i in range(num_envs):
            if starts[i] <= last_steps[i]:
                pieces.append((starts[i], last_steps[i], i, _take(all_obs, last_steps[i] + 1, i), True))
    else:
        pieces = pieces[:episodes]

    buffers = []
    for episode_id, (first, last, i, final, cut) in enumerate(pieces):
        rows = slice(first, last + 1)
        truncs = all_truncs[rows, i].copy()
        truncs[-1] |= cut
        buffers.append(EpisodeBuffer(
            id=episode_id,
            observations=_append(_take(all_obs, rows, i), final),
            actions=all_actions[rows, i],
            rewards=all_rewards[rows, i],
            terminations=all_terms[rows, i],
            truncations=truncs,
            infos={},
        ))
    return buffers


def _split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal counts, the larger ones first."""
    return [total // parts + (w < total % parts) for w in range(parts)]


_steps_counter: Any = None  # a worker process's shared step counter (set by _init_worker)


def _init_worker(counter: Any) -> None:
    global _steps_counter
    _steps_counter = counter
    import torch

    torch.set_num_threads(1)  # one core per rollout worker


def _count_steps(n: int) -> None:
    with _steps_counter.get_lock():
        _steps_counter.value += n


def _collect_share(task: Task, spec: PolicyBuilder, seed: int, policy_seed: int,
                   size: int | None, episodes: int | None) -> list[EpisodeBuffer]:
    """One worker's rollouts (runs in a worker process)."""
    return collect(task, spec.build(policy_seed), seed=seed, size=size, episodes=episodes, progress=False,
                   on_steps=_count_steps)


def collect_parallel(task: Task, spec: PolicyBuilder, *, seed: int, size: int | None = None,
                     episodes: int | None = None, workers: int = DEFAULT_WORKERS, progress: bool = True,
                     desc: str = "") -> list[EpisodeBuffer]:
    """:func:`collect` split over ``workers`` processes; episodes come worker by worker.

    Worker ``w`` gets a near-equal share of the ``task.num_envs`` envs (env ``i`` of the whole
    set is reset with ``seed + i``, as in :func:`collect`), of ``size`` steps or of ``episodes``
    episodes, and seeds its policy with ``seed + w * WORKER_SEED_STRIDE``. Fewer workers are
    used for small jobs (see :data:`STEPS_PER_WORKER`); one worker runs in this process.
    """
    if workers < 1:
        raise DataError(f"workers={workers} must be >= 1: pass the number of rollout processes")
    per_worker = (size // STEPS_PER_WORKER) if size is not None else (episodes // EPISODES_PER_WORKER)
    workers = max(1, min(workers, per_worker, task.num_envs))
    if workers == 1:
        return collect(task, spec.build(seed), seed=seed, size=size, episodes=episodes, progress=progress, desc=desc)

    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    envs = _split(task.num_envs, workers)
    shares = _split(size if size is not None else episodes, workers)
    env_seeds = [seed + sum(envs[:w]) for w in range(workers)]
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
    counter = context.Value("q", 0)
    total = size if size is not None else None
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False)
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(counter,)) as pool:
            futures = [
                pool.submit(_collect_share, Task(task.env_id, task.env_kwargs, task.scripted, envs[w]), spec,
                            env_seeds[w], seed + w * WORKER_SEED_STRIDE,
                            shares[w] if size is not None else None, shares[w] if size is None else None)
                for w in range(workers)
            ]
            while True:
                done, pending = wait(futures, timeout=0.25, return_when=FIRST_EXCEPTION)
                bar.update(counter.value - bar.n)
                if not pending or any(f.exception() is not None for f in done):
                    break
            parts = [future.result() for future in futures]  # re-raises a worker's error here
    finally:
        bar.close()
    buffers = [buffer for part in parts for buffer in part]
    return [dataclasses.replace(buffer, id=episode_id) for episode_id, buffer in enumerate(buffers)]
