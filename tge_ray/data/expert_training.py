"""``tge data train-expert``: an RL expert for any continuous-control Gymnasium env, resumable.

    tge data train-expert hopper                      # a task (hopper, halfcheetah, walker2d, ant)
    tge data train-expert --env Swimmer-v5 --algo sbx-sac

The learner is an off-policy algorithm of a well-kept library, chosen with ``--algo``
(:mod:`tge_ray.data.expert_algos`): SB3 SAC, sb3-contrib TQC, or their JAX ports in SBX. Every ``snapshot_every`` steps the deterministic actor is exported
to :class:`~tge_ray.data.experts.Actor`, evaluated on 5 episodes and saved, and the training is
checkpointed; at the end of each session :func:`~tge_ray.data.experts.ship_expert` picks the
expert and medium snapshots and writes ``<name>_expert.pt``, ``<name>_medium.pt`` and
``<name>.json`` into ``--out``.

Sessions and resume. A session ends at ``--steps`` (the total over all sessions) or after
``--max-seconds`` of wall time. The run folder (``--run-dir``, by default
``$TGE_CACHE_DIR/expert_runs/<name>-<algo>-s<seed>``, outside the work tree so that a new checkout
keeps it) holds the snapshots, their log and the last checkpoint; while the training is
unfinished, the same command continues it from the last checkpoint, and a finished training's
folder is removed once shipped. A checkpoint restores the weights of actor, critics and target
critics, the optimisers' states, the entropy coefficient and its optimiser, the step and update
counters, and the replay buffer (its filled rows, saved as they are added). It does not restore
the random number generators (reseeded with ``seed + step``) nor the environment's state (the
episode running at the checkpoint is cut: the env is reset), so a resumed training is not
bitwise the uninterrupted one.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from tge_ray.data.envs import LOCOMOTION_ENVS, check_env, expert_name
from tge_ray.data.expert_algos import (
    ALGOS,
    DEFAULT_ALGO,
    DEFAULT_MAX_SECONDS,
    DEFAULT_STEPS,
    LEARNING_STARTS,
    SNAPSHOT_EVERY,
    Algo,
)
from tge_ray.data.experts import (
    Actor,
    actor_from_jax,
    actor_from_sac,
    evaluate,
    policy_from_actor,
    ship_expert,
)
from tge_ray.data.minari_io import cache_path
from tge_ray.errors import DataError
from tge_ray.io import write_text

RUN_FORMAT = 1  # run.json's layout version
EXPORTS = {"torch": actor_from_sac, "jax": actor_from_jax}  # Algo.actor -> exporter


def default_run_dir(name: str, algo: str, seed: int) -> Path:
    """Where a training's snapshots and checkpoint live unless ``--run-dir`` says otherwise."""
    return cache_path() / "expert_runs" / f"{name}-{algo}-s{seed}"


def resolve_target(task: str | None, env_id: str | None) -> tuple[str, str]:
    """(name, env id) from a task name or an env id (exactly one of them)."""
    if (task is None) == (env_id is None):
        raise DataError("give a task (hopper, halfcheetah, walker2d, ant) or --env ENV_ID, not both or neither")
    if task is not None:
        if task not in LOCOMOTION_ENVS:
            raise DataError(f"unknown task {task!r} for expert training: use one of {', '.join(LOCOMOTION_ENVS)} "
                            f"or --env ENV_ID for any continuous-control Gymnasium env")
        return task, LOCOMOTION_ENVS[task]
    return expert_name(env_id), env_id


# ----------------------------------------------------------------------------- the run folder


@dataclass(frozen=True)
class RunSpec:
    """What a run folder was started with (``run.json``); a resume must match it."""

    format: int
    name: str
    env_id: str
    algo: str
    seed: int
    learning_starts: int


BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


