"""The offline RL section of the config: IQL, ReBRAC, filtered BC and the BC baseline."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from tge_ray.config.checks import check, in_range, keyed_unless, positive, positive_values
from tge_ray.errors import ConfigError

MatmulPrecision = Literal["fp32", "bf16"]  # rl.<learner>.matmul: the hidden layers' products


@dataclass
class IQLConfig:
    """IQL (Kostrikov et al., 2021) hyper-parameters, CORL's defaults.

    ``expectile``, ``beta``, ``lr`` and ``tau`` take one value, or a list of one per RL seed
    (``rl.seeds``).

    Attributes:
        actor: ``deterministic`` (tanh MLP, squared error in the AWR loss; CORL's hopper-medium
            setting) or ``gaussian`` (CORL's default: a learned state-independent std, the
            log-likelihood in the AWR loss); both act with the tanh mean.
        expectile: tau of the asymmetric L2 value loss.
        beta: inverse temperature of advantage-weighted regression.
        max_weight: clip of exp(beta * A), so one transition cannot dominate a batch.
        hidden: MLP width.
        n_layers: hidden layers per MLP.
        lr: learning rate of actor, critics and value.
        batch_size: transitions per update.
        discount: gamma.
        tau: Polyak rate of the target critics (0.001, CORL's hopper-medium value; its default is
            0.005).
        matmul: ``fp32``, or ``bf16``: the hidden layers' matrix products in bfloat16 (as
            autocast; the output layer, parameters, gradients and optimiser stay fp32); faster
            where the hardware multiplies bfloat16 natively (README: Matmul precision).
    """

    actor: Literal["deterministic", "gaussian"] = "deterministic"
    expectile: float | tuple[float, ...] = 0.7
    beta: float | tuple[float, ...] = 3.0
    max_weight: float = 100.0
    hidden: int = 256
    n_layers: int = 2
    lr: float | tuple[float, ...] = 3e-4
    batch_size: int = 256
    discount: float = 0.99
    tau: float | tuple[float, ...] = 0.001
    matmul: MatmulPrecision = field(default="fp32", metadata=keyed_unless("fp32"))

    def __post_init__(self) -> None:
        for expectile in self.expectile if isinstance(self.expectile, tuple) else (self.expectile,):
            in_range("rl.iql.expectile", expectile, 0.0, 1.0, closed=False)
        positive_values("rl.iql.beta", self.beta)
        positive("rl.iql.max_weight", self.max_weight)
        positive("rl.iql.hidden", self.hidden)
        positive("rl.iql.n_layers", self.n_layers)
        positive_values("rl.iql.lr", self.lr)
        positive("rl.iql.batch_size", self.batch_size)
        in_range("rl.iql.discount", self.discount, 0.0, 1.0)
        for tau in self.tau if isinstance(self.tau, tuple) else (self.tau,):
            in_range("rl.iql.tau", tau, 0.0, 1.0)


@dataclass
class ReBRACConfig:
    """ReBRAC (Tarasov et al., 2023) hyper-parameters, those of CORL's hopper-medium-v2 config (its
    ``Config`` defaults differ in the two BC weights: 1.0 each), plus an adaptive BC weight.

    ``actor_lr``, ``critic_lr``, ``actor_bc_coef``, ``critic_bc_coef`` and ``tau`` take one value,
    or a list of one per RL seed (``rl.seeds``).

    Attributes:
        hidden: MLP width.
        n_layers: hidden layers (LayerNorm in the critic).
        actor_lr: actor learning rate.
        critic_lr: critic learning rate.
        batch_size: transitions per update.
        actor_bc_coef: beta_1, weight of the actor's BC term.
        critic_bc_coef: beta_2, weight of the critic's BC penalty on the next action.
        policy_noise: std of the target-policy smoothing noise.
        noise_clip: clip of that noise.
        policy_freq: critic updates per actor update.
        discount: gamma.
        tau: Polyak rate of the target networks.
        adaptive_bc: weight the actor's BC term per sample by its TGE reward,
            beta_i = beta (1 + r_i) / (1 + mean r), so expert-like transitions are imitated harder
            while the batch mean stays beta; ``false`` keeps beta fixed.
        bc_sharpness: kappa >= 0; with ``adaptive_bc``, kappa > 0 uses
            beta_i = beta exp(kappa r_i) / mean exp(kappa r) instead (0 keeps the linear rule).
        matmul: the hidden layers' products, ``fp32`` or ``bf16``, as ``rl.iql.matmul``.
    """

    hidden: int = 256
    n_layers: int = 3
    actor_lr: float | tuple[float, ...] = 1e-3
    critic_lr: float | tuple[float, ...] = 1e-3
    batch_size: int = 1024
    actor_bc_coef: float | tuple[float, ...] = 0.01
    critic_bc_coef: float | tuple[float, ...] = 0.01
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2
    discount: float = 0.99
    tau: float | tuple[float, ...] = 0.005
    adaptive_bc: bool = True
    bc_sharpness: float = 0.0
    matmul: MatmulPrecision = field(default="fp32", metadata=keyed_unless("fp32"))

    def __post_init__(self) -> None:
        for name in ("hidden", "n_layers", "batch_size", "policy_freq"):
            positive(f"rl.rebrac.{name}", getattr(self, name))
        positive_values("rl.rebrac.actor_lr", self.actor_lr)
        positive_values("rl.rebrac.critic_lr", self.critic_lr)
        for name in ("actor_bc_coef", "critic_bc_coef"):
            value = getattr(self, name)
            check(all(v >= 0 for v in (value if isinstance(value, tuple) else (value,))),
                  f"rl.rebrac.{name}", value, ">= 0 (one number, or a list of one per RL seed)")
        check(self.policy_noise >= 0, "rl.rebrac.policy_noise", self.policy_noise, ">= 0")
        check(self.noise_clip >= 0, "rl.rebrac.noise_clip", self.noise_clip, ">= 0")
        check(math.isfinite(self.bc_sharpness) and self.bc_sharpness >= 0, "rl.rebrac.bc_sharpness",
               self.bc_sharpness, "a finite number >= 0")
        in_range("rl.rebrac.discount", self.discount, 0.0, 1.0)
        for tau in self.tau if isinstance(self.tau, tuple) else (self.tau,):
            in_range("rl.rebrac.tau", tau, 0.0, 1.0)


@dataclass
class FilteredBCConfig:
    """TGE-filtered BC (``rl.backbone=fbc``): %BC with the episode's mean TGE reward as its score.

    Whole episodes of D_mu are ranked by their mean TGE reward, shrunk towards D_mu's mean with
    the weight of ``prior`` windows, and taken best first up to a cut; BC (the ``rl.bc``
    network and batch) trains on them alone. See ``tge_ray.rl.filtered`` and docs/notes/config-fields.md.

    Attributes:
        fraction: the cut: ``auto`` (Otsu's threshold on the episode scores, which needs no
            guess of how much of D_mu is expert-like) or a share of D_mu's transitions in (0, 1],
            which must stay below the expert-like share.
        prior: weight of D_mu's mean reward in an episode's score, in windows of H transitions,
            so short episodes cannot outrank long ones by chance (0: the plain episode mean).
        lr: filtered BC's learning rate; higher than the baseline's ``rl.bc.lr`` because the
            kept episodes are few and clean.
    """

    fraction: Literal["auto"] | float = "auto"
    prior: float = 1.0
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.fraction != "auto":
            check(0.0 < self.fraction <= 1.0, "rl.fbc.fraction", self.fraction, "must be auto or lie in (0, 1]")
        check(self.prior >= 0.0, "rl.fbc.prior", self.prior, "must be >= 0")
        positive("rl.fbc.lr", self.lr)


@dataclass
class BCConfig:
    """Behaviour cloning: the BC baseline, and the network and batch of TGE-filtered BC.

    Attributes:
        hidden: MLP width.
        n_layers: hidden layers.
        lr: the BC baseline's learning rate (CORL's 3e-4; one value or one per RL seed);
            filtered BC has its own, ``rl.fbc.lr``.
        batch_size: transitions per update.
        lr_schedule: ``constant`` (CORL's BC) or ``cosine`` (annealed to 0 at the last update, as
            IQL's actor).
        matmul: the hidden layers' products, ``fp32`` or ``bf16``, as ``rl.iql.matmul``.
    """

    hidden: int = 256
    n_layers: int = 2
    lr: float | tuple[float, ...] = 3e-4
    batch_size: int = 256
    lr_schedule: Literal["constant", "cosine"] = "constant"
    matmul: MatmulPrecision = field(default="fp32", metadata=keyed_unless("fp32"))

    def __post_init__(self) -> None:
        positive("rl.bc.hidden", self.hidden)
        positive("rl.bc.n_layers", self.n_layers)
        positive_values("rl.bc.lr", self.lr)
        positive("rl.bc.batch_size", self.batch_size)


# The learners' fields that may take one value per policy: a list of ``rl.seeds`` values, the
# i-th going to every method's policy of seed offset i.
PER_POLICY_FIELDS = {
    "iql": ("lr", "beta", "expectile", "tau"),
    "rebrac": ("actor_lr", "critic_lr", "actor_bc_coef", "critic_bc_coef", "tau"),
    "bc": ("lr",),
}


def policy_section(section: Any, learner: str, offset: int) -> Any:
    """``section`` (``rl.<learner>``) as the policy of RL seed offset ``offset`` trains with it: each
    per-policy field given as a list takes its ``offset``-th value; one-value fields stay as they are.

    Raises:
        ConfigError: a field holds a list with no value for ``offset``.
    """
    values = {}
    for name in PER_POLICY_FIELDS.get(learner, ()):
        value = getattr(section, name)
        if isinstance(value, tuple):
            if not 0 <= offset < len(value):
                raise ConfigError(f"rl.{learner}.{name} holds values for seed offsets 0 to {len(value) - 1}, "
                                  f"not {offset}")
            values[name] = value[offset]
    return dataclasses.replace(section, **values)


@dataclass
class RLConfig:
    """Offline RL on the labelled transitions.

    Attributes:
        backbone: TGE's learner: ``iql`` (the default; the paper's more stable one), ``rebrac``, or ``fbc``
            (TGE-filtered BC); BC and oracle-IQL are baselines chosen with ``methods``.
        steps: gradient updates per policy (``paper``: 1M, the budget of CORL, SMODICE and OTR;
            ``default``: fewer, to fit a laptop).
        seeds: RL seeds per method over the same rewards (seed, seed + 1, ...); methods that
            share a learner train with all their seeds as one batch; scores are mean ± std.
        iql: IQL hyper-parameters (also the oracle baseline's).
        rebrac: ReBRAC hyper-parameters.
        bc: BC hyper-parameters (the baseline; filtered BC's network and batch).
        fbc: filtered BC's episode choice and learning rate.
    """

    backbone: Literal["iql", "rebrac", "fbc"] = "iql"
    steps: int = 1_000_000
    seeds: int = 1
    iql: IQLConfig = field(default_factory=IQLConfig)
    rebrac: ReBRACConfig = field(default_factory=ReBRACConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    fbc: FilteredBCConfig = field(default_factory=FilteredBCConfig)

    def __post_init__(self) -> None:
        positive("rl.steps", self.steps)
        check(self.seeds >= 1, "rl.seeds", self.seeds, "must be >= 1 (RL seeds per method)")
        for section, names in PER_POLICY_FIELDS.items():
            for name in names:
                value = getattr(getattr(self, section), name)
                if isinstance(value, tuple) and len(value) != self.seeds:
                    raise ConfigError(
                        f"rl.{section}.{name} has {len(value)} values for rl.seeds={self.seeds} policies "
                        f"per method: give one value, or one per seed"
                    )
