"""What does a run's TGE reward pay for a given behaviour? (a reward diagnostic)

Rolls policies out in the run's evaluation environment (zero actions, uniform random actions
and each of the run's trained policies), cuts the visited states into windows as the run did
(D_mu's standardisation, the run's H), embeds them with the run's diffusion model, and labels
them with the run's kernel, k, sigma and scaling against the run's expert index. A behaviour
that the reward pays about as well as D_mu's expert transitions, but that the environment does
not, is one the backbone can settle on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tge_ray.diagnose.policies import load_policy
from tge_ray.diagnose.runs import task_and_rewards
from tge_ray.errors import ConfigError


@dataclass(frozen=True)
class Rollout:
    """One behaviour: its mean scaled TGE reward per step, the steps taken, its mean env return."""

    policy: str
    tge_reward_mean: float
    steps: int
    env_return_mean: float


@dataclass(frozen=True)
class RolloutReward:
    """What the run's reward pays each behaviour, beside D_mu's own transitions (scaled as the
    backbone saw them; ``d_mu_expert_mean`` is None where D_mu has no expert-flagged rows)."""

    run: str
    d_mu_expert_mean: float | None
    d_mu_other_mean: float
    rollouts: tuple[Rollout, ...]

    def lines(self) -> list[str]:
        expert = "-" if self.d_mu_expert_mean is None else f"{self.d_mu_expert_mean:.3f}"
        out = [f"TGE reward per step (scaled as the run's backbone saw it), {self.run}",
               f"  D_mu expert-flagged: {expert}   D_mu other: {self.d_mu_other_mean:.3f}"]
        for row in self.rollouts:
            out.append(f"  {row.policy:24s} {row.tge_reward_mean:.3f}   env return {row.env_return_mean:9.1f}"
                       f"   ({row.steps} steps)")
        return out


def rollout_reward(run: Any, *, steps: int = 1000, episodes: int = 2, seed: int = 0) -> RolloutReward:
    """Label rollouts of at most ``steps`` steps, ``episodes`` per behaviour (seeds ``seed``,
    ``seed`` + 1, ...), with ``run``'s own reward (a RunFolder with a TGE reward stage)."""
    import torch

    from tge_ray.data.envs import make_env
    from tge_ray.data.windows import Windows
    from tge_ray.diffusion.checkpoint import load_encoder
    from tge_ray.diffusion.embed import embed_array
    from tge_ray.pipeline.policies import eval_environment
    from tge_ray.pipeline.stages import expert_index_rows
    from tge_ray.reward.kernels import RewardScaling
    from tge_ray.reward.label import label_array

    if steps < 1 or episodes < 1:
        raise ConfigError(f"rollout reward: steps and episodes must be >= 1, got {steps} and {episodes}")
    cfg = run.config
    task, stored = task_and_rewards(run)
    d_mu = stored.scaled
    expert_embeddings = run.embeddings().demos[expert_index_rows(cfg, task)]
    encoder = load_encoder(run.diffusion_checkpoint())
    scaling = RewardScaling(**run.results.reward_scaling)
    torch.set_num_threads(1)

    def tge_rewards(observations: np.ndarray) -> np.ndarray:  # (T, obs_dim) states of one episode
        windows = Windows(task.standardize(observations), np.zeros(len(observations), np.int64), cfg.windows.horizon)
        embeddings = embed_array(windows.gather(np.arange(len(observations))), encoder, cfg)
        return scaling.apply(label_array(embeddings, expert_embeddings, cfg.reward))

    rng = np.random.default_rng(seed)
    act_dim = task.mixed.act_dim
    policies = {"zero action": lambda obs: np.zeros((len(obs), act_dim)),
                "uniform random action": lambda obs: rng.uniform(-1.0, 1.0, (len(obs), act_dim))}
    policies.update({label: load_policy(path) for label, path in run.policy_checkpoints().items()})
    env_id, env_kwargs = eval_environment(cfg, task)
    env = make_env(env_id, **env_kwargs)
    low, high = env.action_space.low, env.action_space.high
    rows = []
    try:
        for name, policy in policies.items():
            per_step, returns = [], []
            for episode in range(episodes):
                obs, _ = env.reset(seed=seed + episode)
                visited, total = [obs], 0.0
                for step in range(steps):  # visited: the states an action was taken in
                    action = np.clip(np.asarray(policy(obs[None].astype(np.float32)))[0], low, high)
                    obs, reward, terminated, truncated, _ = env.step(action.astype(env.action_space.dtype))
                    total += float(reward)
                    if terminated or truncated or step == steps - 1:
                        break
                    visited.append(obs)
                per_step.append(tge_rewards(np.asarray(visited, dtype=np.float32)))
                returns.append(total)
            rewards = np.concatenate(per_step)
            rows.append(Rollout(name, float(rewards.mean()), int(len(rewards)), float(np.mean(returns))))
    finally:
        env.close()
    flags = task.expert_flags
    return RolloutReward(run.path.name, float(d_mu[flags].mean()) if flags.any() else None,
                         float(d_mu[~flags].mean()), tuple(rows))
