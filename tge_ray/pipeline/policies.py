"""The policy stage: every policy of one or more runs, trained in batches, one artifact each.

A run asks for ``rl.seeds`` policies of each of its methods (:mod:`tge_ray.methods`). Policies
whose learner and shared settings agree train together in one learner (TGE-IQL and oracle-IQL
with all their seeds form one IQL batch; BC and TGE-filtered BC one BC batch), over one table
of D_mu's transitions that holds every reward column they need. Each policy is still its own
artifact, keyed by what it alone depends on: its learner's config object (the one the learner
consumes, with this policy's values of the per-policy fields), its seed, its reward and rows,
the data, the budget and the evaluation. A policy trained in a batch equals the same policy
trained alone, so a rerun reuses every policy it finds and trains only the missing ones, in
one batch whatever their number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.config import ExperimentConfig, key_part, to_dict
from tge_ray.data.task import LfOTask
from tge_ray.errors import DataError
from tge_ray.io import torch_save
from tge_ray.methods import METHODS, Method
from tge_ray.pipeline import files
from tge_ray.pipeline.artifacts import Artifact, ArtifactStore
from tge_ray.pipeline.stages import data_dependencies, say

POLICY_FORMAT = 2  # 2: batched learners (counter-based sampling); policies of format 1 are retrained
STAGE = "policy"


@dataclass(frozen=True)
class PolicyRequest:
    """One policy that a run asks for.

    Attributes:
        run: index of the run (its config) among those the stage serves.
        method: the method it belongs to.
        label: the method's result label (``tge-iql``; ``tge-iql[beta=1]`` when the run gives a
            per-policy field one value per seed and this policy's value differs from its peers').
        offset: its RL seed offset (0 .. rl.seeds - 1); its seed is the run's seed + offset.
        learner: the registered learner that trains it.
        config: its learner's config object, every field a single value.
        reward: the table column it learns from (``tge:<reward artifact>``, ``true`` or ``none``).
        filtered: whether it trains on the episodes the TGE reward ranks highest (filtered BC).
    """

    run: int
    method: Method
    label: str
    offset: int
    learner: str
    config: Any
    reward: str
    filtered: bool = False


def plan(cfg: ExperimentConfig, run: int, rewards: Artifact | None, seeds: int | None = None) -> list[PolicyRequest]:
    """The policies of one run: ``rl.seeds`` per method, with their per-policy values.

    ``seeds`` builds only the first that many per method (the memory check needs one: a request
    per policy would itself exhaust memory for an ``rl.seeds`` in the billions).
    """
    from tge_ray.config.learners import PER_POLICY_FIELDS, policy_section
    from tge_ray.rl.registry import learner_entry

    requests = []
    for name in cfg.methods:
        method = METHODS[name]
        learner = method.learner_of(cfg.rl)
        section = learner_entry(learner).config_of(cfg)  # the section the builder's config comes from
        fixed = {"lr": cfg.rl.fbc.lr} if method.filtered(cfg.rl) else {}  # the method's own, for every seed
        varying = [f for f in PER_POLICY_FIELDS.get(learner, ()) if f not in fixed
                   and isinstance(getattr(section, f), tuple) and len(set(getattr(section, f))) > 1]
        for offset in range(cfg.rl.seeds if seeds is None else min(seeds, cfg.rl.seeds)):
            config = dataclasses.replace(policy_section(section, learner, offset), **fixed)
            label = method.label(cfg.rl)
            if varying:
                label += "[" + ",".join(f"{f}={_short(getattr(config, f))}" for f in varying) + "]"
            if method.rewards == "tge":
                assert rewards is not None
                reward = f"tge:{rewards.name}"
            else:
                reward = method.rewards
            requests.append(PolicyRequest(run, method, label, offset, learner, config, reward, method.filtered(cfg.rl)))
    return requests


def _short(value: float) -> str:
    """``value`` in a label: ``:g`` where that is exact, else every digit (1e-3 and 0.0010001 differ)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def oracle_rewards(task: LfOTask) -> np.ndarray:
    """True rewards scaled as CORL does for locomotion: r * 1000 / (max_return - min_return).

    The scale is computed over D_mu's episodes; it keeps IQL's default hyper-parameters
    meaningful whatever the environment's reward magnitude.
    """
    returns = task.mixed.episode_returns
    spread = float(returns.max() - returns.min())
    return (task.mixed.rewards * (1000.0 / spread if spread > 0 else 1.0)).astype(np.float32)


