"""How much of the reward's ordering does the diffusion embedding keep? (a reward diagnostic)

TGE's reward is a k-NN kernel over embeddings of state windows. The window reference is the
same reward over the standardised windows themselves, flattened, with no diffusion model: D_mu's
standardisation, the run's kernel, k, sigma and scaling, the same expert-index rows
(``reward.expert_windows``, ``reward.skip_demo_start``), labelled by the reward stage's own code.
It reports the Spearman correlation of each reward with D_mu's true reward, per transition and
over episode means, and, with ``rl_steps``, the scores of a learner trained on the window reward.
This is a reference, not TGE: the windows are not embedded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from tge_ray.diagnose.policies import Curve, train_curve
from tge_ray.diagnose.runs import task_and_rewards
from tge_ray.errors import ConfigError


@dataclass(frozen=True)
class Correlation:
    """Spearman's rank correlation of a reward with D_mu's true reward."""

    transitions: float
    episodes: float


@dataclass(frozen=True)
class WindowReference:
    """The window reference of one run, beside the run's own TGE reward.

    Attributes:
        run: the run folder.
        horizon, k, skip_demo_start: the window reference's settings (the run's unless changed).
        run_horizon, run_k, run_skip_demo_start: the run's own.
        demo_windows: demo windows in the reference's k-NN index.
        tge: the run's TGE reward's correlation with the true reward.
        windows: the window reference's.
        policy: the learner trained on the window reference (``rl_steps`` > 0), else None.
    """

    run: str
    horizon: int
    k: int
    skip_demo_start: int
    run_horizon: int
    run_k: int
    run_skip_demo_start: int
    demo_windows: int
    tge: Correlation
    windows: Correlation
    policy: Curve | None

    def lines(self) -> list[str]:
        out = [
            f"Spearman correlation with D_mu's true reward, {self.run}",
            f"  the run: H={self.run_horizon}, k={self.run_k}, skip={self.run_skip_demo_start}; the windows: "
            f"H={self.horizon}, k={self.k}, skip={self.skip_demo_start} ({self.demo_windows} demo windows in the index)",
        ]
        for name, row in (("TGE reward (the run's)", self.tge), ("k-NN on the windows", self.windows)):
            out.append(f"  {name:24s} per transition {row.transitions:+.3f}   over episode means {row.episodes:+.3f}")
        if self.policy is not None:
            steps = self.policy.eval_history[-1][0]
            out.append(f"  {self.policy.learner} on the window reward, {steps} updates, normalised score at each "
                       "evaluation: " + ", ".join(f"{score:.1f} ({step})" for step, score in self.policy.eval_history))
        return out


def window_reference(run: Any, *, horizon: int | None = None, skip: int | None = None, k: int | None = None,
                     rl_steps: int = 0, learner: str | None = None, progress: bool = False) -> WindowReference:
    """The window reference of ``run`` (a :class:`~tge_ray.pipeline.run_folder.RunFolder` with a
    TGE reward stage). ``horizon``, ``skip`` and ``k`` replace the run's H,
    ``reward.skip_demo_start`` and ``reward.k``; ``rl_steps`` > 0 trains ``learner`` (the run's
    backbone by default: iql or rebrac) on the window reward, evaluated 5 times, with the run's
    RL settings and seed."""
    from tge_ray.data.windows import Windows
    from tge_ray.pipeline.stages import expert_index_rows
    from tge_ray.reward.diagnostics import true_reward_correlation
    from tge_ray.reward.kernels import scale_rewards
    from tge_ray.reward.label import label_array

    for name, value, least in (("horizon", horizon, 1), ("skip", skip, 0), ("k", k, 1), ("rl_steps", rl_steps, 0)):
        if value is not None and value < least:
            raise ConfigError(f"window reference: {name} must be >= {least}, got {value}")
    run_cfg = run.config
    learner = learner or run_cfg.rl.backbone
    if rl_steps and learner not in ("iql", "rebrac"):
        raise ConfigError(f"the run's backbone is {learner}: train the window reward with learner iql or rebrac")
    reward_cfg = dataclasses.replace(run_cfg.reward, k=k or run_cfg.reward.k,
                                     skip_demo_start=run_cfg.reward.skip_demo_start if skip is None else skip)
    cfg = dataclasses.replace(run_cfg, reward=reward_cfg,
                              windows=dataclasses.replace(run_cfg.windows, horizon=horizon or run_cfg.windows.horizon))
    task, stored = task_and_rewards(run)
    mixed = task.mixed
    horizon = cfg.windows.horizon
    windows = Windows(task.standardize(mixed.observations), mixed.episode_ids, horizon)
    demo = Windows(task.standardize(task.demo_observations), task.demo_episode_ids, horizon)
    flat_mixed = windows.gather(np.arange(len(windows))).reshape(len(windows), -1)  # (N, H * obs_dim)
    flat_demo = demo.gather(np.arange(len(demo))).reshape(len(demo), -1)[expert_index_rows(cfg, task)]
    raw = label_array(flat_mixed, flat_demo, cfg.reward)  # the reward stage's k-NN and kernel
    scaled, _ = scale_rewards(raw, cfg.reward_scale())

    def correlation(rewards: np.ndarray) -> Correlation:
        values = true_reward_correlation(rewards, mixed.rewards, mixed.episode_ids)
        return Correlation(float(values["transitions"]), float(values["episodes"]))

    policy = None
    if rl_steps:
        train_cfg = dataclasses.replace(cfg, rl=dataclasses.replace(cfg.rl, backbone=learner, steps=rl_steps),
                                        evaluation=dataclasses.replace(cfg.evaluation, every=max(1, rl_steps // 5)))
        policy = train_curve(learner, train_cfg, task, run.transitions(scaled.astype(np.float32)), seed=cfg.seed,
                             progress=progress)
    return WindowReference(
        run=run.path.name, horizon=horizon, k=cfg.reward.k, skip_demo_start=cfg.reward.skip_demo_start,
        run_horizon=run_cfg.windows.horizon, run_k=run_cfg.reward.k,
        run_skip_demo_start=run_cfg.reward.skip_demo_start, demo_windows=len(flat_demo),
        tge=correlation(stored.raw), windows=correlation(raw), policy=policy,
    )
