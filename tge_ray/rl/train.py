"""Train a batch of policies in one learner, evaluating them all at once in Ray tasks on the way.

    results = train_batch("iql", policies, table, problem, cfg.evaluation,
                          env_id="Hopper-v5", env_kwargs={}, ref_min=-20.3, ref_max=3234.3,
                          checkpoint=Path(".../batch.pt"))

Steps: (1) the learner (every policy's parameters stacked, one program per update); (2)
``problem.total_steps`` updates in chunks, metrics pulled to the host only every ``log_every``
updates; (3) every ``evaluation.every`` updates the actors of all P policies go to one Ray
evaluation task (inline when Ray is not running) and a checkpoint is written; finished
evaluations are reported in step order as they come in; (4) the final policies are always
evaluated, the rest gathered, and the checkpoint marked complete.

The checkpoint (written atomically) holds the learner, every policy's evaluation history and
metrics; an unfinished one with the same policies is resumed from, so a preempted batch
continues where its last evaluation left it and ends with the same weights as an uninterrupted
one. A complete one gives its results without an update or an evaluation (a batch stopped after
its last checkpoint, before its artifacts were moved into place). :func:`train_policy` is the
one-policy form, for diagnostics and tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tge_ray.config import key_part
from tge_ray.io import torch_save
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.learner import PolicySpec, Problem, StackedLearner
from tge_ray.rl.registry import learner_entry
from tge_ray.rl.table import PolicyData, TransitionTable

if TYPE_CHECKING:
    from tge_ray.rl.evaluation import EvalResult

# Gymnasium (the evaluation's environments) is imported where a policy is evaluated, not here:
# building and timing a learner (benchmarks/gpu.sh on a GPU machine without Gymnasium, Ray or
# MuJoCo) needs torch alone, as tests/test_benchmarks.py checks.

MAX_EVALS_IN_FLIGHT = 2  # beyond this, training waits for the oldest evaluation
EVAL_SEED_OFFSET = 10_000


def evaluation_seed(seed: int, num_envs: int) -> int:
    """The first environment seed of a policy of seed ``seed``: its environment i is reset with
    ``evaluation_seed(seed, num_envs) + i``, so the environments of two seeds never share a seed.
    (It was ``seed + 10000`` before the policy key named it: seed s + 1's environment i was
    seed s's environment i + 1. Seed 0's environments are the same under both.)"""
    return EVAL_SEED_OFFSET + seed * num_envs


@dataclass
class PolicyResult:
    """What training gives back for one policy.

    Attributes:
        learner: the learner that trained it (``iql``, ``rebrac``, ``bc``).
        seed: its seed.
        score: normalised score of the final policy.
        return_mean, return_std: the final policy's returns.
        eval_history: (step, normalised score) of every evaluation, final included.
        metrics: loss metrics sampled every ``log_every`` updates, each with its ``step``.
        actor_state: the final actor (a one-policy :class:`tge_ray.rl.nets.StackedPolicy` state).
        steps: updates done in this call (0 when everything was resumed).
        seconds: wall time of the updates (evaluations run beside them).
        batch_size: policies trained together with it.
    """

    learner: str
    seed: int
    score: float
    return_mean: float
    return_std: float
    eval_history: list[tuple[int, float]] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    actor_state: dict[str, Any] | None = None
    steps: int = 0
    seconds: float = 0.0
    batch_size: int = 1

    @property
    def updates_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")


def action_box(env_id: str, env_kwargs: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """The environment's action box (low, high) as float32."""
    from tge_ray.data.envs import make_env

    env = make_env(env_id, **(env_kwargs or {}))
    try:
        space = env.action_space
        return np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
    finally:
        env.close()


def _on_cpu(tree: Any) -> Any:
    """``tree`` with its tensors on the CPU (a checkpoint is loaded onto the learner's device;
    evaluation takes CPU actors)."""
    if isinstance(tree, dict):
        return {k: _on_cpu(v) for k, v in tree.items()}
    return tree.cpu() if isinstance(tree, torch.Tensor) else tree


def _rows_digest(rows: np.ndarray | None) -> str | None:
    return None if rows is None else hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest()[:16]


def _table_digest(table: TransitionTable) -> tuple[str, tuple[str, ...]]:
    """The table's contents (every row and column) and its reward columns' names."""
    data = np.ascontiguousarray(table.data.detach().cpu().numpy())
    return hashlib.sha256(data.data).hexdigest()[:16], tuple(table.reward_names)