def transitions_of(task: LfOTask, rewards: np.ndarray) -> Any:
    """D_mu's (s, a, r, s', done, a') with ``rewards``."""
    from tge_ray.rl.buffer import Transitions

    mixed = task.mixed
    return Transitions(
        observations=mixed.observations,
        actions=mixed.actions,
        rewards=rewards,
        next_observations=mixed.next_observations,
        terminals=mixed.terminals.astype(np.float32),
    ).with_next_actions()


def eval_environment(cfg: ExperimentConfig, task: LfOTask) -> tuple[str, dict[str, Any]]:
    """Evaluation env id and kwargs from the dataset's stored evaluation environment."""
    spec = task.mixed.eval_env_spec
    if spec is None:
        raise DataError(f"dataset {task.offline_id!r} stores no environment: it cannot be evaluated")
    kwargs = dict(spec.kwargs or {})
    if cfg.evaluation.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.evaluation.max_episode_steps
    return spec.id, kwargs


def reference_scores(task: LfOTask) -> tuple[float, float]:
    ref_min, ref_max = task.mixed.ref_min_score, task.mixed.ref_max_score
    if ref_min is None or ref_max is None:
        raise DataError(
            f"dataset {task.offline_id!r} has no ref_min_score/ref_max_score: normalised scores need "
            "them (make it with `tge data make`, or use a Minari dataset that stores them)"
        )
    return ref_min, ref_max


def policy_key(request: PolicyRequest, run_cfg: ExperimentConfig) -> dict[str, Any]:
    """What a policy's artifact key is made of: ``request``'s learner, config, seed, reward and
    rows, and ``run_cfg``'s budget, data and evaluation."""
    from tge_ray.rl.registry import learner_entry
    from tge_ray.rl.train import evaluation_seed

    rows = None
    if request.filtered:
        rows = {"filter": "tge-episodes", "fraction": run_cfg.rl.fbc.fraction,
                "prior_transitions": run_cfg.rl.fbc.prior * run_cfg.windows.horizon}
    seed = run_cfg.seed + request.offset
    deps = {
        "format": POLICY_FORMAT,
        "learner": request.learner,
        "config": key_part(request.config),  # the object the learner consumes
        "steps": run_cfg.rl.steps,
        "seed": seed,
        "reward": request.reward,
        "rows": rows,
        "data": data_dependencies(run_cfg),
        "evaluation": key_part(run_cfg.evaluation),
    }
    if seed:  # from seed 1 on: seed 0 is scored where it was before the key named the environments
        deps["evaluation_seed"] = evaluation_seed(seed, run_cfg.evaluation.num_envs)
    revision = learner_entry(request.learner).revision
    if revision:  # from 1 on: a learner at revision 0 keeps its keys
        deps["learner_revision"] = revision
    return deps


