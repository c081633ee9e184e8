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
stage it stopped in. The run folder is written aside and moved into place when complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.config import ExperimentConfig, dump_config, to_dict
from tge_ray.data.minari_io import dataset_fingerprint, is_local
from tge_ray.data.task import DEMOS_BEFORE_THE_OPTION, LfOTask, build_task
from tge_ray.data.windows import Windows, after_start, complete_windows, to_ray_dataset
from tge_ray.errors import ConfigError, DataError, TGEError
from tge_ray.pipeline.artifacts import Artifact, ArtifactStore, is_uri
from tge_ray.seeding import seed_everything

log = logging.getLogger("tge_ray")

ARTIFACT_FORMAT = 1  # bump when a stage's output format changes, so old artifacts are not reused


@dataclass
class RunResult:
    """What ``tge run`` produced: scores per method, diagnostics, and where it all lives."""

    run_dir: Path
    scores: dict[str, float]
    returns: dict[str, tuple[float, float]]
    separation: dict[str, float]
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    selection: dict[str, Any] | None = None  # what filtered BC (backbone fbc) kept of D_mu
    # Spearman's correlation of the TGE reward with D_mu's true reward (per transition, per episode)
    true_reward_correlation: dict[str, float] | None = None


# ----------------------------------------------------------------------------- Ray session


