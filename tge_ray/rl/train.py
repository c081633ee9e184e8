"""Train one offline RL policy on labelled transitions, evaluating it in Ray tasks on the way.

    result = train_policy("iql", rl_cfg, eval_cfg, transitions, env_id="Hopper-v5", env_kwargs={},
                          ref_min=-20.3, ref_max=3234.3, seed=0, out_dir=Path("runs/x/iql"))

Steps: (1) a learner and its device-resident sampler; (2) ``rl_cfg.steps`` updates, metrics
pulled to the host only every ``log_every`` steps; (3) every ``eval_cfg.every`` steps the
current actor is submitted to a Ray evaluation task (inline when Ray is not running) and a
checkpoint is written; finished evaluations are reported to ``report`` in step order as they
come in; (4) the final policy is always evaluated, the rest gathered, and ``policy.pt`` written.

``policy.pt`` (written atomically) holds the learner, sampler RNG, eval history and actor
state; an unfinished one in ``out_dir`` is resumed from, so a preempted run continues where its
last evaluation left it and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from tge_ray.config import EvaluationConfig, RLConfig
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.evaluation import EvalResult, evaluate_actor_state, evaluate_remote
from tge_ray.rl.learner import make_learner, metrics_to_floats

CHECKPOINT_NAME = "policy.pt"
MAX_EVALS_IN_FLIGHT = 2  # beyond this, training waits for the oldest evaluation


@dataclass
class PolicyResult:
    """What one policy training gives back.

    Attributes:
        method: learner that was trained (``iql``, ``rebrac``, ``bc`` or ``fbc``).
        score: normalised score of the final policy.
        return_mean, return_std: the final policy's returns.
        eval_history: (step, normalised score) of every evaluation, final included.
        metrics: loss metrics sampled every ``log_every`` steps, each with its ``step``.
        checkpoint: path of ``policy.pt``.
        steps: updates done.
        seconds: wall time of the updates (evaluations run beside them).
    """

    method: str
    score: float
    return_mean: float
    return_std: float
    eval_history: list[tuple[int, float]] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    steps: int = 0
    seconds: float = 0.0

    @property
    def updates_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")


def resolve_method(method: str, rl_cfg: RLConfig) -> str:
    """``tge`` -> the configured backbone, ``oracle`` -> ``iql`` (trained on true rewards)."""
    if method == "tge":
        return rl_cfg.backbone
    if method == "oracle":
        return "iql"
    return method


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, then rename over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _action_box(env_id: str, env_kwargs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    env = gymnasium.make(env_id, **env_kwargs)
    try:
        space = env.action_space
        return np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
    finally:
        env.close()


def _ray_running() -> bool:
    try:
        import ray

        return ray.is_initialized()
    except ImportError:  # pragma: no cover - ray is a dependency
        return False


def train_policy(
    method: str,
    rl_cfg: RLConfig,
    eval_cfg: EvaluationConfig,
    transitions: Transitions,
    *,
    env_id: str,
    env_kwargs: dict[str, Any] | None,
    ref_min: float,
    ref_max: float,
    seed: int,
    out_dir: Path,
    device: str = "cpu",
    progress: bool = True,
    report: Callable[[dict], None] | None = None,
    log_every: int | None = None,
    use_ray: bool | None = None,
    eval_num_cpus: float = 1.0,
    compile: bool | str = False,
) -> PolicyResult:
    """Train ``method`` (``iql``/``rebrac``/``bc``/``fbc``, or ``tge``/``oracle``) and evaluate it.

    ``fbc`` trains BC on ``transitions`` as given: the caller selects them
    (``tge_ray.rl.filtered.top_episodes``).

    ``report({"step", "score"})`` is called once per evaluation, in step order, when its result
    arrives (for Tune's ASHA). ``use_ray=None`` evaluates in Ray tasks when Ray is initialised
    and inline otherwise. ``log_every`` defaults to steps/200 clamped to [1, 1000]. ``compile``
    runs the learner's losses through ``torch.compile`` (pays on long runs; see bench_rl); a
    string names the mode (``reduce-overhead`` on GPUs: CUDA graphs).
    """
    learner_name = resolve_method(method, rl_cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    env_kwargs = dict(env_kwargs or {})
    use_ray = _ray_running() if use_ray is None else use_ray
    total_steps = rl_cfg.steps
    log_every = log_every or int(np.clip(total_steps // 200, 1, 1000))

    # 1. learner and sampler
    action_low, action_high = _action_box(env_id, env_kwargs)
    obs_mean, obs_std = transitions.observation_stats()
    rewards = transitions.rewards
    learner = make_learner(
        learner_name, rl_cfg, transitions.obs_dim, transitions.act_dim, action_low, action_high,
        obs_mean, obs_std, device=device, seed=seed,
        reward_range=(float(rewards.min()), float(rewards.max())), compile=compile,
    )
    sampler = learner.make_sampler(transitions, seed=seed)
    eval_kwargs = dict(
        episodes=eval_cfg.episodes, num_envs=eval_cfg.num_envs, seed=seed + 10_000,
        ref_min=ref_min, ref_max=ref_max, env_kwargs=env_kwargs,
        max_episode_steps=eval_cfg.max_episode_steps,
    )

    history: list[EvalResult] = []
    metrics: list[dict[str, float]] = []
    if checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if not saved.get("complete", True) and saved.get("method") == learner_name \
                and saved.get("total_steps") == total_steps:
            learner.load_state_dict(saved["learner"])
            sampler.load_state_dict(saved["sampler"])
            history = [EvalResult(**{**r, "returns": tuple(r["returns"]), "lengths": tuple(r["lengths"])})
                       for r in saved["eval_history"]]
            metrics = list(saved["metrics"])

    pending: list[tuple[int, Any]] = []  # (step, ObjectRef) in submission order
    reported = {r.step for r in history}

    def deliver(result: EvalResult) -> None:
        history.append(result)
        if report is not None and result.step not in reported:
            report({"step": result.step, "score": result.score})
        reported.add(result.step)

    def collect(wait_for: int = 0) -> None:
        """Move finished evaluations into the history in step order, waiting for the oldest
        ``wait_for`` of them."""
        import ray

        while pending:
            _, ref = pending[0]
            if wait_for <= 0 and not ray.wait([ref], timeout=0)[0]:
                return
            deliver(ray.get(ref))
            pending.pop(0)
            wait_for -= 1

    def evaluate(step: int) -> None:
        state = learner.actor_state()
        if use_ray:
            pending.append((step, evaluate_remote(state, env_id, num_cpus=eval_num_cpus, step=step, **eval_kwargs)))
            collect(wait_for=len(pending) - MAX_EVALS_IN_FLIGHT)
        else:
            deliver(evaluate_actor_state(state, env_id, torch_threads=torch.get_num_threads(), step=step,
                                         **eval_kwargs))

    def save(complete: bool) -> None:
        atomic_torch_save(
            {
                "method": learner_name,
                "requested_method": method,
                "complete": complete,
                "total_steps": total_steps,
                "learner": learner.state_dict(),
                "sampler": sampler.state_dict(),
                "actor_state": learner.actor_state(),
                "eval_history": [dataclasses.asdict(r) for r in history],
                "metrics": metrics,
                "rl_config": dataclasses.asdict(rl_cfg),
            },
            checkpoint_path,
        )

    # 2./3. updates with periodic evaluations
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=learner.step, desc=f"{method}", dynamic_ncols=True)
    start = time.perf_counter()
    first_step = learner.step
    while learner.step < total_steps:
        step_metrics = learner.train_step(sampler.sample())
        step = learner.step
        if step % log_every == 0 or step == total_steps:
            floats = metrics_to_floats(step_metrics)
            metrics.append({"step": step, **floats})
            if bar is not None:
                bar.update(step - bar.n)
                bar.set_postfix({k: f"{v:.3g}" for k, v in floats.items()}, refresh=False)
        if step % eval_cfg.every == 0 and step < total_steps:
            evaluate(step)
            save(complete=False)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()

    # 4. final evaluation, gather the rest, final checkpoint
    if not history or history[-1].step != total_steps:
        evaluate(total_steps)
    if use_ray:
        collect(wait_for=len(pending))
    history.sort(key=lambda r: r.step)
    save(complete=True)
    final = history[-1]
    return PolicyResult(
        method=learner_name,
        score=final.score,
        return_mean=final.return_mean,
        return_std=final.return_std,
        eval_history=[(r.step, r.score) for r in history],
        metrics=metrics,
        checkpoint=checkpoint_path,
        steps=learner.step - first_step,
        seconds=seconds,
    )
