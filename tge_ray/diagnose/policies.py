"""The diagnostics' one seam to the policy stage: training a policy on given rewards, and
loading a run's trained policies. Every call into ``tge_ray.rl`` that the diagnostics make is here."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.config import ExperimentConfig


@dataclasses.dataclass(frozen=True)
class Curve:
    """A trained policy's evaluations: (RL updates, normalised score), the last one final."""

    learner: str
    seed: int
    eval_history: tuple[tuple[int, float], ...]

    @property
    def final(self) -> float:
        return self.eval_history[-1][1]


def train_curve(learner: str, cfg: ExperimentConfig, task: Any, transitions: Any, *, seed: int,
                progress: bool = False) -> Curve:
    """Train ``learner`` (``iql``, ``rebrac``, ``bc``) for ``cfg.rl.steps`` updates on
    ``transitions``, evaluated every ``cfg.evaluation.every`` in the task's evaluation environment,
    inline (no Ray); the policy itself is not kept."""
    from tge_ray.config.learners import policy_section
    from tge_ray.pipeline.policies import eval_environment
    from tge_ray.rl.registry import learner_entry
    from tge_ray.rl.train import train_policy

    env_id, env_kwargs = eval_environment(cfg, task)
    # a per-seed list gives this diagnostic its first value
    section = policy_section(learner_entry(learner).config_of(cfg), learner, 0)
    with tempfile.TemporaryDirectory(prefix="tge-diagnose-") as scratch:
        result = train_policy(learner, section, cfg.evaluation, transitions, steps=cfg.rl.steps, env_id=env_id,
                              env_kwargs=env_kwargs, ref_min=task.mixed.ref_min_score,
                              ref_max=task.mixed.ref_max_score, seed=seed, checkpoint=Path(scratch) / "batch.pt",
                              progress=progress, use_ray=False)
    return Curve(learner, seed, tuple((int(step), float(score)) for step, score in result.eval_history))


def rows_of(transitions: Any, rows: np.ndarray) -> Any:
    """The transitions at ``rows`` (a boolean mask or indices), every field alike."""
    return transitions.subset(rows)


def load_policy(checkpoint: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A run's trained policy from its checkpoint: observations (B, obs_dim) -> actions (B, act_dim)."""
    import torch

    from tge_ray.rl.nets import StackedPolicy

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return StackedPolicy(state["actor_state"]).act
