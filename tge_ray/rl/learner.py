"""What every offline RL learner shares, and :func:`make_learner`, the one way to build one.

A learner trains in "training space": observations normalised with the dataset statistics it
was given, actions mapped into [-1, 1]. Its sampler (``make_sampler``) produces batches in that
space; ``act`` takes RAW observations and returns actions in the environment's box.

Host syncs: :meth:`Learner.train_step` returns its metrics as 0-d tensors and never waits for
the device; :meth:`Learner.update` is ``train_step`` plus one conversion to floats (a single
``.tolist()``). Training loops call ``train_step`` and convert only the steps they record
(``tge_ray.rl.train`` does every ``log_every`` steps), which matters on a GPU.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from tge_ray.config import RLConfig
from tge_ray.rl.buffer import Batch, Transitions, TransitionSampler
from tge_ray.rl.nets import TanhPolicy

METHODS = ("iql", "rebrac", "bc", "fbc")


def soft_update(target: list[torch.Tensor], online: list[torch.Tensor], tau: float) -> None:
    """Polyak averaging target <- (1 - tau) target + tau online, one foreach kernel."""
    with torch.no_grad():
        torch._foreach_lerp_(target, online, tau)


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Build modules (on CPU) from ``seed`` alone, leaving the global torch RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def make_adam(params: Any, lr: float, device: str) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch has it for ``device``, foreach otherwise."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """CosineAnnealingLR(T_max=total_steps, eta_min=0) in closed form (CORL's actor schedule)."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


class Learner:
    """Base class: normalisation statistics, action box, step counter, RNG, (de)serialisation.

    Subclasses build ``self.policy`` (a :class:`TanhPolicy`), their modules and optimisers, and
    implement :meth:`train_step`. ``_modules`` and ``_optimizers`` name what goes into the
    checkpoint.
    """

    method = "base"
    policy: TanhPolicy

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        action_low: np.ndarray,
        action_high: np.ndarray,
        obs_mean: np.ndarray,
        obs_std: np.ndarray,
        batch_size: int,
        total_steps: int,
        device: str = "cpu",
        seed: int = 0,
        compile: bool | str = False,
    ) -> None:
        self.obs_dim, self.act_dim, self.device = obs_dim, act_dim, device
        self.compile = compile
        self.batch_size, self.total_steps = batch_size, total_steps
        self.action_low = np.broadcast_to(np.asarray(action_low, np.float32), (act_dim,)).copy()
        self.action_high = np.broadcast_to(np.asarray(action_high, np.float32), (act_dim,)).copy()
        self.obs_mean = np.asarray(obs_mean, np.float32).reshape(obs_dim)
        self.obs_std = np.asarray(obs_std, np.float32).reshape(obs_dim)
        if not np.all(self.obs_std > 0):
            raise ValueError("obs_std must be > 0 everywhere (add an epsilon)")
        self.step = 0
        self.seed = seed
        # Noise during training (ReBRAC's target-policy smoothing) comes from this generator.
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed + 1)
        self._modules: dict[str, torch.nn.Module] = {}
        self._optimizers: dict[str, torch.optim.Optimizer] = {}

    # ------------------------------------------------------------------ building blocks

    def _maybe_compile(self, fn: Any) -> Any:
        """``torch.compile`` the pure loss computation (forward + its backward graph) when asked.

        Only losses are compiled: optimiser steps, schedules and the step counter stay eager, so
        no Python integer ends up guarded and nothing recompiles as training advances. A string
        is the ``torch.compile`` mode (``"reduce-overhead"`` replays CUDA graphs on a GPU).
        """
        if not self.compile:
            return fn
        return torch.compile(fn, dynamic=False, mode=self.compile if isinstance(self.compile, str) else None)

    def _make_policy(self, hidden: int, n_layers: int, **kwargs: Any) -> TanhPolicy:
        return TanhPolicy(self.obs_dim, self.act_dim, hidden, n_layers, self.obs_mean, self.obs_std,
                          self.action_low, self.action_high, **kwargs)

    def make_sampler(self, transitions: Transitions, seed: int | None = None) -> TransitionSampler:
        """Sampler of ``transitions`` in this learner's training space, on its device."""
        if transitions.obs_dim != self.obs_dim or transitions.act_dim != self.act_dim:
            raise ValueError(
                f"transitions have obs/act dims {transitions.obs_dim}/{transitions.act_dim}, "
                f"the learner {self.obs_dim}/{self.act_dim}"
            )
        return TransitionSampler(
            transitions, self.batch_size, obs_mean=self.obs_mean, obs_std=self.obs_std,
            action_low=self.action_low, action_high=self.action_high, device=self.device,
            seed=self.seed if seed is None else seed,
        )

    # ------------------------------------------------------------------ training

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update; metrics as 0-d tensors (no host sync)."""
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, float]:
        """One update; metrics as floats (one host sync)."""
        return metrics_to_floats(self.train_step(batch))

    # ------------------------------------------------------------------ acting

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions (B, act_dim) for raw observations (B, obs_dim)."""
        return self.policy.act(observations)

    def actor_state(self) -> dict[str, Any]:
        """Small CPU dict that :meth:`TanhPolicy.from_state` turns back into the policy."""
        return self.policy.state()

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "step": self.step,
            "generator": self.generator.get_state(),
            "modules": {name: module.state_dict() for name, module in self._modules.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self._optimizers.items()},
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["method"] != self.method:
            raise ValueError(f"checkpoint is for {state['method']!r}, this learner is {self.method!r}")
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])
        for name, module in self._modules.items():
            module.load_state_dict(state["modules"][name])
        for name, opt in self._optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self._load_extra_state(state.get("extra", {}))

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass


