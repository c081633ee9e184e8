"""The typed config: one dataclass per stage, every value checked where the config is made.

Each field has one entry under ``Attributes:`` in its class docstring: what it does and, in a
line, why it is set as it is (``tge config --fields`` prints the entry beside the default). A
bad value raises :class:`ConfigError` naming the dotted field, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tge_ray.config.checks import NO_RESULT, check, in_range, positive
from tge_ray.config.learners import RLConfig
from tge_ray.errors import ConfigError
from tge_ray.methods import METHOD_NAMES

# ----------------------------------------------------------------------------- stage configs


@dataclass
class TaskConfig:
    """The LfO task: which Minari datasets make D_mu and D_E.

    Attributes:
        offline: Minari id of the suboptimal dataset that forms D_mu.
        expert: Minari id of the expert dataset; its first N episodes join D_mu, M others form D_E.
        n_expert_trajs: N, expert episodes mixed into D_mu (0 = disjoint support).
        n_demos: M, expert episodes whose observations form D_E; D_E needs at least one.
        demos: which expert episodes form D_E: ``last`` (the last M, the same demos for every N)
            or ``next`` (episodes N..N+M-1, the demo changes with N; runs before the option).
        download: download Minari datasets that are not local; off so a run never needs a network.
        make_missing: make missing ``tge/*`` datasets with ``tge data make`` on first use.

    ``download`` and ``make_missing`` say how the data is found, not what it is: they stay out
    of artifact keys (:func:`tge_ray.config.key_part`).
    """

    offline: str = "tge/hopper/random-v0"
    expert: str = "tge/hopper/expert-v0"
    n_expert_trajs: int = 30
    n_demos: int = 1
    demos: Literal["last", "next"] = "last"
    download: bool = field(default=False, metadata=NO_RESULT)
    make_missing: bool = field(default=True, metadata=NO_RESULT)

    def __post_init__(self) -> None:
        check(self.n_expert_trajs >= 0, "task.n_expert_trajs", self.n_expert_trajs, "must be >= 0")
        check(self.n_demos >= 1, "task.n_demos", self.n_demos, "must be >= 1 (D_E needs a demo)")


@dataclass
class WindowConfig:
    """State-only windows (s_t, ..., s_{t+H-1}) cut at every step of every episode.

    Attributes:
        horizon: H, states per window; past an episode's end the last state repeats (H = 1: the
            single-step ablation).
        batch_size: windows per streamed batch when windows are built; bounds memory, changes
            no result (kept out of artifact keys).
    """

    horizon: int = 32
    batch_size: int = field(default=8192, metadata=NO_RESULT)

    def __post_init__(self) -> None:
        check(self.horizon >= 1, "windows.horizon", self.horizon, "must be >= 1")
        positive("windows.batch_size", self.batch_size)


@dataclass
class DiffusionConfig:
    """Temporal U-Net DDPM over windows of D_mu (Diffuser-style), trained with Ray Train.

    Attributes:
        dim: channels of the U-Net's first level.
        dim_mults: channel multipliers per level; the time axis halves between levels.
        n_timesteps: K, diffusion steps (cosine schedule, epsilon prediction).
        steps: gradient steps in total, over all workers.
        batch_size: windows per step per worker.
        lr: Adam learning rate.
        ema_decay: decay of the EMA weights that embed the windows.
        ema_start: step from which the EMA tracks the weights (copies them before).
        checkpoint_every: steps between checkpoints reported to Ray Train (what a failed worker
            resumes from).
    """

    dim: int = 32
    dim_mults: tuple[int, ...] = (1, 2, 4, 8)
    n_timesteps: int = 20
    steps: int = 20000
    batch_size: int = 256
    lr: float = 2e-4
    ema_decay: float = 0.995
    ema_start: int = 500
    checkpoint_every: int = 2000

    def __post_init__(self) -> None:
        positive("diffusion.dim", self.dim)
        check(
            len(self.dim_mults) >= 1 and all(m >= 1 for m in self.dim_mults),
            "diffusion.dim_mults",
            self.dim_mults,
            "a non-empty list of integers >= 1",
        )
        in_range("diffusion.n_timesteps", self.n_timesteps, 2, 1000)
        positive("diffusion.steps", self.steps)
        positive("diffusion.batch_size", self.batch_size)
        positive("diffusion.lr", self.lr)
        in_range("diffusion.ema_decay", self.ema_decay, 0.0, 1.0, closed=False)
        check(self.ema_start >= 0, "diffusion.ema_start", self.ema_start, "must be >= 0")
        positive("diffusion.checkpoint_every", self.checkpoint_every)

    @property
    def n_down(self) -> int:
        """Down steps of the U-Net: each halves the time axis."""
        return len(self.dim_mults) - 1

    def allowed_horizons(self) -> str:
        """Human-readable set of horizons the U-Net takes."""
        step = 2**self.n_down
        small = [2**i for i in range(self.n_down)]
        return ", ".join(str(h) for h in small) + f" or a multiple of {step}" if small else "any"

    def down_steps_for(self, horizon: int) -> int:
        """Down steps used for ``horizon``; raises ConfigError if the U-Net cannot take it.

        A horizon that is a multiple of 2**n_down uses every down step. A smaller power of two
        (1, 2, 4 with the default four levels) uses as many as it can halve through, so the
        single-step ablation H = 1 runs the same network without down steps.
        """
        if horizon % (2**self.n_down) == 0:
            return self.n_down
        if horizon < 2**self.n_down and horizon & (horizon - 1) == 0:
            return horizon.bit_length() - 1
        raise ConfigError(
            f"windows.horizon={horizon} cannot pass the U-Net's {self.n_down} down steps: "
            f"use {self.allowed_horizons()}, or change diffusion.dim_mults"
        )


@dataclass
class EmbeddingConfig:
    """z = phi(tau, 0): the U-Net's bottleneck at diffusion step 0, one vector per window.

    Attributes:
        pool: how the bottleneck (B, C, H') becomes one vector: ``mean`` or ``max`` over time,
            or ``flatten`` (keeps temporal order, C*H' dims).
        normalize: L2-normalise embeddings, so the kernel's sigma means the same at every H.
    """

    pool: Literal["mean", "max", "flatten"] = "mean"
    normalize: bool = True


@dataclass
class RewardConfig:
    """k-NN kernel reward on embeddings, scaled for the backbone.

    ``log`` (default): r = -log(1 + (1/k) sum_j ||z - z_E^j|| / sigma).
    ``gaussian`` (ablation): r = (1/k) sum_j exp(-||z - z_E^j||^2 / (2 sigma^2)).

    Attributes:
        kernel: ``log`` (the paper's) or ``gaussian`` (ablation).
        k: expert neighbours per transition (exact search).
        sigma: kernel temperature (> 0); the gaussian kernel needs sigma >= 0.16 on normalised
            embeddings, or far windows' rewards underflow to 0 and tie.
        scale: how raw rewards are scaled before offline RL: ``rank`` (each reward's quantile among
            D_mu's), ``minmax`` to [0, 1] over D_mu, ``standard`` to mean 0 and std 1, ``none``
            raw; ``auto``: rank for the iql backbone, minmax for rebrac and fbc.
        expert_windows: which demo windows form the index Z_E: ``all`` (every step's, the
            method's definition) or ``complete`` (only those wholly inside their episode: a padded window
            shows a frozen system).
        skip_demo_start: windows left out of Z_E at the start of each demo episode; they show
            the reset state every episode shares (0 keeps them all, the method's definition).
            With ``complete``, an episode left with no window keeps its last complete one.
        batch_size: windows per Ray Data batch in the embedding and reward stages; changes no
            result (kept out of artifact keys).
    """

    kernel: Literal["log", "gaussian"] = "log"
    k: int = 5
    sigma: float = 1.0
    scale: Literal["auto", "rank", "minmax", "standard", "none"] = "auto"
    expert_windows: Literal["all", "complete"] = "all"
    skip_demo_start: int = 0
    batch_size: int = field(default=4096, metadata=NO_RESULT)

    def __post_init__(self) -> None:
        check(self.k >= 1, "reward.k", self.k, "must be >= 1")
        check(self.skip_demo_start >= 0, "reward.skip_demo_start", self.skip_demo_start, "must be >= 0")
        positive("reward.sigma", self.sigma)
        positive("reward.batch_size", self.batch_size)


@dataclass
class EvaluationConfig:
    """Rollouts of the policy in the dataset's Gymnasium environment.

    Attributes:
        episodes: episodes per evaluation.
        every: updates between evaluations (the last update is always evaluated).
        num_envs: environments stepped together (one vectorised env) per policy; the policy of
            seed s resets its environment i with seed 10000 + s * num_envs + i, so no two seeds
            share an environment seed (:func:`tge_ray.rl.train.evaluation_seed`).
        max_episode_steps: cap on episode length (``null``: the environment's own).
    """

    episodes: int = 10
    every: int = 10000
    num_envs: int = 5
    max_episode_steps: int | None = None

    def __post_init__(self) -> None:
        positive("evaluation.episodes", self.episodes)
        positive("evaluation.every", self.every)
        positive("evaluation.num_envs", self.num_envs)
        if self.max_episode_steps is not None:
            positive("evaluation.max_episode_steps", self.max_episode_steps)


@dataclass
class ResourcesConfig:
    """Where and with what the stages run; none of it enters an artifact's key.

    Attributes:
        address: Ray address to join (``auto``, ``ray://...``, ``HOST:PORT``); ``null`` starts a
            local Ray with this machine's CPUs.
        num_cpus: CPUs of a locally started Ray (``null``: all).
        train_workers: Ray Train workers for the diffusion model.
        train_max_failures: worker failures the diffusion stage recovers from, each resuming
            from its last checkpoint (Ray Train's ``FailureConfig.max_failures``); ``0`` ends
            the run at the first.
        use_gpu: ``auto`` uses GPUs where the cluster has them; ``true`` requires them.
        embed_actors: actors in the embedding pool (one GPU each on GPUs).
        reward_actors: actors in the reward pool.
        torch_threads: intra-op threads per process (``null``: torch's default).
        stage_cpus: CPUs each Ray Train worker, embedding actor and reward actor reserves;
            below 1 lets concurrent sweep trials' nested stages fit a small machine.
        compile: ``cpu``: learners compiled on the CPU at 10,000 updates per policy or more,
            the rest eager; ``auto``: that, and CUDA graphs on a GPU; ``true``: compiled
            everywhere; ``false``: eager. README: Update mode.
    """

    address: str | None = None
    num_cpus: int | None = None
    train_workers: int = 1
    train_max_failures: int = 3
    use_gpu: Literal["auto", True, False] = "auto"
    embed_actors: int = 1
    reward_actors: int = 1
    torch_threads: int | None = None
    stage_cpus: float = 1.0
    compile: Literal["cpu", "auto", True, False] = "cpu"

    def __post_init__(self) -> None:
        positive("resources.stage_cpus", self.stage_cpus)
        if self.num_cpus is not None:
            positive("resources.num_cpus", self.num_cpus)
        positive("resources.train_workers", self.train_workers)
        check(self.train_max_failures >= 0, "resources.train_max_failures", self.train_max_failures, "must be >= 0")
        positive("resources.embed_actors", self.embed_actors)
        positive("resources.reward_actors", self.reward_actors)
        if self.torch_threads is not None:
            positive("resources.torch_threads", self.torch_threads)


@dataclass
class SweepConfig:
    """Ray Tune + Optuna settings of ``tge sweep`` (the search space lives in tune_spaces/).

    Attributes:
        num_samples: configurations Optuna draws.
        seeds: seeds each configuration runs over; the searcher sees their mean score.
        max_concurrent_trials: trials at once; on a Ray that ``tge sweep`` starts itself it is
            lowered (with a note) to what the CPUs hold, so trials never wait on each other.
        cpus_per_trial: CPUs the trial's own process reserves (its RL updates).
        gpus_per_trial: GPUs the trial's own process reserves (fractions allowed).
        grace_period: evaluations before ASHA may stop a trial.
        reduction_factor: ASHA's eta.
    """

    num_samples: int = 16
    seeds: int = 1
    max_concurrent_trials: int = 2
    cpus_per_trial: float = 0.5
    gpus_per_trial: float = 0.0
    grace_period: int = 1
    reduction_factor: int = 2

    def __post_init__(self) -> None:
        positive("sweep.num_samples", self.num_samples)
        positive("sweep.seeds", self.seeds)
        positive("sweep.max_concurrent_trials", self.max_concurrent_trials)
        positive("sweep.cpus_per_trial", self.cpus_per_trial)
        check(self.gpus_per_trial >= 0, "sweep.gpus_per_trial", self.gpus_per_trial, ">= 0")
        positive("sweep.grace_period", self.grace_period)
        check(self.reduction_factor >= 2, "sweep.reduction_factor", self.reduction_factor, ">= 2")


@dataclass
class TrackingConfig:
    """Where a run or a sweep is recorded besides its folder (``tge report`` reads the folder).

    Attributes:
        tensorboard: write TensorBoard event files (losses, evaluations, reward histograms, the
            embedding projection) into each run folder's ``tensorboard/``.
        mlflow: hand the run (or every sweep trial) to MLflow through Ray's integration; needs
            the ``mlflow`` extra.
        mlflow_uri: MLflow's tracking URI (``null``: MLflow's own default, MLFLOW_TRACKING_URI
            or a local store in the working folder). With a database file
            (``sqlite:///runs/mlflow.db``) the artifacts go to ``mlartifacts/`` beside it.
        wandb: hand the run (or every sweep trial) to Weights & Biases through Ray's
            integration; needs the ``wandb`` extra.
        wandb_mode: ``offline`` (files under ./wandb, ``wandb sync`` uploads them; needs no
            account) or ``online``.
        project: the MLflow experiment and the W&B project.
    """

    tensorboard: bool = field(default=True, metadata=NO_RESULT)
    mlflow: bool = field(default=False, metadata=NO_RESULT)
    mlflow_uri: str | None = field(default=None, metadata=NO_RESULT)
    wandb: bool = field(default=False, metadata=NO_RESULT)
    wandb_mode: Literal["offline", "online"] = field(default="offline", metadata=NO_RESULT)
    project: str = field(default="tge", metadata=NO_RESULT)


METHODS = METHOD_NAMES  # tge_ray.methods holds what each method is


@dataclass
class ExperimentConfig:
    """Everything one ``tge run`` depends on.

    Attributes:
        name: run name; ``null`` builds one from the content (task, backbone, horizon, seed).
        seed: seeds Python, NumPy, torch, environments and the searcher.
        storage: run folder root (local path or cloud URI); artifacts are kept under it.
        methods: which of ``tge``, ``bc``, ``oracle`` to run.
        task: the LfO task.
        windows: the state windows.
        diffusion: the diffusion model.
        embedding: the window embeddings.
        reward: the k-NN reward.
        rl: the offline RL learners.
        evaluation: the policy rollouts.
        resources: where the stages run.
        sweep: ``tge sweep``'s settings.
        tracking: TensorBoard, MLflow and W&B.
    """

    name: str | None = None
    seed: int = 0
    storage: str = "runs"
    methods: tuple[str, ...] = METHODS
    task: TaskConfig = field(default_factory=TaskConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        check(self.seed >= 0, "seed", self.seed, "must be >= 0")
        check(
            len(self.methods) >= 1 and all(m in METHODS for m in self.methods),
            "methods",
            list(self.methods),
            f"a non-empty list drawn from {list(METHODS)}",
        )
        # Checked here because it needs two stages: the U-Net must take the horizon.
        self.diffusion.down_steps_for(self.windows.horizon)

    def reward_scale(self) -> str:
        """``reward.scale``, with ``auto`` resolved for TGE's backbone: ``rank`` for IQL, ``minmax``
        for ReBRAC and filtered BC. The rewards artifact is keyed by the resolved value.

        Filtered BC uses the rewards only to cut D_mu's episodes by Otsu's threshold, which looks
        for the gap between the expert episodes' scores and the rest: an affine scale keeps that
        gap as the raw reward has it (the cut is the raw reward's), while rank spreads D_mu's
        rewards evenly and closes it."""
        if self.reward.scale != "auto":
            return self.reward.scale
        return "rank" if self.rl.backbone == "iql" else "minmax"

    def run_name(self) -> str:
        """Content-built name: ``<task>__<backbone>__H<horizon>__s<seed>``."""
        if self.name:
            return self.name
        task = self.task.offline.replace("/", "-")
        return f"{task}__{self.rl.backbone}__H{self.windows.horizon}__s{self.seed}"
