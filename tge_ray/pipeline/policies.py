"""The policy stage: TGE (the configured backbone), BC and oracle-IQL, trained and evaluated.

Each method is one artifact keyed by what its policy depends on; TGE's depends on the reward
artifact, BC's and the oracle's do not, so a new sigma retrains only the TGE policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.config import ExperimentConfig, to_dict
from tge_ray.data.task import LfOTask
from tge_ray.errors import DataError
from tge_ray.pipeline.artifacts import Artifact, ArtifactStore
from tge_ray.pipeline.files import read_rewards, write_stage_metrics
from tge_ray.pipeline.stages import ARTIFACT_FORMAT, data_dependencies


def _transitions(task: LfOTask, rewards: np.ndarray) -> Any:
    from tge_ray.rl.buffer import Transitions

    mixed = task.mixed
    return Transitions(
        observations=mixed.observations,
        actions=mixed.actions,
        rewards=rewards,
        next_observations=mixed.next_observations,
        terminals=mixed.terminals.astype(np.float32),
    ).with_next_actions()


def oracle_rewards(task: LfOTask) -> np.ndarray:
    """True rewards scaled as CORL does for locomotion: r * 1000 / (max_return - min_return).

    The scale is computed over D_mu's episodes; it keeps IQL's default hyper-parameters
    meaningful whatever the environment's reward magnitude.
    """
    returns = task.mixed.episode_returns
    spread = float(returns.max() - returns.min())
    return (task.mixed.rewards * (1000.0 / spread if spread > 0 else 1.0)).astype(np.float32)


def eval_environment(cfg: ExperimentConfig, task: LfOTask) -> tuple[str, dict[str, Any]]:
    """Evaluation env id and kwargs from the dataset's stored evaluation environment."""
    spec = task.mixed.eval_env_spec
    if spec is None:
        raise DataError(f"dataset {task.offline_id!r} stores no environment: it cannot be evaluated")
    kwargs = dict(spec.kwargs or {})
    if cfg.evaluation.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.evaluation.max_episode_steps
    return spec.id, kwargs


def policy_stage(
    cfg: ExperimentConfig,
    store: ArtifactStore,
    method: str,
    task: LfOTask,
    rewards: Artifact | None,
    progress: bool,
    report: Any = None,
) -> Artifact:
    """Train and evaluate one method; TGE depends on the reward artifact, BC/oracle do not.

    The learner trains on this process's GPU when it has one and ``resources.use_gpu`` allows
    it (compiled as ``resources.compile`` says), on the CPU otherwise; the device does not
    enter the artifact key, like the other resources.
    """
    from tge_ray.accel import compile_mode, local_device
    from tge_ray.rl.train import resolve_method, train_policy

    learner = resolve_method(method, cfg.rl)
    rl_fields = {"steps": cfg.rl.steps}
    if learner in ("bc", "fbc"):
        rl_fields.update(hidden=cfg.rl.bc_hidden, layers=cfg.rl.bc_layers, lr=cfg.rl.bc_rate(learner),
                         batch=cfg.rl.bc_batch_size)
        if cfg.rl.bc_lr_schedule != "constant":  # keys of runs made before the option stay the same
            rl_fields["lr_schedule"] = cfg.rl.bc_lr_schedule
    if learner != "bc":
        rl_fields.update(to_dict(getattr(cfg.rl, learner)))
    deps = {
        "method": method,
        "learner": learner,
        "data": data_dependencies(cfg),
        "rewards": rewards.name if method == "tge" and rewards is not None else None,
        "rl": rl_fields,
        "evaluation": to_dict(cfg.evaluation),
        "seed": cfg.seed,
        "format": ARTIFACT_FORMAT,
    }
    if method == "tge":
        assert rewards is not None
        train_rewards = read_rewards(rewards.path).scaled
    elif method == "oracle":
        train_rewards = oracle_rewards(task)
    else:
        train_rewards = np.zeros(task.mixed.n_transitions, np.float32)  # BC ignores rewards
    env_id, env_kwargs = eval_environment(cfg, task)
    ref_min, ref_max = task.mixed.ref_min_score, task.mixed.ref_max_score
    if ref_min is None or ref_max is None:
        raise DataError(
            f"dataset {task.offline_id!r} has no ref_min_score/ref_max_score: normalised scores need "
            "them (make it with `tge data make`, or use a Minari dataset that stores them)"
        )

    device = local_device(cfg.resources.use_gpu)

    def build(folder: Path) -> dict[str, Any]:
        transitions, selected = _transitions(task, train_rewards), {}
        if learner == "fbc":  # filtered BC: the learner is BC, the data the best episodes
            from tge_ray.rl.filtered import top_episodes

            selection = top_episodes(train_rewards, task.mixed.episode_ids, cfg.rl.fbc.fraction,
                                     prior=cfg.rl.fbc.prior * cfg.windows.horizon)
            transitions = transitions.subset(selection.mask)
            selected = {"selection": selection.to_dict(task.expert_flags if task.n_expert_trajs else None)}
        result = train_policy(
            method,
            cfg.rl,
            cfg.evaluation,
            transitions,
            env_id=env_id,
            env_kwargs=env_kwargs,
            ref_min=ref_min,
            ref_max=ref_max,
            seed=cfg.seed,
            out_dir=folder,
            progress=progress,
            report=report,
            device=device,
            compile=compile_mode(cfg.resources.compile, device) or False,
        )
        write_stage_metrics(folder, result.metrics)
        return {
            "score": result.score,
            "return_mean": result.return_mean,
            "return_std": result.return_std,
            "eval_history": result.eval_history,
            "steps": result.steps,
            "seconds": result.seconds,
            "device": device,
            **selected,
        }

    return store.get_or_build(f"policy-{method}", deps, build)


def method_label(method: str, cfg: ExperimentConfig) -> str:
    """Result key: ``tge-iql``/``tge-rebrac``/``tge-fbc``, ``bc``, ``oracle-iql``."""
    if method == "tge":
        return f"tge-{cfg.rl.backbone}"
    if method == "oracle":
        return "oracle-iql"
    return method