def metrics_to_floats(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Tensor metrics -> floats with a single device-to-host transfer."""
    if not metrics:
        return {}
    values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()]).tolist()
    return dict(zip(metrics.keys(), values))


def make_learner(
    method: str,
    rl_cfg: RLConfig,
    obs_dim: int,
    act_dim: int,
    action_low: np.ndarray,
    action_high: np.ndarray,
    obs_mean: np.ndarray,
    obs_std: np.ndarray,
    device: str = "cpu",
    seed: int = 0,
    *,
    reward_range: tuple[float, float] | None = None,
    compile: bool | str = False,
) -> Learner:
    """Build a learner: ``iql`` (also the oracle: pass the true rewards), ``rebrac``, or ``bc``.

    ``fbc`` (TGE-filtered BC) is the BC learner: what filters it is the data it is given
    (``tge_ray.rl.filtered.top_episodes``, applied by the pipeline).

    ``reward_range`` (min, max of the training rewards) feeds ReBRAC's adaptive BC weight;
    ``None`` assumes rewards already scaled to [0, 1] (``reward.scale=minmax``). ``compile``
    runs the loss computations through ``torch.compile`` (see ``benchmarks/rl.json`` for what
    it gains; it costs a compilation at the first updates); a string names the compile mode.
    """
    common = dict(obs_dim=obs_dim, act_dim=act_dim, action_low=action_low, action_high=action_high,
                  obs_mean=obs_mean, obs_std=obs_std, total_steps=rl_cfg.steps, device=device, seed=seed,
                  compile=compile)
    if method == "iql":
        from tge_ray.rl.iql import IQL

        return IQL(rl_cfg.iql, **common)
    if method == "rebrac":
        from tge_ray.rl.rebrac import ReBRAC

        return ReBRAC(rl_cfg.rebrac, reward_range=reward_range, **common)
    if method in ("bc", "fbc"):
        from tge_ray.rl.bc import BC

        return BC(hidden=rl_cfg.bc_hidden, n_layers=rl_cfg.bc_layers, lr=rl_cfg.bc_rate(method),
                  lr_schedule=rl_cfg.bc_lr_schedule, batch_size=rl_cfg.bc_batch_size, **common)
    raise ValueError(f"unknown learner {method!r}: use one of {', '.join(METHODS)}")
