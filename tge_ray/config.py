"""Typed configs, one per stage, loaded from YAML with dotted command-line overrides.

Every field carries its meaning in the class docstring (``tge config --help`` prints them) and
every value is checked when the config is made: a bad one raises :class:`ConfigError` naming the
dotted field, the value and what is allowed. :func:`load_config` is the single entry point:

    cfg = load_config("my.yaml", ["reward.sigma=0.5", "windows.horizon=16"])

The resolved config is written beside every result (``config.yaml`` in the run folder), so a
result always carries the config that made it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from tge_ray.errors import ConfigError

# ----------------------------------------------------------------------------- helpers


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is not allowed: {allowed}")


def _positive(name: str, value: float) -> None:
    _check(value > 0, name, value, "must be > 0")


def _in_range(name: str, value: float, low: float, high: float, *, closed: bool = True) -> None:
    ok = low <= value <= high if closed else low < value < high
    bracket = f"[{low}, {high}]" if closed else f"({low}, {high})"
    _check(ok, name, value, f"must lie in {bracket}")


# ----------------------------------------------------------------------------- stage configs


@dataclass
class TaskConfig:
    """The LfO task: which Minari datasets make D_mu and D_E.

    Attributes:
        offline: Minari id of the suboptimal dataset that forms D_mu (e.g. ``tge/hopper/random-v0``
            or ``mujoco/hopper/medium-v0``).
        expert: Minari id of the expert dataset. Its first ``n_expert_trajs`` episodes are mixed
            into D_mu; ``n_demos`` other episodes (see ``demos``) form D_E.
        n_expert_trajs: N, expert episodes mixed into D_mu (0 = disjoint support).
        n_demos: M, expert episodes whose observations form D_E (>= 1).
        demos: which expert episodes form D_E. ``last`` (default): the dataset's last M
            episodes, so every N of a task sees the same demos; needs N + M <= the episodes.
            ``next``: episodes N..N+M-1, right after the mixed-in ones, so the demo changes
            with N (the protocol before this option; runs whose config.yaml lacks the key used it).
        download: allow downloading Minari datasets that are not local (needs a reachable host).
        make_missing: make ``tge/*`` datasets with ``tge data make`` on first use when missing.
    """

    offline: str = "tge/hopper/random-v0"
    expert: str = "tge/hopper/expert-v0"
    n_expert_trajs: int = 30
    n_demos: int = 1
    demos: Literal["last", "next"] = "last"
    download: bool = False
    make_missing: bool = True

    def __post_init__(self) -> None:
        _check(self.n_expert_trajs >= 0, "task.n_expert_trajs", self.n_expert_trajs, "must be >= 0")
        _check(self.n_demos >= 1, "task.n_demos", self.n_demos, "must be >= 1 (D_E needs a demo)")


@dataclass
class WindowConfig:
    """State-only windows (s_t, ..., s_{t+H-1}) cut at every step of every episode.

    Attributes:
        horizon: H, states per window; past an episode's end the last state repeats. H = 1 is
            the single-step ablation.
        batch_size: windows per streamed batch when all windows are built (memory bound).
    """

    horizon: int = 32
    batch_size: int = 8192

    def __post_init__(self) -> None:
        _check(self.horizon >= 1, "windows.horizon", self.horizon, "must be >= 1")
        _positive("windows.batch_size", self.batch_size)


@dataclass
class DiffusionConfig:
    """Temporal U-Net DDPM over windows of D_mu (Diffuser-style), trained with Ray Train.

    Attributes:
        dim: channels of the U-Net's first level.
        dim_mults: channel multipliers per level; the time axis halves between levels.
        n_timesteps: K, diffusion steps (cosine schedule, epsilon prediction).
        steps: gradient steps in total (over all workers).
        batch_size: windows per step per worker.
        lr: Adam learning rate.
        ema_decay: decay of the EMA weights that are used for embedding.
        ema_start: step from which EMA tracking starts (copies the weights before).
        checkpoint_every: steps between checkpoints reported to Ray Train.
        pool: how the bottleneck (B, C, H') becomes one vector: ``mean`` or ``max`` over time,
            or ``flatten`` (keeps temporal order, C*H' dims).
        normalize: L2-normalise embeddings.
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
    pool: Literal["mean", "max", "flatten"] = "mean"
    normalize: bool = True

    def __post_init__(self) -> None:
        _positive("diffusion.dim", self.dim)
        _check(
            len(self.dim_mults) >= 1 and all(m >= 1 for m in self.dim_mults),
            "diffusion.dim_mults",
            self.dim_mults,
            "a non-empty list of integers >= 1",
        )
        _in_range("diffusion.n_timesteps", self.n_timesteps, 2, 1000)
        _positive("diffusion.steps", self.steps)
        _positive("diffusion.batch_size", self.batch_size)
        _positive("diffusion.lr", self.lr)
        _in_range("diffusion.ema_decay", self.ema_decay, 0.0, 1.0, closed=False)
        _check(self.ema_start >= 0, "diffusion.ema_start", self.ema_start, "must be >= 0")
        _positive("diffusion.checkpoint_every", self.checkpoint_every)

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
class RewardConfig:
    """k-NN kernel reward on embeddings, scaled for the backbone.

    ``log`` (default): r = -log(1 + (1/k) sum_j ||z - z_E^j|| / sigma).
    ``gaussian`` (ablation): r = (1/k) sum_j exp(-||z - z_E^j||^2 / (2 sigma^2)).

    Attributes:
        kernel: ``log`` or ``gaussian``.
        k: expert neighbours per transition (exact search).
        sigma: kernel temperature (> 0).
        scale: how raw rewards are scaled before offline RL: ``minmax`` maps D_mu's rewards to
            [0, 1] (default; keeps the IQL/ReBRAC hyper-parameters of the papers meaningful),
            ``standard`` to zero mean and unit std, ``none`` keeps them raw.
        expert_windows: which windows of D_E form the k-NN index Z_E. ``all`` (default, as
            DESIGN.md): every time step's window, the last H - 1 of each episode padded with its
            last state. ``complete``: only windows that lie wholly inside their episode (an
            episode shorter than H keeps its first window). Padded windows show a frozen
            system; when episodes end by a time limit, standing still is then close to the
            demo's last windows and earns expert-like reward (see RESULTS.md, halfcheetah).
        skip_demo_start: windows left out of Z_E at the start of each demo episode (0, the
            default, keeps them all, as DESIGN.md). Every episode starts from the reset state,
            so the demo's first windows look like the first windows of every random episode;
            on halfcheetah at N = 0 most windows of D_mu have their nearest demo window among
            its first 50, and the reward then pays for standing at rest (RESULTS.md,
            halfcheetah N = 0). An episode shorter than this keeps its last window.
        batch_size: windows per Ray Data batch in the embedding and reward stages.
    """

    kernel: Literal["log", "gaussian"] = "log"
    k: int = 5
    sigma: float = 1.0
    scale: Literal["minmax", "standard", "none"] = "minmax"
    expert_windows: Literal["all", "complete"] = "all"
    skip_demo_start: int = 0
    batch_size: int = 4096

    def __post_init__(self) -> None:
        _check(self.k >= 1, "reward.k", self.k, "must be >= 1")
        _check(self.skip_demo_start >= 0, "reward.skip_demo_start", self.skip_demo_start, "must be >= 0")
        _positive("reward.sigma", self.sigma)
        _positive("reward.batch_size", self.batch_size)


@dataclass
class IQLConfig:
    """IQL (Kostrikov et al., 2021) hyper-parameters, CORL defaults.

    Attributes:
        expectile: tau of the asymmetric L2 value loss.
        beta: inverse temperature of advantage-weighted regression.
        max_weight: clip of exp(beta * A).
        hidden: MLP width; n_layers: hidden layers per MLP.
        lr: learning rate of actor, critics and value.
        batch_size: transitions per update.
        discount: gamma.
        tau: Polyak rate of the target critics.
    """

    expectile: float = 0.7
    beta: float = 3.0
    max_weight: float = 100.0
    hidden: int = 256
    n_layers: int = 2
    lr: float = 3e-4
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005

    def __post_init__(self) -> None:
        _in_range("rl.iql.expectile", self.expectile, 0.0, 1.0, closed=False)
        _positive("rl.iql.beta", self.beta)
        _positive("rl.iql.max_weight", self.max_weight)
        _positive("rl.iql.hidden", self.hidden)
        _positive("rl.iql.n_layers", self.n_layers)
        _positive("rl.iql.lr", self.lr)
        _positive("rl.iql.batch_size", self.batch_size)
        _in_range("rl.iql.discount", self.discount, 0.0, 1.0)
        _in_range("rl.iql.tau", self.tau, 0.0, 1.0)


@dataclass
class ReBRACConfig:
    """ReBRAC (Tarasov et al., 2023) hyper-parameters, CORL defaults, plus an adaptive BC weight.

    Attributes:
        hidden: MLP width; n_layers: hidden layers (LayerNorm in the critic).
        actor_lr, critic_lr: learning rates.
        batch_size: transitions per update.
        actor_bc_coef: beta_1, weight of the actor's BC term.
        critic_bc_coef: beta_2, weight of the critic's BC penalty on the next action.
        policy_noise, noise_clip: target-policy smoothing.
        policy_freq: critic updates per actor update.
        discount, tau: gamma and the Polyak rate.
        adaptive_bc: weight the actor's BC term per sample by its TGE reward,
            beta_i = beta (1 + r_i) / (1 + mean r) with r the reward mapped to [0, 1]: expert-like
            transitions are imitated harder, the batch mean stays beta (see
            ``tge_ray.rl.losses.adaptive_bc_weights``); ``false`` keeps beta fixed.
        bc_sharpness: kappa >= 0. With ``adaptive_bc``, a kappa > 0 replaces the linear rule by
            beta_i = beta exp(kappa r_i) / mean exp(kappa r) (``tge_ray.rl.losses.sharp_bc_weights``):
            expert-like transitions are imitated up to e^kappa times harder. 0 (the default) keeps
            the linear rule.
    """

    hidden: int = 256
    n_layers: int = 3
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    batch_size: int = 1024
    actor_bc_coef: float = 0.01
    critic_bc_coef: float = 0.01
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2
    discount: float = 0.99
    tau: float = 0.005
    adaptive_bc: bool = True
    bc_sharpness: float = 0.0

    def __post_init__(self) -> None:
        for name in ("hidden", "n_layers", "batch_size", "policy_freq"):
            _positive(f"rl.rebrac.{name}", getattr(self, name))
        _positive("rl.rebrac.actor_lr", self.actor_lr)
        _positive("rl.rebrac.critic_lr", self.critic_lr)
        _check(self.actor_bc_coef >= 0, "rl.rebrac.actor_bc_coef", self.actor_bc_coef, ">= 0")
        _check(self.critic_bc_coef >= 0, "rl.rebrac.critic_bc_coef", self.critic_bc_coef, ">= 0")
        _check(self.policy_noise >= 0, "rl.rebrac.policy_noise", self.policy_noise, ">= 0")
        _check(self.noise_clip >= 0, "rl.rebrac.noise_clip", self.noise_clip, ">= 0")
        _check(math.isfinite(self.bc_sharpness) and self.bc_sharpness >= 0, "rl.rebrac.bc_sharpness",
               self.bc_sharpness, "a finite number >= 0")
        _in_range("rl.rebrac.discount", self.discount, 0.0, 1.0)
        _in_range("rl.rebrac.tau", self.tau, 0.0, 1.0)


@dataclass
class FilteredBCConfig:
    """TGE-filtered BC (``rl.backbone=fbc``): %BC with the episode's TGE reward as its score.

    Whole episodes of D_mu are ranked by their mean TGE reward, shrunk towards D_mu's mean
    reward with the weight of ``prior`` windows, and taken best first up to a cut; BC (the
    baseline's ``rl.bc_*`` network and optimiser) trains on them alone. See
    ``tge_ray.rl.filtered``.

    Attributes:
        fraction: the cut. ``auto`` (the default): Otsu's threshold on the episode scores,
            which cuts where the scores split into two groups and needs no knowledge of how
            much of D_mu is expert-like. A number in (0, 1]: take episodes until they hold that
            share of D_mu's transitions; it must not exceed the share of expert-like data, or
            the kept set fills up with the best of the rest (at 0.1, walker2d N = 30 kept 32%
            random transitions and failed; RESULTS.md).
        prior: weight of D_mu's mean reward in each episode's score, in windows of H
            transitions (``windows.horizon``). One window: an episode no longer than H holds
            about one window of evidence, and one of H steps is pulled halfway back to the
            mean. 0: the plain episode mean (what runs before the ``auto`` cut used).
        lr: filtered BC's learning rate (the baseline BC keeps ``rl.bc_lr``, CORL's 3e-4). The
            kept episodes are few and clean, and at 5000 updates BC on them at 3e-4 was still
            learning: walker2d scored 89 at 5000 updates and 98 at 20000, and 98 at 5000 with
            1e-3, which left hopper at 100 (RESULTS.md, "Walker2d: filtered BC was short of
            updates at 5000"). On all of D_mu the same rate helped walker2d at N = 200 and
            hurt it at N = 30, so the baseline keeps CORL's.
    """

    fraction: Literal["auto"] | float = "auto"
    prior: float = 1.0
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.fraction != "auto":
            _check(0.0 < self.fraction <= 1.0, "rl.fbc.fraction", self.fraction, "must be auto or lie in (0, 1]")
        _check(self.prior >= 0.0, "rl.fbc.prior", self.prior, "must be >= 0")
        _positive("rl.fbc.lr", self.lr)


@dataclass
class RLConfig:
    """Offline RL on the labelled transitions.

    Attributes:
        backbone: ``iql`` (default), ``rebrac``, or ``fbc`` (TGE-filtered BC: BC on the
            episodes of highest mean TGE reward) for TGE; BC and oracle-IQL are baselines
            chosen with ``methods``.
        steps: gradient updates.
        iql: IQL hyper-parameters (also used by the oracle baseline).
        rebrac: ReBRAC hyper-parameters.
        fbc: filtered BC's share of D_mu.
        bc_hidden, bc_layers, bc_lr, bc_batch_size: the MLP and optimiser of BC (the baseline
            and the ``fbc`` backbone, which has its own learning rate, ``fbc.lr``).
        bc_lr_schedule: BC's learning rate over the updates: ``constant`` (CORL's BC), or
            ``cosine``, annealed to 0 at the last update as IQL's actor is. On walker2d's
            filtered BC, cosine did worse at 5000 updates and was mixed at 20000 (RESULTS.md,
            "Walker2d: filtered BC was short of updates at 5000").
    """

    backbone: Literal["iql", "rebrac", "fbc"] = "iql"
    steps: int = 100000
    iql: IQLConfig = field(default_factory=IQLConfig)
    rebrac: ReBRACConfig = field(default_factory=ReBRACConfig)
    fbc: FilteredBCConfig = field(default_factory=FilteredBCConfig)
    bc_hidden: int = 256
    bc_layers: int = 2
    bc_lr: float = 3e-4
    bc_batch_size: int = 256
    bc_lr_schedule: Literal["constant", "cosine"] = "constant"

    def bc_rate(self, learner: str) -> float:
        """The learning rate of the BC learner ``learner``: ``fbc.lr`` for filtered BC, ``bc_lr``
        for the baseline."""
        return self.fbc.lr if learner == "fbc" else self.bc_lr

    def __post_init__(self) -> None:
        _positive("rl.steps", self.steps)
        _positive("rl.bc_hidden", self.bc_hidden)
        _positive("rl.bc_layers", self.bc_layers)
        _positive("rl.bc_lr", self.bc_lr)
        _positive("rl.bc_batch_size", self.bc_batch_size)


@dataclass
class EvaluationConfig:
    """Rollouts of the policy in the dataset's Gymnasium environment.

    Attributes:
        episodes: episodes per evaluation (run in vectorised environments).
        every: updates between evaluations (the last update is always evaluated).
        num_envs: environments stepped together.
        max_episode_steps: cap on episode length (``null`` = the environment's own).
    """

    episodes: int = 10
    every: int = 10000
    num_envs: int = 5
    max_episode_steps: int | None = None

    def __post_init__(self) -> None:
        _positive("evaluation.episodes", self.episodes)
        _positive("evaluation.every", self.every)
        _positive("evaluation.num_envs", self.num_envs)
        if self.max_episode_steps is not None:
            _positive("evaluation.max_episode_steps", self.max_episode_steps)


@dataclass
class ResourcesConfig:
    """Where and with what the stages run.

    Attributes:
        address: Ray address to join (``auto``, ``ray://...``, ``HOST:PORT``); ``null`` starts a
            local Ray with this machine's CPUs.
        num_cpus: CPUs of a locally started Ray (``null`` = all).
        train_workers: Ray Train workers for the diffusion model.
        use_gpu: ``auto`` uses GPUs when the cluster has them; ``true`` requires them.
        embed_actors: actors in the embedding pool (one GPU each when on GPU).
        reward_actors: actors in the reward pool.
        torch_threads: intra-op threads per process (``null`` = torch's default).
        stage_cpus: CPUs that each Ray Train worker, embedding actor and reward actor reserves
            (fractional allowed). Below 1 lets concurrent sweep trials' nested stages fit a
            small machine; see ``sweep.max_concurrent_trials``.
        compile: ``torch.compile`` for the two training loops, the RL learners' losses and the
            U-Net of a single Ray Train worker (several, DDP, stay eager). ``auto``: only on a
            GPU, with CUDA graphs (mode ``reduce-overhead``), which remove the kernel-launch
            overhead that bounds these small networks there (on an H200, each alone: IQL
            330 -> 760 updates/s, U-Net training at batch 256 10k -> 49k windows/s;
            ``benchmarks/gpu-h200``), and eager where the graphs cannot run (see
            ``tge_ray.accel``). ``true``: also on CPU (``default`` mode; little gain there).
            ``false`` (the default): eager everywhere. Compiling costs time first; in a whole
            ``tge run`` of the embedded default on the H200 it cost the diffusion stage about
            50 s, the RL stages still finished 1.2 to 2.3x sooner, and the run went 245 ->
            227 s. Off by default because it has run inside Ray on one GPU, not on a
            multi-GPU cluster. Results match eager up to rounding.
    """

    address: str | None = None
    num_cpus: int | None = None
    train_workers: int = 1
    use_gpu: Literal["auto", True, False] = "auto"
    embed_actors: int = 1
    reward_actors: int = 1
    torch_threads: int | None = None
    stage_cpus: float = 1.0
    compile: Literal["auto", True, False] = False

    def __post_init__(self) -> None:
        _positive("resources.stage_cpus", self.stage_cpus)
        if self.num_cpus is not None:
            _positive("resources.num_cpus", self.num_cpus)
        _positive("resources.train_workers", self.train_workers)
        _positive("resources.embed_actors", self.embed_actors)
        _positive("resources.reward_actors", self.reward_actors)
        if self.torch_threads is not None:
            _positive("resources.torch_threads", self.torch_threads)


@dataclass
class SweepConfig:
    """Ray Tune + Optuna settings of ``tge sweep`` (the search space itself lives in tune_spaces/).

    Attributes:
        num_samples: configurations drawn by Optuna.
        seeds: seeds each configuration runs over; the searcher sees their mean score.
        max_concurrent_trials: trials at once. On a Ray that ``tge sweep`` starts itself, this
            is lowered (with a note) to what the CPUs hold: a trial's process reserves
            ``cpus_per_trial`` and, while it runs a nested stage, ``resources.stage_cpus`` per
            Train worker or actor plus a quarter CPU for window gathering; trials that could not
            all get those would wait on each other forever.
        cpus_per_trial, gpus_per_trial: resources the trial's own process reserves (its RL
            updates); fractional values allowed.
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
        _positive("sweep.num_samples", self.num_samples)
        _positive("sweep.seeds", self.seeds)
        _positive("sweep.max_concurrent_trials", self.max_concurrent_trials)
        _positive("sweep.cpus_per_trial", self.cpus_per_trial)
        _check(self.gpus_per_trial >= 0, "sweep.gpus_per_trial", self.gpus_per_trial, ">= 0")
        _positive("sweep.grace_period", self.grace_period)
        _check(self.reduction_factor >= 2, "sweep.reduction_factor", self.reduction_factor, ">= 2")


METHODS = ("tge", "bc", "oracle")


@dataclass
class ExperimentConfig:
    """Everything one ``tge run`` depends on.

    Attributes:
        name: run name; ``null`` builds one from the content (task, backbone, horizon, seed).
        seed: seeds Python, NumPy, torch, environments and the searcher.
        storage: run folder root (local path or cloud URI); artifacts are cached under it.
        methods: which of ``tge``, ``bc``, ``oracle`` to run.
        task, windows, diffusion, reward, rl, evaluation, resources, sweep: stage configs.
    """

    name: str | None = None
    seed: int = 0
    storage: str = "runs"
    methods: tuple[str, ...] = METHODS
    task: TaskConfig = field(default_factory=TaskConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def __post_init__(self) -> None:
        _check(self.seed >= 0, "seed", self.seed, "must be >= 0")
        _check(
            len(self.methods) >= 1 and all(m in METHODS for m in self.methods),
            "methods",
            list(self.methods),
            f"a non-empty list drawn from {list(METHODS)}",
        )
        # Checked here because it needs two stages: the U-Net must take the horizon.
        self.diffusion.down_steps_for(self.windows.horizon)

    def run_name(self) -> str:
        """Content-built name: ``<task>__<backbone>__H<horizon>__s<seed>``."""
        if self.name:
            return self.name
        task = self.task.offline.replace("/", "-")
        return f"{task}__{self.rl.backbone}__H{self.windows.horizon}__s{self.seed}"


# ----------------------------------------------------------------------------- (de)serialisation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(tp: Any, value: Any, name: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{name}={value!r} is not allowed: expected {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping of its fields, got {value!r}")
        return _from_dict(tp, value, name)
    if origin is Literal:
        for choice in typing.get_args(tp):
            if value == choice and type(value) is type(choice):
                return value
        raise bad
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, name)
            except ConfigError:
                continue
        raise bad
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        (item,) = typing.get_args(tp)[:1]
        return tuple(_coerce(item, v, f"{name}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise TypeError(f"unsupported config annotation {tp!r} for {name}")


def _from_dict(cls: Any, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"unknown config key {dotted!r}: allowed keys here are {', '.join(names)}")
        kwargs[key] = _coerce(hints[key], value, dotted)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-YAML form of a config (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(cfg))


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Build and check an :class:`ExperimentConfig` from a nested mapping."""
    return _from_dict(ExperimentConfig, data)


def read_yaml(path: Path, what: str = "config file") -> Any:
    """Parse a YAML file; a missing file or a syntax error is one ConfigError line."""
    where = f"{what} {str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where} does not parse{at}: {problem}") from None


def _read_config_file(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of config keys")
    return data


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``a.b.c=value`` to the nested mapping ``data``; the value is parsed as YAML."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.sub=value (e.g. reward.sigma=0.5)")
    key, raw = override.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {override!r} has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Defaults, then the YAML file (if any), then dotted overrides; checked on the way."""
    data: dict[str, Any] = _read_config_file(Path(path)) if path is not None else {}
    for override in overrides:
        apply_override(data, override)
    return config_from_dict(data)


def dump_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    tmp.replace(path)


def describe_fields(cls: Any = ExperimentConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, type) rows for every leaf field; used by ``tge config``."""
    rows = []
    instance = cls()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}{f.name}"
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe_fields(type(value), dotted + "."))
        else:
            shown = list(value) if isinstance(value, tuple) else value
            rows.append((dotted, yaml.safe_dump(shown, default_flow_style=True).strip().removesuffix("..."), _type_name(hints[f.name])))
    return rows
