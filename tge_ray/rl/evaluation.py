"""Policy evaluation: seeded, vectorised rollouts in the dataset's Gymnasium environment.

``evaluate_policy`` runs ``episodes`` complete episodes over ``num_envs`` synchronous
environments and reports the mean/std return and the normalised score
``100 * (R - ref_min) / (ref_max - ref_min)``. Episodes are split evenly over the environments
beforehand (environment i runs a fixed quota), so short episodes are not over-represented, as
they would be by counting whichever episodes finish first. Only completed episodes count.

``evaluate_policies`` rolls out the P policies of a learner's ``actor_state`` at once, in one
vector env (each policy in its own environments, seeded as if it were alone);
``evaluate_remote`` runs it as a Ray task, so training never waits for an evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np

from tge_ray.data.envs import make_env, make_env_vec


@dataclass(frozen=True)
class EvalResult:
    """Outcome of one evaluation.

    Attributes:
        score: normalised score, 100 * (mean return - ref_min) / (ref_max - ref_min).
        return_mean, return_std: over the episodes.
        returns: each episode's return, in environment order.
        lengths: each episode's length.
        step: the training step the policy came from (-1 when unknown).
    """

    score: float
    return_mean: float
    return_std: float
    returns: tuple[float, ...] = field(default_factory=tuple)
    lengths: tuple[int, ...] = field(default_factory=tuple)
    step: int = -1


def normalized_score(returns: np.ndarray | float, ref_min: float, ref_max: float) -> np.ndarray | float:
    """100 * (R - ref_min) / (ref_max - ref_min)."""
    if ref_max == ref_min:
        raise ValueError(f"ref_max == ref_min == {ref_min}: cannot normalise scores")
    return 100.0 * (np.asarray(returns) - ref_min) / (ref_max - ref_min)


def _episode_quotas(episodes: int, num_envs: int) -> np.ndarray:
    envs = min(episodes, num_envs)
    quotas = np.full(envs, episodes // envs, dtype=np.int64)
    quotas[: episodes % envs] += 1
    return quotas


def make_eval_env(
    env_id: str,
    num_envs: int,
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
) -> gymnasium.vector.VectorEnv:
    """Synchronous vector env; Dict observations are flattened (gymnasium.spaces.flatten order)."""
    kwargs = dict(env_kwargs or {})
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    probe = make_env(env_id, **kwargs)
    is_dict = isinstance(probe.observation_space, gymnasium.spaces.Dict)
    probe.close()
    wrappers = [gymnasium.wrappers.FlattenObservation] if is_dict else None
    return make_env_vec(
        env_id,
        num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP},
        wrappers=wrappers,
        **kwargs,
    )


def _rollouts(
    act: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    quotas: np.ndarray,
    reset_seeds: list[int],
    env_kwargs: dict[str, Any] | None,
    max_episode_steps: int | None,
) -> tuple[list[list[float]], list[list[int]]]:
    """Run environment i until it completed ``quotas[i]`` episodes; returns and lengths per env."""
    envs = make_eval_env(env_id, len(quotas), env_kwargs, max_episode_steps)
    try:
        low, high = envs.single_action_space.low, envs.single_action_space.high
        observations, _ = envs.reset(seed=list(reset_seeds))
        done_count = np.zeros(len(quotas), dtype=np.int64)
        running_return = np.zeros(len(quotas))
        running_length = np.zeros(len(quotas), dtype=np.int64)
        returns: list[list[float]] = [[] for _ in quotas]
        lengths: list[list[int]] = [[] for _ in quotas]
        while np.any(done_count < quotas):
            actions = np.clip(np.asarray(act(observations), dtype=np.float64), low, high)
            observations, rewards, terminated, truncated, _ = envs.step(actions.astype(envs.single_action_space.dtype))
            running_return += rewards
            running_length += 1
            for i in np.flatnonzero(terminated | truncated):
                if done_count[i] < quotas[i]:
                    returns[i].append(float(running_return[i]))
                    lengths[i].append(int(running_length[i]))
                    done_count[i] += 1
                running_return[i] = 0.0
                running_length[i] = 0
    finally:
        envs.close()
    return returns, lengths


def _result(returns: list[list[float]], lengths: list[list[int]], ref_min: float, ref_max: float,
            step: int) -> EvalResult:
    flat_returns = np.array([r for env_returns in returns for r in env_returns])
    mean = float(flat_returns.mean())
    return EvalResult(
        score=float(normalized_score(mean, ref_min, ref_max)),
        return_mean=mean,
        return_std=float(flat_returns.std()),
        returns=tuple(float(r) for r in flat_returns),
        lengths=tuple(n for env_lengths in lengths for n in env_lengths),
        step=step,
    )


def evaluate_policy(
    policy: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    *,
    episodes: int,
    num_envs: int,
    seed: int,
    ref_min: float,
    ref_max: float,
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    step: int = -1,
) -> EvalResult:
    """Roll ``policy`` (raw obs (B, obs_dim) -> actions (B, act_dim)) for ``episodes`` episodes.

    Environment i is reset with seed ``seed + i``; later episodes continue its RNG, so the same
    policy and seed give the same returns.
    """
    if episodes < 1:
        raise ValueError("episodes must be >= 1")
    quotas = _episode_quotas(episodes, num_envs)
    returns, lengths = _rollouts(policy, env_id, quotas, [seed + i for i in range(len(quotas))],
                                 env_kwargs, max_episode_steps)
    return _result(returns, lengths, ref_min, ref_max, step)


def evaluate_policies(
    actor_state: dict[str, Any],
    env_id: str,
    *,
    episodes: int,
    num_envs: int,
    seeds: list[int],
    ref_min: float,
    ref_max: float,
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    step: int = -1,
    torch_threads: int = 1,
) -> list[EvalResult]:
    """Evaluate the P policies of ``actor_state`` (:class:`tge_ray.rl.nets.StackedPolicy`) at once.

    One vector env holds ``num_envs`` environments per policy; policy p's environment i is
    reset with seed ``seeds[p] + i``, so each policy's result equals :func:`evaluate_policy` of
    that policy alone with seed ``seeds[p]``.
    """
    import torch

    from tge_ray.rl.nets import StackedPolicy

    if episodes < 1:
        raise ValueError("episodes must be >= 1")
    torch.set_num_threads(torch_threads)
    policy = StackedPolicy(actor_state)
    n_policies = policy.n_policies
    if len(seeds) != n_policies:
        raise ValueError(f"{len(seeds)} evaluation seeds for {n_policies} policies")
    quotas = _episode_quotas(episodes, num_envs)
    per_policy = len(quotas)

    def act(observations: np.ndarray) -> np.ndarray:
        actions = policy.act(observations.reshape(n_policies, per_policy, -1))
        return actions.reshape(n_policies * per_policy, -1)

    reset_seeds = [seed + i for seed in seeds for i in range(per_policy)]
    returns, lengths = _rollouts(act, env_id, np.tile(quotas, n_policies), reset_seeds, env_kwargs,
                                 max_episode_steps)
    return [
        _result(returns[p * per_policy : (p + 1) * per_policy], lengths[p * per_policy : (p + 1) * per_policy],
                ref_min, ref_max, step)
        for p in range(n_policies)
    ]


def evaluate_remote(actor_state: dict[str, Any], env_id: str, *, num_cpus: float = 1.0, **kwargs: Any) -> Any:
    """Submit :func:`evaluate_policies` as a Ray task; returns its ``ObjectRef[list[EvalResult]]``.

    Needs a running Ray (``ray.init`` or a cluster). ``num_cpus`` is the task's reservation;
    under a Tune trial whose bundle has no spare CPU pass 0, or the task waits for a free CPU.
    """
    global _REMOTE_EVALUATE
    if _REMOTE_EVALUATE is None:
        import ray

        _REMOTE_EVALUATE = ray.remote(evaluate_policies)
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    # Inside a Tune trial, child tasks would be captured by the trial's placement group, which
    # holds only the trial's own CPUs; evaluations reserve theirs from the cluster instead.
    task = _REMOTE_EVALUATE.options(
        num_cpus=num_cpus, scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None)
    )
    return task.remote(actor_state, env_id, **kwargs)


_REMOTE_EVALUATE: Any = None