def _ray_running() -> bool:
    try:
        import ray

        return ray.is_initialized()
    except ImportError:  # pragma: no cover - ray is a dependency
        return False


def build_learner(
    learner: str,
    problem: Problem,
    policies: Sequence[PolicySpec],
    table: TransitionTable,
    compile: str | None = None,
) -> StackedLearner:
    """The registered learner ``learner`` over ``policies``."""
    import tge_ray.rl  # noqa: F401  (registers the learners)

    return learner_entry(learner).builder(problem, policies, table, compile=compile)


def train_batch(
    learner_name: str,
    policies: Sequence[PolicySpec],
    table: TransitionTable,
    problem: Problem,
    eval_cfg: Any,
    *,
    env_id: str,
    env_kwargs: dict[str, Any] | None,
    ref_min: float,
    ref_max: float,
    checkpoint: Path,
    progress: bool = True,
    desc: str | None = None,
    report: Callable[[list[EvalResult]], None] | None = None,
    log_every: int | None = None,
    use_ray: bool | None = None,
    eval_num_cpus: float = 1.0,
    compile: str | None = None,
) -> list[PolicyResult]:
    """Train ``policies`` together in one ``learner_name`` learner and evaluate them.

    ``report(results)`` is called once per evaluation step, in step order, with every policy's
    result (a Tune trial reports their mean for ASHA). ``use_ray=None`` evaluates in Ray tasks
    when Ray is initialised and inline otherwise. ``log_every`` defaults to steps/200 clamped to
    [1, 1000]. ``compile`` is the learner's update mode (:mod:`tge_ray.rl.learner`).
    """
    from tge_ray.rl.evaluation import EvalResult, evaluate_policies, evaluate_remote

    checkpoint = Path(checkpoint)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    use_ray = _ray_running() if use_ray is None else use_ray
    total = problem.total_steps
    log_every = log_every or int(np.clip(total // 200, 1, 1000))
    eval_every = eval_cfg.every

    # 1. the learner
    learner = build_learner(learner_name, problem, policies, table, compile)
    seeds = [spec.seed for spec in policies]
    eval_kwargs = dict(
        episodes=eval_cfg.episodes, num_envs=eval_cfg.num_envs,
        seeds=[evaluation_seed(s, eval_cfg.num_envs) for s in seeds],
        ref_min=ref_min, ref_max=ref_max, env_kwargs=dict(env_kwargs or {}),
        max_episode_steps=eval_cfg.max_episode_steps,
    )
    # everything that shapes the policies and their scores: a checkpoint is resumed, or its
    # results returned when complete, only for the very same batch
    identity = {"learner": learner_name, "seeds": seeds, "total_steps": total,
                "configs": [key_part(spec.config) for spec in policies],  # as the policies' artifact keys
                "data": [(spec.data.reward, _rows_digest(spec.data.rows)) for spec in policies],
                "table": _table_digest(table),
                "action_box": (np.asarray(problem.action_low).tolist(), np.asarray(problem.action_high).tolist()),
                "evaluation": json.dumps({"env_id": env_id, **key_part(eval_cfg), **eval_kwargs}, sort_keys=True,
                                         default=repr)}  # a string: env kwargs may hold arrays
    histories: list[list[EvalResult]] = [[] for _ in policies]
    metrics: list[list[dict[str, float]]] = [[] for _ in policies]
    unfinished: list[dict[str, Any]] = []  # evaluations in flight when the checkpoint was written
    was_complete = False
    if checkpoint.exists():
        saved = torch.load(checkpoint, map_location=learner.device, weights_only=False)
        if saved.get("identity") == identity:  # unfinished: resumed; complete: its results, no update
            was_complete = bool(saved.get("complete"))
            learner.load_state_dict(saved["learner"])
            histories = [[EvalResult(**{**r, "returns": tuple(r["returns"]), "lengths": tuple(r["lengths"])})
                          for r in policy] for policy in saved["eval_history"]]
            metrics = saved["metrics"]
            unfinished = [{"step": item["step"], "actor_state": _on_cpu(item["actor_state"])}
                          for item in saved.get("pending_evals", [])]

    pending: list[tuple[int, Any, Any]] = []  # (step, actor state, ObjectRef) in submission order
    reported = {policy[-1].step for policy in histories if policy}

    def deliver(results: list[EvalResult]) -> None:
        for history, result in zip(histories, results):
            history.append(result)
        if report is not None and results[0].step not in reported:
            report(results)
        reported.add(results[0].step)

    def collect(wait_for: int = 0) -> None:
        """Move finished evaluations into the histories in step order, waiting for the oldest
        ``wait_for`` of them."""
        import ray

        while pending:
            _, _, ref = pending[0]
            if wait_for <= 0 and not ray.wait([ref], timeout=0)[0]:
                return
            deliver(ray.get(ref))
            pending.pop(0)
            wait_for -= 1

    def evaluate(step: int, state: Any = None) -> None:
        state = learner.actor_state() if state is None else state
        if use_ray:
            ref = evaluate_remote(state, env_id, num_cpus=eval_num_cpus, step=step, **eval_kwargs)
            pending.append((step, state, ref))
            collect(wait_for=len(pending) - MAX_EVALS_IN_FLIGHT)
        else:
            deliver(evaluate_policies(state, env_id, step=step, torch_threads=torch.get_num_threads(), **eval_kwargs))

    def save(complete: bool) -> None:
        torch_save(
            {
                "identity": identity,
                "complete": complete,
                "learner": learner.state_dict(),
                "eval_history": [[dataclasses.asdict(r) for r in history] for history in histories],
                "metrics": metrics,
                "actor_state": learner.actor_state(),
                # the actors of evaluations still running: a resumed batch runs them again
                "pending_evals": [{"step": step, "actor_state": state} for step, state, _ in pending],
            },
            checkpoint,
        )

    for item in unfinished:  # evaluations a stopped batch had in flight, in step order
        evaluate(item["step"], item["actor_state"])

    # 2./3. updates in chunks up to the next log or evaluation step
    bar = None
    if progress:
        from tqdm.auto import tqdm

        label = desc or f"{learner_name} x{len(policies)}"
        bar = tqdm(total=total, initial=learner.step, desc=label, dynamic_ncols=True)
    start = time.perf_counter()
    first_step = learner.step
    while learner.step < total:
        step = learner.step
        stop = min(total, (step // log_every + 1) * log_every, (step // eval_every + 1) * eval_every)
        learner.run(stop - step)
        step = learner.step
        if step % log_every == 0 or step == total:
            rows = learner.metrics()
            for policy_metrics, row in zip(metrics, rows):
                policy_metrics.append({"step": step, **row})
            if bar is not None:
                bar.update(step - bar.n)
                means = {k: np.mean([row[k] for row in rows]) for k in rows[0]}
                bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()}, refresh=False)
        if step % eval_every == 0 and step < total:
            evaluate(step)
            save(complete=False)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()

    # 4. final evaluation, gather the rest, final checkpoint
    if not histories[0] or histories[0][-1].step != total:
        evaluate(total)
    if use_ray:
        collect(wait_for=len(pending))
    for history in histories:
        history.sort(key=lambda r: r.step)
    if not was_complete:  # not written again (a batch may have stopped on a full disk right after)
        save(complete=True)
    actors = learner.actor_state()
    from tge_ray.rl.nets import select_actor

    return [
        PolicyResult(
            learner=learner_name,
            seed=spec.seed,
            score=history[-1].score,
            return_mean=history[-1].return_mean,
            return_std=history[-1].return_std,
            eval_history=[(r.step, r.score) for r in history],
            metrics=policy_metrics,
            actor_state=select_actor(actors, [p]),
            steps=learner.step - first_step,
            seconds=seconds,
            batch_size=len(policies),
        )
        for p, (spec, history, policy_metrics) in enumerate(zip(policies, histories, metrics))
    ]


def train_policy(
    learner: str,
    cfg: Any,
    eval_cfg: Any,
    transitions: Transitions,
    *,
    steps: int,
    env_id: str,
    env_kwargs: dict[str, Any] | None,
    ref_min: float,
    ref_max: float,
    seed: int,
    checkpoint: Path,
    device: str = "cpu",
    **kwargs: Any,
) -> PolicyResult:
    """One policy of learner ``learner`` (its config object ``cfg``) on ``transitions``' rewards.

    The one-policy form of :func:`train_batch` (diagnostics, tests); ``kwargs`` go to it.
    """
    low, high = action_box(env_id, env_kwargs)
    table = TransitionTable.build(transitions, {"reward": transitions.rewards}, low, high, device)
    mean, std = transitions.observation_stats()
    spec = PolicySpec(cfg, seed, PolicyData("reward"), mean, std)
    problem = Problem(transitions.obs_dim, transitions.act_dim, low, high, steps)
    (result,) = train_batch(learner, [spec], table, problem, eval_cfg, env_id=env_id, env_kwargs=env_kwargs,
                            ref_min=ref_min, ref_max=ref_max, checkpoint=checkpoint, **kwargs)
    return result