@contextlib.contextmanager
def ray_session(cfg: ExperimentConfig) -> Iterator[None]:
    """Join ``resources.address`` or start a local Ray; leave an existing session alone."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = cfg.resources.address
    if address not in (None, "auto", "local"):
        check_reachable(address)
    # Inside `ray job submit`, RAY_ADDRESS points ray.init at the job's cluster, which refuses
    # num_cpus: a CPU count applies only to a Ray this process starts itself.
    starts_local = address is None and not os.environ.get("RAY_ADDRESS")
    try:
        ray.init(
            address=address,
            num_cpus=cfg.resources.num_cpus if starts_local else None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TGEError(
            f"resources.address={address!r} does not answer ({reason}): start the cluster "
            "(`ray start --head`) or leave resources.address unset for a local Ray"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with one line, when nothing listens at ``[ray://]host:port``.

    ``ray.init`` itself retries an unreachable GCS for minutes before giving up.
    """
    import socket

    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise TGEError(
            f"resources.address={address!r} is not host:port (or ray://host:port, or auto): "
            "e.g. resources.address=127.0.0.1:6379"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise TGEError(
            f"resources.address={address!r} does not answer ({exc.strerror or exc}): start the "
            "cluster (`ray start --head`) or leave resources.address unset for a local Ray"
        ) from None


def _quiet_ray_data() -> None:
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.train").setLevel(logging.WARNING)


# ----------------------------------------------------------------------------- stages


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def ensure_datasets(cfg: ExperimentConfig, progress: bool) -> None:
    """Make missing ``tge/*`` datasets (when ``task.make_missing``)."""
    for dataset_id in (cfg.task.offline, cfg.task.expert):
        if is_local(dataset_id) or not (cfg.task.make_missing and dataset_id.startswith("tge/")):
            continue
        from tge_ray.data.make import make_dataset

        _say(progress, f"      making {dataset_id} (first use) ...")
        make_dataset(dataset_id, seed=cfg.seed, progress=progress)


def data_dependencies(cfg: ExperimentConfig) -> dict[str, Any]:
    """What D_mu and D_E are made of (ids, file fingerprints, N, M)."""
    return {
        "offline": cfg.task.offline,
        "offline_files": dataset_fingerprint(cfg.task.offline),
        "expert": cfg.task.expert,
        "expert_files": dataset_fingerprint(cfg.task.expert),
        "n_expert_trajs": cfg.task.n_expert_trajs,
        "format": ARTIFACT_FORMAT,
    }


def diffusion_stage(
    cfg: ExperimentConfig, store: ArtifactStore, task: LfOTask, mixed_windows: Windows, progress: bool
) -> Artifact:
    from tge_ray.diffusion.train import train_diffusion

    training_fields = {k: v for k, v in to_dict(cfg.diffusion).items() if k not in ("pool", "normalize")}
    deps = {
        "data": data_dependencies(cfg),
        "horizon": cfg.windows.horizon,
        "diffusion": training_fields,
        "train_workers": cfg.resources.train_workers,
        "seed": cfg.seed,
        # The training order: one seeded permutation of all windows (before: blocks of
        # consecutive windows in a seeded order), so models trained before it are not reused.
        "window_order": "permuted",
    }

    def build(folder: Path) -> dict[str, Any]:
        dataset = to_ray_dataset(mixed_windows, batch_size=cfg.windows.batch_size, shuffle_seed=cfg.seed)
        scratch = Path(tempfile.mkdtemp(prefix="tge-train-"))
        try:
            checkpoint = train_diffusion(cfg, dataset, task.mixed.obs_dim, scratch, progress=progress)
            shutil.move(str(checkpoint), folder / "diffusion.pt")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {"windows": len(mixed_windows)}

    return store.get_or_build("diffusion", deps, build)


def _collect_embeddings(dataset: Any, n_rows: int) -> np.ndarray:
    """Gather ``{"index", "embedding"}`` batches into an (N, D) array in index order."""
    out: np.ndarray | None = None
    seen = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        embedding = batch["embedding"]
        if out is None:
            out = np.empty((n_rows, embedding.shape[1]), dtype=np.float32)
        out[batch["index"]] = embedding
        seen += len(batch["index"])
    if out is None or seen != n_rows:
        raise RuntimeError(f"embedding stage returned {seen} rows for {n_rows} windows")
    return out


def embedding_stage(
    cfg: ExperimentConfig,
    store: ArtifactStore,
    diffusion: Artifact,
    mixed_windows: Windows,
    demo_windows: Windows,
) -> Artifact:
    from tge_ray.diffusion.embed import embed_dataset

    deps = {
        "diffusion": diffusion.name,
        "pool": cfg.diffusion.pool,
        "normalize": cfg.diffusion.normalize,
        "n_demos": cfg.task.n_demos,
        "format": ARTIFACT_FORMAT,
    }
    if cfg.task.demos != DEMOS_BEFORE_THE_OPTION:  # artifacts made before task.demos existed keep their keys
        deps["demos"] = cfg.task.demos

    def build(folder: Path) -> dict[str, Any]:
        checkpoint = diffusion.path / "diffusion.pt"
        arrays = {}
        for name, windows in (("mixed", mixed_windows), ("demos", demo_windows)):
            dataset = embed_dataset(to_ray_dataset(windows, batch_size=cfg.windows.batch_size), checkpoint, cfg)
            arrays[name] = _collect_embeddings(dataset, len(windows))
        np.savez(folder / "embeddings.npz", **arrays)
        return {"dim": int(arrays["mixed"].shape[1]), "mixed": len(mixed_windows), "demos": len(demo_windows)}

    return store.get_or_build("embeddings", deps, build)


def expert_index_rows(cfg: ExperimentConfig, task: LfOTask) -> np.ndarray:
    """(N_E,) bool: the windows of D_E that enter the k-NN index (``reward.expert_windows``,
    ``reward.skip_demo_start``)."""
    rows = np.ones(len(task.demo_episode_ids), dtype=bool)
    if cfg.reward.expert_windows == "complete":
        rows &= complete_windows(task.demo_episode_ids, cfg.windows.horizon)
    if cfg.reward.skip_demo_start:
        rows &= after_start(task.demo_episode_ids, cfg.reward.skip_demo_start)
    return rows


def reward_stage(
    cfg: ExperimentConfig, store: ArtifactStore, embeddings: Artifact, task: LfOTask
) -> Artifact:
    from tge_ray.reward.diagnostics import separation
    from tge_ray.reward.kernels import scale_rewards
    from tge_ray.reward.label import label_rewards

    deps = {
        "embeddings": embeddings.name,
        "kernel": cfg.reward.kernel,
        "k": cfg.reward.k,
        "sigma": cfg.reward.sigma,
        "scale": cfg.reward.scale,
        "format": ARTIFACT_FORMAT,
    }
    if cfg.reward.expert_windows != "all":  # only when set, so default artifacts keep their keys
        deps["expert_windows"] = cfg.reward.expert_windows
    if cfg.reward.skip_demo_start:
        deps["skip_demo_start"] = cfg.reward.skip_demo_start

    def build(folder: Path) -> dict[str, Any]:
        with np.load(embeddings.path / "embeddings.npz") as npz:
            mixed, demos = npz["mixed"], npz["demos"][expert_index_rows(cfg, task)]
        table = to_ray_dataset(mixed, column="embedding", batch_size=cfg.reward.batch_size)
        raw = label_rewards(table, demos, cfg.reward, cfg.resources)
        scaled, scaling = scale_rewards(raw, cfg.reward.scale)
        stats = separation(raw, task.expert_flags)
        np.savez(folder / "rewards.npz", raw=raw, scaled=scaled)
        return {"scaling": scaling.to_dict(), "separation": stats}

    return store.get_or_build("rewards", deps, build)


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
        with np.load(rewards.path / "rewards.npz") as npz:
            train_rewards = npz["scaled"]
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
        with open(folder / "metrics.jsonl", "w") as handle:
            for row in result.metrics:
                handle.write(json.dumps(row) + "\n")
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


# ----------------------------------------------------------------------------- the run


def method_label(method: str, cfg: ExperimentConfig) -> str:
    """Result key: ``tge-iql``/``tge-rebrac``/``tge-fbc``, ``bc``, ``oracle-iql``."""
    if method == "tge":
        return f"tge-{cfg.rl.backbone}"
    if method == "oracle":
        return "oracle-iql"
    return method


def run_experiment(
    cfg: ExperimentConfig,
    progress: bool = True,
    report: Any = None,
    run_root: Path | None = None,
    stages: dict[str, Artifact] | None = None,
) -> RunResult:
    """Run every stage (reusing finished artifacts) and write the run folder.

    Artifacts go under ``cfg.storage`` (a local folder, or a cloud URI when ``run_root`` is
    given); the run folder goes under ``run_root`` (default: ``cfg.storage``). ``report`` is
    called after every policy evaluation (a Tune trial reports it for ASHA); ``stages``, when
    given, is filled with each stage's artifact as soon as the stage is done.
    """
    started = time.time()
    if run_root is None and is_uri(cfg.storage):
        raise TGEError(
            f"storage={cfg.storage!r}: `tge run` writes its run folder locally; use a local path "
            "(sweeps accept cloud URIs with --storage)"
        )
    seed_everything(cfg.seed)
    if cfg.resources.torch_threads:
        import torch

        torch.set_num_threads(cfg.resources.torch_threads)
    with ray_session(cfg):
        store = ArtifactStore(cfg.storage)
        _quiet_ray_data()
        result = _run_stages(cfg, store, progress, report, Path(run_root or cfg.storage), stages)
    result.seconds = time.time() - started
    if progress or run_root is None:
        _print_table(cfg, result)
    return result


def _run_stages(
    cfg: ExperimentConfig,
    store: ArtifactStore,
    progress: bool,
    report: Any,
    run_root: Path,
    stages: dict[str, Artifact] | None,
) -> RunResult:
    horizon = cfg.windows.horizon
    # 1. data
    _say(progress, f"[1/6] data: {cfg.task.offline} + {cfg.task.n_expert_trajs} x {cfg.task.expert}, {cfg.task.n_demos} demo(s)")
    ensure_datasets(cfg, progress)
    task = build_task(cfg.task.offline, cfg.task.expert, cfg.task.n_expert_trajs, cfg.task.n_demos, cfg.task.download,
                      demos=cfg.task.demos)
    # 2. windows (standardised with D_mu's statistics)
    _say(progress, f"[2/6] windows: H={horizon}, {task.mixed.n_transitions} in D_mu, {len(task.demo_observations)} in D_E")
    mixed_windows = Windows(task.standardize(task.mixed.observations), task.mixed.episode_ids, horizon)
    demo_windows = Windows(task.standardize(task.demo_observations), task.demo_episode_ids, horizon)
    n_index = int(expert_index_rows(cfg, task).sum())
    if "tge" in cfg.methods and cfg.reward.k > n_index:
        which = " complete" if cfg.reward.expert_windows == "complete" else ""
        raise ConfigError(
            f"reward.k={cfg.reward.k} exceeds the {n_index}{which} expert windows of D_E: use "
            f"reward.k <= {n_index} or more demos (task.n_demos)"
        )
    artifacts: dict[str, Artifact] = {} if stages is None else stages
    rewards: Artifact | None = None
    separation: dict[str, float] = {}
    correlation: dict[str, float] | None = None
    if "tge" in cfg.methods:
        # 3. diffusion model
        _say(progress, f"[3/6] diffusion: {cfg.diffusion.steps} steps on {cfg.resources.train_workers} Ray Train worker(s)")
        artifacts["diffusion"] = diffusion_stage(cfg, store, task, mixed_windows, progress)
        # 4. embeddings
        _say(progress, f"[4/6] embeddings: {cfg.resources.embed_actors} Ray Data actor(s)")
        artifacts["embeddings"] = embedding_stage(cfg, store, artifacts["diffusion"], mixed_windows, demo_windows)
        # 5. rewards
        _say(progress, f"[5/6] rewards: {cfg.reward.kernel} kernel, k={cfg.reward.k}, sigma={cfg.reward.sigma}")
        rewards = artifacts["rewards"] = reward_stage(cfg, store, artifacts["embeddings"], task)
        separation = store.manifest(rewards)["facts"]["separation"]
        correlation = _true_reward_correlation(rewards, task)
    # 6. policies
    scores, returns, selection = {}, {}, None
    for method in cfg.methods:
        label = method_label(method, cfg)
        _say(progress, f"[6/6] policy: {label}, {cfg.rl.steps} updates")
        artifact = artifacts[f"policy-{label}"] = policy_stage(cfg, store, method, task, rewards, progress, report)
        facts = store.manifest(artifact)["facts"]
        scores[label] = float(facts["score"])
        returns[label] = (float(facts["return_mean"]), float(facts["return_std"]))
        selection = facts.get("selection", selection)
    result = RunResult(
        run_dir=Path(),
        scores=scores,
        returns=returns,
        separation=separation,
        selection=selection,
        true_reward_correlation=correlation,
        artifacts={name: {"name": a.name, "path": str(a.path), "reused": a.reused} for name, a in artifacts.items()},
    )
    result.run_dir = _write_run_folder(cfg, store, task, artifacts, result, run_root)
    return result


def _write_run_folder(
    cfg: ExperimentConfig,
    store: ArtifactStore,
    task: LfOTask,
    artifacts: dict[str, Artifact],
    result: RunResult,
    run_root: Path,
) -> Path:
    """config.yaml, results.json, metrics.jsonl, checkpoints/ and PNGs, moved into place whole."""
    root = run_root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{cfg.run_name()}__{time.strftime('%Y%m%d-%H%M%S')}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}.tmp-"))
    try:
        dump_config(cfg, tmp / "config.yaml")
        checkpoints = tmp / "checkpoints"
        checkpoints.mkdir()
        with open(tmp / "metrics.jsonl", "w") as metrics:
            for name, artifact in artifacts.items():
                for file in ("diffusion.pt", "policy.pt"):
                    if (artifact.path / file).is_file():
                        shutil.copy2(artifact.path / file, checkpoints / f"{name}.pt")
                if (artifact.path / "metrics.jsonl").is_file():
                    for line in (artifact.path / "metrics.jsonl").read_text().splitlines():
                        metrics.write(json.dumps({"stage": name, **json.loads(line)}) + "\n")
        history = {
            name.removeprefix("policy-"): store.manifest(a)["facts"].get("eval_history", [])
            for name, a in artifacts.items()
            if name.startswith("policy-")
        }
        if "rewards" in artifacts:
            _plots(tmp, cfg, task, artifacts)
        scaling = store.manifest(artifacts["rewards"])["facts"]["scaling"] if "rewards" in artifacts else None
        results = {
            "scores": result.scores,
            "returns": {k: {"mean": m, "std": s} for k, (m, s) in result.returns.items()},
            "separation": result.separation,
            **({"true_reward_correlation": result.true_reward_correlation} if result.true_reward_correlation else {}),
            **({"filtered_bc": result.selection} if result.selection else {}),
            "reward_scaling": scaling,
            "eval_history": history,
            "task": task.summary(),
            "artifacts": result.artifacts,
            "config": to_dict(cfg),
        }
        text = json.dumps(_strict_json(results), indent=2, default=str, allow_nan=False)
        (tmp / "results.json").write_text(text)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _true_reward_correlation(rewards: Artifact, task: LfOTask) -> dict[str, float]:
    """Computed by every run rather than stored with the reward artifact, so runs that reuse an
    artifact made before this diagnostic report it too."""
    from tge_ray.reward.diagnostics import true_reward_correlation

    with np.load(rewards.path / "rewards.npz") as npz:
        raw = npz["raw"]
    return true_reward_correlation(raw, task.mixed.rewards, task.mixed.episode_ids)


def _plots(folder: Path, cfg: ExperimentConfig, task: LfOTask, artifacts: dict[str, Artifact]) -> None:
    from tge_ray.reward.diagnostics import plot_embedding_projection, plot_reward_histogram

    with np.load(artifacts["rewards"].path / "rewards.npz") as npz:
        raw = npz["raw"]
    plot_reward_histogram(raw, task.expert_flags, folder / "reward_histogram.png", kernel=cfg.reward.kernel)
    with np.load(artifacts["embeddings"].path / "embeddings.npz") as npz:
        mixed = npz["mixed"]
    returns = task.mixed.episode_returns[task.mixed.episode_ids]
    plot_embedding_projection(mixed, task.expert_flags, folder / "embeddings_2d.png", returns=returns, seed=cfg.seed)


def _strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, so results.json is strict JSON.

    The separation diagnostic is NaN when D_mu holds no expert-flagged transitions (N = 0).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    return value


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
    rows = [("method", "normalised score", "return (mean ± std)")]
    for label, score in result.scores.items():
        mean, std = result.returns[label]
        rows.append((label, f"{score:.1f}", f"{mean:.1f} ± {std:.1f}"))
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