class RunFolder:
    """A training's folder: ``run.json``, ``log.jsonl``, ``step_*.pt`` and ``checkpoint/``.

    ``checkpoint/`` holds ``model-<step>.zip`` (the library's own save), ``buffer/rows-<a>-<b>.npz``
    (replay-buffer rows a..b-1 in the order they were added, each written once) and ``state.json``,
    written last: the commit point. Anything newer than ``state.json`` says is left-over from a
    session that was killed and is dropped on resume.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoint"
        self.rows = self.checkpoints / "buffer"

    # -- opening

    def open(self, spec: RunSpec) -> dict[str, Any] | None:
        """Check the folder against ``spec``; returns the last checkpoint's state (None: start afresh).

        Nothing is written here; a folder of another env, algorithm or seed is refused.
        """
        run_file = self.path / "run.json"
        if not run_file.is_file():
            if self.path.exists() and any(self.path.iterdir()):
                raise DataError(f"run folder {self.path} is not empty and holds no run.json: give --run-dir a new "
                                f"or empty folder")
            return None
        try:
            started = RunSpec(**json.loads(run_file.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"run folder {self.path} has an unreadable run.json ({type(exc).__name__}): remove the "
                            f"folder to start afresh, or give another --run-dir") from None
        for field, what in (("env_id", "env"), ("algo", "--algo"), ("seed", "--seed")):
            if getattr(started, field) != getattr(spec, field):
                raise DataError(f"run folder {self.path} belongs to a training with {what} {getattr(started, field)}, "
                                f"not {getattr(spec, field)}: give another --run-dir (or the same {what} to resume it)")
        state_file = self.checkpoints / "state.json"
        return json.loads(state_file.read_text()) if state_file.is_file() else None

    def start(self, spec: RunSpec) -> None:
        """Begin afresh: ``run.json``, and nothing left of a session killed before its first checkpoint."""
        self.path.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        for path in [self.path / "log.jsonl", *self.path.glob("step_*.pt")]:
            path.unlink(missing_ok=True)
        _write_json(self.path / "run.json", asdict(spec))

    def drop_after(self, step: int) -> None:
        """Forget snapshots, log rows, models and buffer rows newer than the checkpoint at ``step``."""
        log = self.log()
        (self.path / "log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in log if row["step"] <= step))
        for path in self.path.glob("step_*.pt"):
            if int(path.stem.split("_")[1]) > step:
                path.unlink()
        for path in self.checkpoints.glob("model-*.zip"):
            if int(path.stem.split("-")[1]) != step:
                path.unlink()

    def log(self) -> list[dict[str, Any]]:
        path = self.path / "log.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []

    # -- saving

    def snapshot(self, actor: Actor, step: int, mean_return: float) -> None:
        torch.save(actor.state_dict(), self.path / f"step_{step:08d}.pt")
        with open(self.path / "log.jsonl", "a") as log:
            log.write(json.dumps({"step": step, "time": time.time(), "return": mean_return}) + "\n")

    def checkpoint(self, model: Any, step: int, state: dict[str, Any]) -> dict[str, Any]:
        """Save model and new buffer rows, then commit; returns the new state."""
        self.rows.mkdir(parents=True, exist_ok=True)
        buffer = model.replay_buffer
        inserted = state["buffer_rows"] + (buffer.pos - state["buffer_pos"]) % buffer.buffer_size
        if inserted > state["buffer_rows"]:
            ring = np.arange(state["buffer_rows"], inserted) % buffer.buffer_size
            arrays = {name: getattr(buffer, name)[ring] for name in BUFFER_ARRAYS if getattr(buffer, name, None) is not None}
            target = self.rows / f"rows-{state['buffer_rows']:010d}-{inserted:010d}.npz"
            tmp = target.with_name(f".{target.name}.partial")
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
            tmp.replace(target)
        model_path = self.checkpoints / f"model-{step:010d}.zip"
        model.save(model_path)
        new = {**state, "step": step, "buffer_rows": int(inserted), "buffer_pos": int(buffer.pos),
               "buffer_full": bool(buffer.full)}
        _write_json(self.checkpoints / "state.json", new)
        for path in self.checkpoints.glob("model-*.zip"):
            if path != model_path:
                path.unlink()
        for path in self.rows.glob("rows-*.npz"):  # rows the ring has overwritten since
            if int(path.stem.split("-")[2]) <= inserted - buffer.buffer_size:
                path.unlink()
        return new

    # -- restoring

    def restore(self, algo: Algo, env: gym.Env, state: dict[str, Any]) -> Any:
        """The model of the checkpoint ``state`` with its replay buffer refilled."""
        self.drop_after(state["step"])
        model = algo.load().load(self.checkpoints / f"model-{state['step']:010d}.zip", env=env, device="cpu")
        buffer = model.replay_buffer
        for path in sorted(self.rows.glob("rows-*.npz")):
            first, last = (int(part) for part in path.stem.split("-")[1:])
            if last > state["buffer_rows"]:
                path.unlink()  # written after the last commit
                continue
            ring = np.arange(first, last) % buffer.buffer_size
            with np.load(path) as rows:
                for name in rows.files:
                    target = getattr(buffer, name)
                    if rows[name].shape[1:] != target.shape[1:]:
                        raise DataError(f"replay-buffer rows {path} do not fit {env.spec.id}'s buffer: remove "
                                        f"{self.path} to start afresh")
                    target[ring] = rows[name]
        buffer.pos, buffer.full = state["buffer_pos"], state["buffer_full"]
        if model.num_timesteps != state["step"]:
            raise DataError(f"checkpoint of {self.path} is at step {model.num_timesteps}, its state says "
                            f"{state['step']}: remove the folder to start afresh")
        return model


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


# ----------------------------------------------------------------------------- training


def _callback(run: RunFolder, algo: Algo, env_id: str, action_space: gym.spaces.Box, *, every: int, seed: int,
              started: float, deadline: float | None, stop_at: int | None, state: dict[str, Any], bar: Any):
    from stable_baselines3.common.callbacks import BaseCallback

    class Snapshots(BaseCallback):
        """Snapshot and checkpoint every ``every`` steps and at the end; stop at the deadline."""

        state: dict[str, Any]

        def _snapshot(self) -> None:
            actor = EXPORTS[algo.actor](self.model, action_space)
            returns = evaluate(policy_from_actor(actor), env_id, episodes=5, seed=seed + 10_000)
            run.snapshot(actor, self.num_timesteps, float(returns.mean()))
            *earlier, session = self.state["sessions"]
            session = {**session, "to_step": self.num_timesteps, "wall_seconds": round(time.time() - started, 1)}
            self.state = run.checkpoint(self.model, self.num_timesteps, {**self.state, "sessions": [*earlier, session]})
            if bar is not None:
                bar.set_postfix(ret=f"{returns.mean():.0f}")

        def _on_step(self) -> bool:
            if bar is not None:
                bar.update(1)
            if self.num_timesteps % every == 0:
                self._snapshot()
            out_of_time = deadline is not None and time.time() >= deadline
            return not out_of_time and (stop_at is None or self.num_timesteps < stop_at)

        def _on_training_end(self) -> None:
            if self.state["step"] != self.num_timesteps:
                self._snapshot()

    callback = Snapshots()
    callback.state = state
    return callback


def train_expert(task: str | None = None, *, env_id: str | None = None, algo: str = DEFAULT_ALGO,
                 steps: int = DEFAULT_STEPS, seed: int = 0, out_dir: Path | None = None, run_dir: Path | None = None,
                 max_seconds: float | None = DEFAULT_MAX_SECONDS, snapshot_every: int = SNAPSHOT_EVERY,
                 learning_starts: int = LEARNING_STARTS, stop_at: int | None = None, progress: bool = True) -> Path:
    """Train (or resume) an expert for ``task`` or ``env_id`` and ship it; returns the record's path.

    ``steps``: total environment steps over all sessions; ``max_seconds``: this session's wall
    time (None or inf: no limit); ``stop_at``: end this session at that step (tests, schedules).
    Every session ships the best snapshots so far; the run folder stays until ``steps`` are done.
    """
    name, env_id = resolve_target(task, env_id)
    if algo not in ALGOS:
        raise DataError(f"unknown --algo {algo!r}: use one of {', '.join(ALGOS)}")
    if steps <= 0:
        raise DataError(f"steps={steps} must be > 0: pass a positive number of environment steps")
    if not 0 < snapshot_every < 1_000_000:
        raise DataError(f"snapshot_every={snapshot_every} must be in 1..999999 (below the replay buffer's size)")
    learner = ALGOS[algo]
    learner.load()  # a missing library is one line before anything else happens
    env = check_env(env_id)
    spec = RunSpec(RUN_FORMAT, name, env_id, algo, seed, learning_starts)
    run = RunFolder(run_dir if run_dir is not None else default_run_dir(name, algo, seed))
    state = run.open(spec)
    started = time.time()
    deadline = started + max_seconds if max_seconds is not None and math.isfinite(max_seconds) else None

    if learner.actor == "torch":
        torch.set_num_threads(1)
    if state is None:
        run.start(spec)
        model = learner.load()("MlpPolicy", env, learning_starts=learning_starts, seed=seed, device="cpu", verbose=0)
        state = {"step": 0, "buffer_rows": 0, "buffer_pos": 0, "buffer_full": False, "sessions": []}
        print(f"training {name} ({env_id}) with {learner.label}; run folder {run.path}", file=sys.stderr)
    else:
        model = run.restore(learner, env, state)
        model.set_random_seed(seed + state["step"])
        model._last_obs = None  # reset the env: its state at the checkpoint is not saved
        print(f"resuming {name} ({env_id}) with {learner.label} at step {state['step']} from {run.path}",
              file=sys.stderr)
    session = {"from_step": state["step"], "to_step": state["step"], "wall_seconds": 0.0,
               "max_seconds": None if deadline is None else max_seconds}
    state = {**state, "sessions": [*state["sessions"], session]}

    from tqdm import tqdm

    bar = tqdm(total=steps, initial=state["step"], desc=f"{algo} {name}", unit="step") if progress else None
    callback = _callback(run, learner, env_id, env.action_space, every=snapshot_every, seed=seed,
                         started=started, deadline=deadline, stop_at=stop_at, state=state, bar=bar)
    try:
        if steps > state["step"]:
            model.learn(total_timesteps=steps - state["step"], callback=callback, reset_num_timesteps=state["step"] == 0)
    finally:
        if bar is not None:
            bar.close()
        env.close()
    state = callback.state
    if not run.log():
        raise DataError(f"no snapshot in {run.path}: train for at least one step (steps={steps})")
    finished = state["step"] >= steps
    info_path = ship_expert(name, env_id, run.path, out_dir=out_dir, versions=learner.versions(),
                            meta=_record(spec, task, steps, state, finished, run.path))
    if finished:
        shutil.rmtree(run.path)  # shipped; an unfinished run keeps its folder for the next session
    else:
        print(f"unfinished: {state['step']} of {steps} steps; run the same command again to continue from "
              f"{run.path}", file=sys.stderr)
    return info_path


def _record(spec: RunSpec, task: str | None, steps: int, state: dict[str, Any], finished: bool,
            run_path: Path) -> dict[str, Any]:
    """The record's training fields: commands, steps, sessions and wall time (through the last checkpoint)."""
    target = spec.name if task is not None else f"--env {spec.env_id}"
    sessions = state["sessions"]
    return {
        "command": f"tge data train-expert {target} --algo {spec.algo} --steps {steps} --seed {spec.seed}",
        "reproduce": f"tge data train-expert {target} --algo {spec.algo} --steps {state['step']} --seed {spec.seed} "
                     f"--max-seconds inf",
        "seed": spec.seed, "steps_requested": steps, "steps_trained": int(state["step"]), "finished": finished,
        "run_dir": None if finished else str(run_path),
        "wall_seconds": round(sum(s["wall_seconds"] for s in sessions), 1), "sessions": sessions,
        "algo": spec.algo,
        "algorithm": f"{ALGOS[spec.algo].label} (rl-zoo MuJoCo defaults: MlpPolicy 256x256, learning_starts "
                     f"{spec.learning_starts})",
    }