def policy_stage(
    cfgs: Sequence[ExperimentConfig],
    requests: Sequence[PolicyRequest],
    store: ArtifactStore,
    task: LfOTask,
    reward_columns: dict[str, np.ndarray],
    progress: bool,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> list[Artifact]:
    """Train (or reuse) every requested policy; returns their artifacts in request order.

    ``reward_columns`` maps ``tge:<reward artifact>`` to that artifact's scaled rewards.
    ``cfgs`` are the runs the requests belong to; they share data, budget and evaluation.
    ``report({"step", "score"})`` gets the mean score of the batch's TGE policies at each of
    its evaluations (a Tune trial reports it for ASHA).

    The learners train on this process's GPU when it has one and ``resources.use_gpu`` allows
    it, on the CPU otherwise; the device does not enter the artifact keys, like the other
    resources.
    """
    from tge_ray.accel import local_device
    from tge_ray.rl.filtered import top_episodes
    from tge_ray.rl.learner import PolicySpec, Problem
    from tge_ray.rl.table import PolicyData, TransitionTable
    from tge_ray.rl.train import action_box

    cfg = cfgs[0]
    env_id, env_kwargs = eval_environment(cfg, task)
    ref_min, ref_max = reference_scores(task)
    device = local_device(cfg.resources.use_gpu)
    columns = {"none": np.zeros(task.mixed.n_transitions, np.float32), "true": oracle_rewards(task), **reward_columns}
    low, high = action_box(env_id, env_kwargs)
    table_transitions = transitions_of(task, columns["true"])
    table = TransitionTable.build(table_transitions, columns, low, high, device)
    all_stats = table_transitions.observation_stats()

    def selection_of(request: PolicyRequest) -> Any:
        run_cfg = cfgs[request.run]
        return top_episodes(columns[request.reward], task.mixed.episode_ids, run_cfg.rl.fbc.fraction,
                            prior=run_cfg.rl.fbc.prior * run_cfg.windows.horizon)

    artifacts: list[Artifact | None] = [None] * len(requests)
    for learner, members in _batches(requests).items():

        def build(missing: list[int], folders: list[Path], scratch: Path, members: list[int] = members,
                  learner: str = learner) -> list[dict[str, Any]]:
            chosen = [members[i] for i in missing]
            selections = {i: selection_of(requests[i]) for i in chosen if requests[i].filtered}
            specs = []
            for i in chosen:
                request = requests[i]
                rows, stats = None, all_stats
                if i in selections:
                    rows = np.flatnonzero(selections[i].mask)
                    stats = table_transitions.subset(rows).observation_stats()
                specs.append(PolicySpec(request.config, cfgs[request.run].seed + request.offset,
                                        PolicyData(request.reward, rows), *stats))
            labels = sorted({requests[i].label for i in chosen})
            bf16 = ", hidden-layer products in bf16" if requests[chosen[0]].config.matmul == "bf16" else ""
            say(progress, f"[6/6] policies: {learner} x{len(chosen)} ({', '.join(labels)}), "
                          f"{cfg.rl.steps} updates each, one batch on {device}, {_update_mode(cfg, device)}{bf16}")
            return _train(learner, specs, [requests[i] for i in chosen], table, cfg, task, folders, scratch,
                          env_id, env_kwargs, ref_min, ref_max, device, progress, report,
                          {k: selections[i] for k, i in enumerate(chosen) if i in selections},
                          Problem(table.obs_dim, table.act_dim, low, high, cfg.rl.steps))

        built = store.get_or_build_many(STAGE, [policy_key(requests[i], cfgs[requests[i].run]) for i in members], build)
        for i, artifact in zip(members, built):
            artifacts[i] = artifact
        if progress and all(a.reused for a in built):
            say(progress, f"[6/6] policies: {learner} x{len(members)} reused")
    return [a for a in artifacts if a is not None]


def _update_mode(cfg: ExperimentConfig, device: str) -> str:
    """How the batch's update runs, for its stage line: a compiled first update takes a while."""
    from tge_ray.accel import learner_compile_mode

    mode = learner_compile_mode(cfg.resources.compile, device, cfg.rl.steps)
    if mode is None:
        return "eager"
    if mode == "cuda-graph":
        return "one CUDA graph"
    return "torch.compile (the first update compiles: up to minutes on 2 cores)"


def _batches(requests: Sequence[PolicyRequest]) -> dict[str, list[int]]:
    """Request indices grouped by learner, in request order."""
    groups: dict[str, list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(request.learner, []).append(i)
    return groups


def _train(learner: str, specs: list[Any], requests: list[PolicyRequest], table: Any, cfg: ExperimentConfig,
           task: LfOTask, folders: list[Path], scratch: Path, env_id: str, env_kwargs: dict[str, Any],
           ref_min: float, ref_max: float, device: str, progress: bool,
           report: Callable[[dict[str, Any]], None] | None, selections: dict[int, Any], problem: Any
           ) -> list[dict[str, Any]]:
    """Train one batch and write each policy's artifact files; returns each one's facts."""
    from tge_ray.accel import learner_compile_mode
    from tge_ray.rl.train import train_batch

    tge = [k for k, request in enumerate(requests) if request.method.rewards == "tge"]

    def report_batch(results: list[Any]) -> None:
        if report is not None and tge:
            report({"step": results[0].step, "score": float(np.mean([results[k].score for k in tge]))})

    results = train_batch(
        learner, specs, table, problem, cfg.evaluation, env_id=env_id, env_kwargs=env_kwargs,
        ref_min=ref_min, ref_max=ref_max, checkpoint=scratch / "batch.pt", progress=progress,
        desc=f"{learner} x{len(specs)}", report=report_batch,
        compile=learner_compile_mode(cfg.resources.compile, device, cfg.rl.steps),
    )
    facts = []
    for k, (request, result, folder) in enumerate(zip(requests, results, folders)):
        torch_save({"learner": learner, "label": request.label, "seed": result.seed,
                    "config": to_dict(request.config), "actor_state": result.actor_state,
                    "eval_history": result.eval_history}, files.policy_file(folder))
        files.write_stage_metrics(folder, result.metrics)
        selected = {}
        if k in selections:
            selected = {"selection": selections[k].to_dict(task.expert_flags if task.n_expert_trajs else None)}
        facts.append({
            "label": request.label,
            "seed": result.seed,
            "score": result.score,
            "return_mean": result.return_mean,
            "return_std": result.return_std,
            "eval_history": result.eval_history,
            "steps": result.steps,
            "seconds": result.seconds,
            "batch_size": result.batch_size,
            "device": device,
            **selected,
        })
    return facts
