"""What every offline RL learner shares: P policies as one stacked program, and how it runs.

A learner holds P independent policies at once. Their parameters are stacked along a leading
axis (:mod:`tge_ray.rl.stacked`), one optimiser updates them all (:class:`~tge_ray.rl.optim.StackedAdam`),
and one update is one program: sampling every policy's batch from the shared device table
(:mod:`tge_ray.rl.table`), every loss and gradient, every optimiser step and the target updates.
Each policy has its own seed (initial weights, batch indices, noise), its own reward column and
rows, its own observation statistics, and its own values of the hyper-parameters that may differ
(:attr:`StackedLearner.per_policy`). Nothing couples the policies, so a policy trained in a batch
equals the same policy trained alone (``tests/rl/test_batch.py`` checks it).

How the update runs (``compile``):
- ``None``: eager PyTorch.
- a ``torch.compile`` mode (``default``, ...): each update phase is compiled whole (forward,
  ``torch.func.grad``, Adam, targets) into one program. On a CPU Inductor also writes the
  program's wrapper in C++ (``cpp_wrapper``): the Python wrapper's calls of about 40 kernels
  and matmuls per update cost a few percent of a small learner's update. Where compiling fails
  (no C++ compiler, an op Dynamo cannot trace), the first update warns and every phase runs
  eager from there.
- ``cuda-graph``: on a GPU, a cycle of updates is captured once as a CUDA graph and replayed
  (several updates per replay); the step counter and every random number live on the device,
  so a replay never synchronises with the host. The graph holds the eager update's kernels
  (about 370 for IQL, 530 for ReBRAC, 180 for BC, counted as the leaf ATen ops of one CPU update).
- ``compiled-cuda-graph``: the same capture of the ``torch.compile`` program (``default`` mode), whose
  fused kernels make a graph of far fewer nodes. A compile that fails falls back to
  ``cuda-graph``. Not what ``resources.compile`` picks until a device has measured it
  (``benchmarks/gpu.sh`` times both).
The host reads metrics only when asked (:meth:`StackedLearner.metrics`), every ``log_every``
updates in the training loop.

Subclasses set ``name``, build their parameters, optimisers and targets in ``_build`` and
implement ``_update(phase)``; ``cycle`` is the number of distinct phases (ReBRAC's actor updates
every ``policy_freq`` critic updates).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from tge_ray.rl.optim import StackedAdam
from tge_ray.rl.stacked import MLPShape
from tge_ray.rl.table import PolicyData, TransitionTable

log = logging.getLogger(__name__)

GRAPHED_MODES = ("cuda-graph", "compiled-cuda-graph")  # update modes that replay a captured CUDA graph


@dataclass(frozen=True)
class Problem:
    """The task every policy of a learner shares: dimensions, action box, budget."""

    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    total_steps: int


@dataclass(frozen=True)
class PolicySpec:
    """One policy of a batch.

    Attributes:
        config: its learner's config object (``IQLConfig``, ...), every field a single value.
            Policies of one batch may differ only in the learner's ``per_policy`` fields. This
            object is what the learner consumes, and what the policy's artifact key is made of.
        seed: its seed: initial weights, batch indices, noise.
        data: its reward column and rows of the shared table.
        obs_mean, obs_std: statistics it normalises observations with (those of its rows).
    """

    config: Any
    seed: int
    data: PolicyData
    obs_mean: np.ndarray
    obs_std: np.ndarray


class StackedLearner:
    """Base class; see the module docstring."""

    name: ClassVar[str] = "base"
    per_policy: ClassVar[tuple[str, ...]] = ()  # config fields that may differ between policies
    cycle: ClassVar[int] = 1

    def __init__(
        self,
        problem: Problem,
        policies: Sequence[PolicySpec],
        table: TransitionTable,
        *,
        compile: str | None = None,
    ) -> None:
        if not policies:
            raise ValueError("a learner needs at least one policy")
        self.cfg = policies[0].config  # the shared fields; per-policy ones are read per spec
        for spec in policies[1:]:
            for f in dataclasses.fields(self.cfg):
                if f.name not in self.per_policy and getattr(spec.config, f.name) != getattr(self.cfg, f.name):
                    raise ValueError(f"{self.name}: policies of one batch differ in {f.name!r}, which they must "
                                     f"share (per-policy fields: {', '.join(self.per_policy) or 'none'})")
        self.problem, self.policies = problem, list(policies)
        self.n_policies = len(self.policies)
        self.device = table.device
        self.batch_size = self.cfg.batch_size
        self.seeds = torch.tensor([spec.seed for spec in self.policies], dtype=torch.int64, device=self.device)
        self.view = table.view([spec.data for spec in self.policies], self.batch_size,
                               [(spec.obs_mean, spec.obs_std) for spec in self.policies])
        self.step = 0  # updates done (host copy, advanced by run())
        self.step_tensor = torch.zeros((), dtype=torch.int64, device=self.device)  # the same, on the device
        self.params: dict[str, torch.Tensor] = {}
        self.targets: dict[str, torch.Tensor] = {}
        self.optimizers: dict[str, StackedAdam] = {}
        self._metrics: dict[str, torch.Tensor] = {}
        self._build()
        self.compile = compile
        self._phases = self._make_phases(compile)

    # ------------------------------------------------------------------ building blocks

    def _build(self) -> None:
        raise NotImplementedError

    def _update(self, phase: int) -> dict[str, torch.Tensor]:
        """One update of every policy (phase = step % cycle); returns (P,) metric tensors."""
        raise NotImplementedError

    def hyper(self, name: str) -> torch.Tensor:
        """(P, 1) float32: each policy's value of hyper-parameter ``name``."""
        values = [float(getattr(spec.config, name)) for spec in self.policies]
        return torch.tensor(values, dtype=torch.float32, device=self.device).view(-1, 1)

    def generators(self, salt: int = 0) -> list[torch.Generator]:
        """One CPU generator per policy, from its seed alone (initial weights)."""
        return [torch.Generator().manual_seed(int(spec.seed) * 1_000_003 + salt) for spec in self.policies]

    def _to_device(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: value.to(self.device) for name, value in params.items()}

    # ------------------------------------------------------------------ running

    def _make_phases(self, compile: str | None) -> list[Callable[[], dict[str, torch.Tensor]]]:
        phases = [lambda phase=phase: self._update(phase) for phase in range(self.cycle)]
        if compile in (None, "cuda-graph"):
            return phases  # CUDA graphs are captured at the first run() (they need a warm-up)
        from torch._inductor import list_mode_options

        # compiled-cuda-graph: Inductor's default program, captured by _ensure_graph itself
        options = dict(list_mode_options("default" if compile == "compiled-cuda-graph" else compile))
        if torch.device(self.device).type == "cpu":
            options["cpp_wrapper"] = True
        # The table's row count (and a filtered policy's) is the one shape that changes from one
        # dataset to the next; left symbolic, it keeps out of the program, so Inductor's on-disk
        # cache serves a learner of the same config on any dataset without compiling again.
        torch._dynamo.mark_dynamic(self.view.table.data, 0)
        if self.view.rows is not None:
            torch._dynamo.mark_dynamic(self.view.rows, 0)
        compiled = [torch.compile(phase, fullgraph=True, dynamic=False, options=options) for phase in phases]
        return [self._first_compiled_call(phase, program) for phase, program in enumerate(compiled)]

    def _first_compiled_call(self, phase: int, program: Callable[[], dict[str, torch.Tensor]]
                             ) -> Callable[[], dict[str, torch.Tensor]]:
        """``program`` for ``phase``, but its first call falls back to eager when compiling
        fails: the compiler (``BackendCompilerFailed``: no C++ compiler, missing headers) or
        Dynamo (an op another torch release cannot trace, or its recompile limit reached by the
        programs this process compiled before). All fail before the program runs, so no state has
        changed; every phase then runs eager, and one warning says why."""

        def first_call() -> dict[str, torch.Tensor]:
            try:
                metrics = program()
            except (torch._dynamo.exc.TorchDynamoException, torch._dynamo.exc.FailOnRecompileLimitHit) as exc:
                if isinstance(exc, torch._dynamo.exc.FailOnRecompileLimitHit):
                    # every learner's phases share one code object, which Dynamo compiles at most
                    # recompile_limit times a process: one program per learner config and shape
                    limit = torch._dynamo.config.recompile_limit
                    reason = f"this process compiled Dynamo's limit of {limit} learner programs"
                    fix = "Train fewer learner configs in one process, or raise torch._dynamo.config.recompile_limit"
                else:
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    fix = ("Install a C++ compiler (g++) to compile, or set resources.compile=false"
                           if isinstance(exc, torch._dynamo.exc.BackendCompilerFailed)
                           else "Set resources.compile=false to skip the attempt")
                log.warning("%s: torch.compile failed (%s); running eager. %s", self.name, reason, fix)
                self.compile = "cuda-graph" if self.compile == "compiled-cuda-graph" else None
                self._phases = self._make_phases(None)
                return self._phases[phase]()
            self._phases[phase] = program
            return metrics

        return first_call

    def run(self, updates: int) -> None:
        """``updates`` more updates of every policy; never waits for the device."""
        if self.compile in GRAPHED_MODES:
            self._run_graphed(updates)
            return
        for _ in range(updates):
            self._metrics = self._phases[self.step % self.cycle]()
            self.step += 1

    def metrics(self) -> list[dict[str, float]]:
        """The last update's metrics, one dict per policy (one host transfer)."""
        if not self._metrics:
            return [{} for _ in self.policies]
        names = list(self._metrics)
        values = torch.stack([self._metrics[k].detach().float().reshape(-1) for k in names]).cpu().numpy()
        return [{k: float(values[i, p]) for i, k in enumerate(names)} for p in range(self.n_policies)]

    # ------------------------------------------------------------------ CUDA graphs

    _graph: Any = None
    _graph_metrics: dict[str, torch.Tensor] | None = None
    UPDATES_PER_REPLAY = 8  # rounded up to a multiple of ``cycle``

    def _run_graphed(self, updates: int) -> None:
        per_replay = -(-self.UPDATES_PER_REPLAY // self.cycle) * self.cycle
        done = 0
        while done < updates:
            aligned = self.step % self.cycle == 0
            if aligned and updates - done >= per_replay and self._ensure_graph(per_replay):
                self._graph.replay()
                self._metrics = self._graph_metrics
                self.step += per_replay
                done += per_replay
                continue
            self._metrics = self._phases[self.step % self.cycle]()
            self.step += 1
            done += 1

    def _ensure_graph(self, per_replay: int) -> bool:
        """Capture ``per_replay`` updates as one CUDA graph (once); False where that fails."""
        if self._graph is False:  # a capture failed before: run update by update
            return False
        if self._graph is not None:
            return True
        snapshot = self.state_dict()  # warm-up and capture run real updates: undo them after
        try:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for phase in range(self.cycle):  # warm-up on a side stream, as capture requires
                    self._phases[phase]()  # (a compiled phase compiles here, not in the capture)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for offset in range(per_replay):
                    metrics = self._phases[offset % self.cycle]()
            self._graph, self._graph_metrics = graph, metrics
        except Exception as exc:  # noqa: BLE001 - any capture failure means: stay eager
            log.warning("%s: CUDA graph capture failed (%s); running %s", self.name, exc,
                        "eager" if self.compile == "cuda-graph" else "the compiled update without a graph")
            self._graph = False
        self.load_state_dict(snapshot)
        return self._graph is not False

    # ------------------------------------------------------------------ acting

    def actor_params(self) -> tuple[MLPShape, dict[str, torch.Tensor]]:
        """The actor's shape and its stacked parameters (``actor.w0`` ...), for evaluation."""
        raise NotImplementedError

    def actor_state(self, policies: Sequence[int] | None = None) -> dict[str, Any]:
        """Small CPU description of the chosen policies' actors (all by default) that
        :class:`tge_ray.rl.nets.StackedPolicy` rebuilds; evaluation runs from it."""
        chosen = list(range(self.n_policies)) if policies is None else list(policies)
        shape, params = self.actor_params()
        index = torch.tensor(chosen, device=self.device)
        low = np.broadcast_to(np.asarray(self.problem.action_low, np.float32), (self.problem.act_dim,))
        high = np.broadcast_to(np.asarray(self.problem.action_high, np.float32), (self.problem.act_dim,))
        return {
            "shape": dataclasses.asdict(shape),
            "params": {k: v.detach().index_select(0, index).cpu().clone() for k, v in params.items()},
            "obs_mean": self.view.obs_mean.index_select(0, index).squeeze(1).cpu().clone(),
            "obs_std": self.view.obs_std.index_select(0, index).squeeze(1).cpu().clone(),
            "action_low": torch.from_numpy(low.copy()),
            "action_high": torch.from_numpy(high.copy()),
        }

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed learner needs: parameters, targets, optimisers, step (the random
        numbers are a function of the step)."""
        return {
            "learner": self.name,
            "step": self.step,
            "seeds": self.seeds.cpu().tolist(),
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "targets": {k: v.detach().clone() for k, v in self.targets.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "metrics": {k: v.detach().clone() for k, v in self._metrics.items()},
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["learner"] != self.name:
            raise ValueError(f"checkpoint is for {state['learner']!r}, this learner is {self.name!r}")
        if state["seeds"] != self.seeds.cpu().tolist():
            raise ValueError(f"checkpoint holds policies with seeds {state['seeds']}, this learner "
                             f"{self.seeds.cpu().tolist()}")
        with torch.no_grad():
            for group, saved in ((self.params, state["params"]), (self.targets, state["targets"])):
                for name, value in group.items():
                    value.copy_(saved[name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.step = int(state["step"])
        self.step_tensor.fill_(self.step)
        self._metrics = {k: v.to(self.device) for k, v in state.get("metrics", {}).items()}
        self._load_extra_state(state.get("extra", {}))

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass


def polyak_(targets: Sequence[torch.Tensor], online: Sequence[torch.Tensor], tau: torch.Tensor) -> None:
    """target <- (1 - tau) target + tau online, tau (M, 1, 1) per member."""
    with torch.no_grad():
        for target, source in zip(targets, online):
            target.lerp_(source, tau)
