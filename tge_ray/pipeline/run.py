"""``tge run``: one window's way from a dataset to a reward to a policy, stage by stage.

    1. data        D_mu and D_E (the LfO task); ``tge/*`` datasets are made on first use
    2. windows     standardised state windows of D_mu and D_E (horizon H)
    3. diffusion   temporal U-Net DDPM on D_mu's windows (Ray Train)       -> artifact
    4. embeddings  z = phi(tau, 0) for every window of D_mu and D_E (Ray Data) -> artifact
    5. rewards     k-NN kernel reward per transition (Ray Data + faiss)       -> artifact
    6. policies    TGE (IQL or ReBRAC), BC and oracle-IQL, evaluated in the env -> artifacts
    7. run folder  config.yaml, results.json, metrics.jsonl, checkpoints/, PNGs, the table

Every stage output is an artifact of :mod:`tge_ray.pipeline.artifacts`, keyed by what it depends
on, so a rerun (or a sweep trial) reuses what is done and an interrupted run resumes at the
stage it stopped in. The stages live in :mod:`~tge_ray.pipeline.stages` and
:mod:`~tge_ray.pipeline.policies`, the Ray session in :mod:`~tge_ray.pipeline.session`, the
run folder's writer in :mod:`~tge_ray.pipeline.run_folder`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.config import ExperimentConfig, to_dict
from tge_ray.data.task import LfOTask, build_task
from tge_ray.data.windows import Windows
from tge_ray.errors import ConfigError, TGEError
from tge_ray.faults import check_writable
from tge_ray.pipeline import files
from tge_ray.pipeline.artifacts import Artifact, ArtifactStore, is_uri
from tge_ray.pipeline.policies import PolicyRequest, plan, policy_stage
from tge_ray.pipeline.run_folder import ArtifactRef, RunRecord, write_run_folder
from tge_ray.pipeline.session import check_address, quiet_ray_data, ray_session, starts_local_ray
from tge_ray.pipeline.stages import (
    check_datasets,
    datasets_to_make,
    diffusion_stage,
    embedding_stage,
    ensure_datasets,
    expert_index_rows,
    reward_stage,
    say,
    true_reward_correlation_of,
)
from tge_ray.seeding import seed_everything
from tge_ray.tracking import check_available, track_run


@dataclass
class RunResult:
    """What ``tge run`` produced: scores per method, diagnostics, and where it all lives.

    ``scores`` and ``returns`` are per result label, over the run's RL seeds (the mean; with one
    seed, that policy's); ``score_std`` is their std over seeds, ``policies`` each policy's own.
    """

    run_dir: Path
    scores: dict[str, float]
    returns: dict[str, tuple[float, float]]
    separation: dict[str, float]
    score_std: dict[str, float] = field(default_factory=dict)
    policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    selection: dict[str, Any] | None = None  # what filtered BC (backbone fbc) kept of D_mu
    # Spearman's correlation of the TGE reward with D_mu's true reward (per transition, per episode)
    true_reward_correlation: dict[str, float] | None = None


def run_experiment(
    cfg: ExperimentConfig,
    progress: bool = True,
    report: Any = None,
    run_root: Path | None = None,
    stages: dict[str, Artifact] | None = None,
    verbose: bool = False,
) -> RunResult:
    """Run every stage (reusing finished artifacts) and write the run folder.

    Artifacts go under ``cfg.storage`` (a local folder, or a cloud URI when ``run_root`` is
    given); the run folder goes under ``run_root`` (default: ``cfg.storage``). ``report`` is
    called after every policy evaluation (a Tune trial reports it for ASHA); ``stages``, when
    given, is filled with each stage's artifact as soon as the stage is done. ``verbose`` lets
    Ray's warnings and info lines through to the terminal.
    """
    return run_experiments([cfg], progress, report, run_root, None if stages is None else [stages], verbose)[0]


def run_experiments(
    cfgs: list[ExperimentConfig],
    progress: bool = True,
    report: Any = None,
    run_root: Path | None = None,
    stages: list[dict[str, Artifact]] | None = None,
    verbose: bool = False,
) -> list[RunResult]:
    """Several runs that differ only in their seed (a sweep trial's seeds), one run folder each.

    Each run has its own diffusion model, embeddings and rewards; their policies then train as
    one batch per learner (every run's TGE reward is a column of one table), so S seeds of a
    configuration cost one program, not S.
    """
    started = time.time()
    first = cfgs[0]
    for cfg in cfgs[1:]:
        if {**to_dict(cfg), "seed": 0, "name": None} != {**to_dict(first), "seed": 0, "name": None}:
            raise ValueError("run_experiments: the runs may differ only in their seed")
    if run_root is None and is_uri(first.storage):
        raise TGEError(
            f"storage={first.storage!r}: `tge run` writes its run folder locally; use a local path "
            "(sweeps accept cloud URIs with --storage)"
        )
    check_available(first.tracking)  # a tracker that is not installed: one line before anything runs
    for path, name in ((first.storage, "storage"), (run_root, "the sweep's trial folder")):
        if path is not None and not is_uri(str(path)):
            check_writable(str(path).removeprefix("file://"), name)
    check_address(first)  # a cluster that does not answer: before the data, which may be made first
    seed_everything(first.seed)
    if first.resources.torch_threads:
        import torch

        torch.set_num_threads(first.resources.torch_threads)
    prepared = _prepare(cfgs, progress)  # stages 1 and 2 need no Ray: their faults show in seconds
    with ray_session(first, verbose):
        store = ArtifactStore(first.storage)
        quiet_ray_data(verbose)
        results = _run_stages(cfgs, prepared, store, progress, report, Path(run_root or first.storage),
                              stages or [{} for _ in cfgs])
    for result in results:
        result.seconds = time.time() - started
        if progress or run_root is None:
            _print_table(first, result)
        if run_root is None:  # `tge run`; a sweep hands its trials to the trackers itself
            track_run(result.run_dir, first.tracking)
    return results


@dataclass
class _Prepared:
    """Stages 1 and 2: the task and its windows."""

    task: LfOTask
    mixed_windows: Windows
    demo_windows: Windows


def _prepare(cfgs: list[ExperimentConfig], progress: bool) -> _Prepared:
    """Data and windows, with every check that needs the data (reward.k, the memory of each
    stage), before Ray starts."""
    cfg = cfgs[0]
    horizon = cfg.windows.horizon
    # 1. data
    check_datasets(cfg)
    _check_policies_before_data(cfgs)
    say(progress, f"[1/6] data: {cfg.task.offline} + {cfg.task.n_expert_trajs} x {cfg.task.expert}, {cfg.task.n_demos} demo(s)")
    ensure_datasets(cfg, progress)
    task = build_task(cfg.task.offline, cfg.task.expert, cfg.task.n_expert_trajs, cfg.task.n_demos, cfg.task.download,
                      demos=cfg.task.demos)
    n_index = int(expert_index_rows(cfg, task).sum())
    if "tge" in cfg.methods and cfg.reward.k > n_index:
        which = " complete" if cfg.reward.expert_windows == "complete" else ""
        raise ConfigError(
            f"reward.k={cfg.reward.k} exceeds the {n_index}{which} expert windows of D_E: use "
            f"reward.k <= {n_index} or more demos (task.n_demos)"
        )
    _check_memory(cfgs, task, n_index)
    # 2. windows (standardised with D_mu's statistics)
    say(progress, f"[2/6] windows: H={horizon}, {task.mixed.n_transitions} in D_mu, {len(task.demo_observations)} in D_E")
    return _Prepared(task, Windows(task.standardize(task.mixed.observations), task.mixed.episode_ids, horizon),
                     Windows(task.standardize(task.demo_observations), task.demo_episode_ids, horizon))


def _check_memory(cfgs: list[ExperimentConfig], task: LfOTask, n_index: int) -> None:
    """Refuse, with the numbers, a run whose windows or any later stage cannot fit in memory: the
    driver's parts always, the Ray workers' when they run on this machine (a local Ray)."""
    from tge_ray.accel import local_device
    from tge_ray.pipeline import memory

    cfg = cfgs[0]
    mixed, obs_dim = task.mixed, task.mixed.obs_dim
    needs = []
    if "tge" in cfg.methods and starts_local_ray(cfg):  # on a cluster the workers' memory is elsewhere
        needs += memory.stage_needs(cfg, mixed.n_transitions, len(task.demo_episode_ids), n_index, obs_dim)
    batches, columns = _policy_batches(cfgs)
    needs += memory.policy_needs(batches, mixed.n_transitions, columns, obs_dim, mixed.act_dim,
                                 local_device(cfg.resources.use_gpu))
    memory.check_fits(memory.windows_need(cfg, mixed.episode_ids, task.demo_episode_ids, obs_dim), needs)


def _policy_batches(cfgs: list[ExperimentConfig]) -> tuple[dict[str, tuple[Any, int, bool]], int]:
    """The learner batches of the policy stage, {learner: (its first policy's config, policies,
    whether one samples a subset of the rows)}, and the reward columns of their table, counted
    from ``rl.seeds`` without a request per policy."""
    batches: dict[str, tuple[Any, int, bool]] = {}
    tge_runs = 0
    for run, run_cfg in enumerate(cfgs):  # the names of the reward artifacts are not known yet
        tge_runs += "tge" in run_cfg.methods
        for request in plan(run_cfg, run, Artifact(Path(), f"rewards-of-run-{run}", reused=False), seeds=1):
            first, count, subset = batches.get(request.learner, (request.config, 0, False))
            batches[request.learner] = (first, count + run_cfg.rl.seeds, subset or request.filtered)
    return batches, 2 + tge_runs


def _check_policies_before_data(cfgs: list[ExperimentConfig]) -> None:
    """When a dataset is about to be made, refuse policies that cannot fit from their env's sizes
    first: their parameters and batches do not depend on the data, and making it takes minutes
    and writes it into the Minari folder. The transition table is checked with the data."""
    from tge_ray.accel import local_device
    from tge_ray.data.make import dataset_dims
    from tge_ray.pipeline import memory

    missing = datasets_to_make(cfgs[0])
    if not missing:
        return
    dims = [dataset_dims(dataset_id) for dataset_id in missing]  # every id checked before any is made
    obs_dim, act_dim = dims[0]
    batches, columns = _policy_batches(cfgs)
    nothing = memory.Need("windows", (), "")  # nothing is resident before the data
    memory.check_fits(nothing, memory.policy_needs(batches, 0, columns, obs_dim, act_dim,
                                                   local_device(cfgs[0].resources.use_gpu)))


def _run_stages(
    cfgs: list[ExperimentConfig],
    prepared: _Prepared,
    store: ArtifactStore,
    progress: bool,
    report: Any,
    run_root: Path,
    stages: list[dict[str, Artifact]],
) -> list[RunResult]:
    task, mixed_windows, demo_windows = prepared.task, prepared.mixed_windows, prepared.demo_windows
    separations: list[dict[str, float]] = []
    correlations: list[dict[str, float] | None] = []
    requests, reward_columns = [], {}
    for run, (run_cfg, artifacts) in enumerate(zip(cfgs, stages)):
        rewards: Artifact | None = None
        separation: dict[str, float] = {}
        correlation: dict[str, float] | None = None
        if "tge" in run_cfg.methods:
            seed_note = f" (seed {run_cfg.seed})" if len(cfgs) > 1 else ""
            # 3. diffusion model
            say(progress, f"[3/6] diffusion{seed_note}: {run_cfg.diffusion.steps} steps on "
                          f"{run_cfg.resources.train_workers} Ray Train worker(s)")
            artifacts["diffusion"] = diffusion_stage(run_cfg, store, task, mixed_windows, progress)
            # 4. embeddings
            say(progress, f"[4/6] embeddings{seed_note}: {run_cfg.resources.embed_actors} Ray Data actor(s)")
            artifacts["embeddings"] = embedding_stage(run_cfg, store, artifacts["diffusion"], mixed_windows, demo_windows)
            # 5. rewards
            say(progress, f"[5/6] rewards{seed_note}: {run_cfg.reward.kernel} kernel, k={run_cfg.reward.k}, "
                          f"sigma={run_cfg.reward.sigma}")
            rewards = artifacts["rewards"] = reward_stage(run_cfg, store, artifacts["embeddings"], task)
            separation = store.manifest(rewards)["facts"]["separation"]
            correlation = true_reward_correlation_of(rewards, task)
            reward_columns[f"tge:{rewards.name}"] = files.read_rewards(rewards.path).scaled
        separations.append(separation)
        correlations.append(correlation)
        requests += plan(run_cfg, run, rewards)
    # 6. policies: every run's, one batch per learner
    policies = policy_stage(cfgs, requests, store, task, reward_columns, progress, report)
    results = []
    for run, (run_cfg, artifacts) in enumerate(zip(cfgs, stages)):
        mine = [(request, artifact) for request, artifact in zip(requests, policies) if request.run == run]
        for request, artifact in mine:
            artifacts[f"policy-{request.label}-seed{run_cfg.seed + request.offset}"] = artifact
        result = _summarise(run_cfg, store, mine)
        result.separation, result.true_reward_correlation = separations[run], correlations[run]
        result.artifacts = {name: {"name": a.name, "path": str(a.path), "reused": a.reused}
                            for name, a in artifacts.items()}
        result.run_dir = write_run_folder(run_cfg, task, artifacts, _record(run_cfg, store, task, artifacts, result),
                                          run_root)
        results.append(result)
    return results


def _summarise(cfg: ExperimentConfig, store: ArtifactStore,
               policies: list[tuple[PolicyRequest, Artifact]]) -> RunResult:
    """Per label: every policy's facts, and the mean ± std over its seeds."""
    per_label: dict[str, list[dict[str, Any]]] = {}
    selection = None
    for request, artifact in policies:
        facts = store.manifest(artifact)["facts"]
        per_label.setdefault(request.label, []).append({
            "seed": cfg.seed + request.offset,
            "score": float(facts["score"]),
            "return_mean": float(facts["return_mean"]),
            "return_std": float(facts["return_std"]),
            "eval_history": facts.get("eval_history", []),
            "artifact": artifact.name,
        })
        selection = facts.get("selection", selection)
    scores, score_std, returns = {}, {}, {}
    for label, rows in per_label.items():
        values = np.array([row["score"] for row in rows])
        means = np.array([row["return_mean"] for row in rows])
        stds = np.array([row["return_std"] for row in rows])
        scores[label], score_std[label] = float(values.mean()), float(values.std())
        # the std over every evaluation episode of every seed (each seed runs as many episodes)
        pooled = float(np.sqrt(max(np.mean(stds**2 + means**2) - means.mean() ** 2, 0.0)))
        returns[label] = (float(means.mean()), pooled)
    return RunResult(run_dir=Path(), scores=scores, returns=returns, separation={}, score_std=score_std,
                     policies=per_label, selection=selection)


def _record(
    cfg: ExperimentConfig, store: ArtifactStore, task: LfOTask, artifacts: dict[str, Artifact], result: RunResult
) -> RunRecord:
    """The run's record (results.json)."""
    history = {}
    for label, rows in result.policies.items():  # the mean learning curve over seeds
        steps = [step for step, _ in rows[0]["eval_history"]]
        curves = np.array([[score for _, score in row["eval_history"]] for row in rows])
        history[label] = [(int(step), float(score)) for step, score in zip(steps, curves.mean(0))]
    return RunRecord(
        scores=result.scores,
        returns=result.returns,
        separation=result.separation,
        task=task.summary(),
        config=to_dict(cfg),
        artifacts={name: ArtifactRef(a.name, a.path, a.reused) for name, a in artifacts.items()},
        eval_history=history,
        score_std=result.score_std,
        policies=result.policies,
        true_reward_correlation=result.true_reward_correlation,
        filtered_bc=result.selection,
        reward_scaling=store.manifest(artifacts["rewards"])["facts"]["scaling"] if "rewards" in artifacts else None,
    )


def _separation_line(sep: dict[str, Any], kernel: str) -> str:
    if not sep.get("n_expert"):
        return (f"separation: none, D_mu holds no expert-flagged transitions; mean reward "
                f"{sep['mean_other']:.3f} (raw {kernel} kernel)")
    return (f"separation: ROC AUC {sep['auc']:.3f}; mean reward expert {sep['mean_expert']:.3f} "
            f"vs other {sep['mean_other']:.3f} (raw {kernel} kernel)")


def _correlation_line(correlation: dict[str, Any]) -> str:
    """One line for the TGE reward's rank correlation with D_mu's true reward."""
    def fmt(value: Any) -> str:
        return f"{value:+.3f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"

    return (f"reward vs D_mu's true reward (diagnostic only): Spearman {fmt(correlation.get('transitions'))} "
            f"per transition, {fmt(correlation.get('episodes'))} over episode means")


def _print_table(cfg: ExperimentConfig, result: RunResult) -> None:
    seeds = cfg.rl.seeds
    rows = [("method", "normalised score" + (f" (mean ± std, {seeds} seeds)" if seeds > 1 else ""),
             "return (mean ± std)")]
    for label, score in result.scores.items():
        mean, std = result.returns[label]
        shown = f"{score:.1f} ± {result.score_std[label]:.1f}" if seeds > 1 else f"{score:.1f}"
        rows.append((label, shown, f"{mean:.1f} ± {std:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"TGE run {cfg.run_name()} ({result.seconds:.0f} s)"]
    for number, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    if result.separation:
        lines.append(_separation_line(result.separation, cfg.reward.kernel))
    if result.true_reward_correlation:
        lines.append(_correlation_line(result.true_reward_correlation))
    if result.selection:
        from tge_ray.rl.filtered import describe

        lines.append(describe(result.selection))
    lines.append(f"run folder: {result.run_dir}")
    print("\n".join(lines))
