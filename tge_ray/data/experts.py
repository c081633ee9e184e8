"""Shipped expert and medium policies: SB3 SAC training, and loading without SB3.

Locomotion experts are trained with Stable-Baselines3 SAC (rl-zoo defaults for MuJoCo:
``MlpPolicy`` 256x256, ``learning_starts=10000``, everything else SB3's default) by one command::

    tge data train-expert hopper    # or python -m tge_ray.data.experts hopper (400k steps or 55 min)

Every ``snapshot_every`` environment steps the deterministic actor is evaluated and saved; at the
end the best snapshot (by a fresh 20-episode evaluation of the three best, :func:`pick_expert`)
becomes ``<task>_expert.pt`` and the snapshot whose return is closest to
``MEDIUM_FRACTION`` of the expert's becomes ``<task>_medium.pt`` (D4RL's "medium" is a policy
stopped part-way through the expert's training). Both are plain ``state_dict``s of
:class:`Actor` (obs -> tanh mean -> action bounds) that load with torch alone; ``<task>.json``
beside them records the command, seed, steps, wall time, returns and library versions.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from tge_ray.data import pointmaze
from tge_ray.errors import DataError

EXPERTS_DIR = Path(__file__).parent / "experts"

# task -> Gymnasium id of the locomotion tasks whose experts are trained with SAC.
LOCOMOTION_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}

# The medium policy is the snapshot whose return is closest to this fraction of the expert's.
MEDIUM_FRACTION = 0.4
# The expert is the best of the CANDIDATES snapshots with the best logged return, re-evaluated
# over SELECT_EPISODES episodes from SELECT_SEED (see pick_expert).
CANDIDATES = 3
SELECT_EPISODES = 20
SELECT_SEED = 20_000

Policy = Callable[[np.ndarray], np.ndarray]  # obs (B, obs_dim) -> actions (B, act_dim)


# ----------------------------------------------------------------------------- the shipped actor


class Actor(nn.Module):
    """Deterministic MLP actor: obs (B, obs_dim) -> low + (tanh(mean) + 1) / 2 * (high - low).

    Same layout as SB3 SAC's actor (``latent_pi`` then ``mu``), so its weights copy over as is.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], low: np.ndarray, high: np.ndarray):
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.latent = nn.Sequential(*layers)
        self.mean = nn.Linear(width, act_dim)
        self.register_buffer("action_low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("action_high", torch.as_tensor(high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        squashed = torch.tanh(self.mean(self.latent(obs)))  # (B, act_dim) in [-1, 1]
        return self.action_low + (squashed + 1.0) * 0.5 * (self.action_high - self.action_low)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> Actor:
        """Rebuild the architecture from the weight shapes, then load the weights."""
        linear = sorted(k for k in state if k.startswith("latent.") and k.endswith(".weight"))
        hidden = tuple(state[k].shape[0] for k in linear)
        obs_dim = state[linear[0]].shape[1] if linear else state["mean.weight"].shape[1]
        act_dim = state["mean.weight"].shape[0]
        actor = cls(obs_dim, act_dim, hidden, state["action_low"].numpy(), state["action_high"].numpy())
        actor.load_state_dict(state)
        return actor.eval()


def actor_from_sac(model, action_space: gym.spaces.Box) -> Actor:
    """Copy the deterministic part of an SB3 SAC actor into a standalone :class:`Actor`."""
    sb3_actor = model.policy.actor
    linears = [m for m in sb3_actor.latent_pi if isinstance(m, nn.Linear)]
    obs_dim = linears[0].in_features if linears else sb3_actor.mu.in_features
    actor = Actor(obs_dim, action_space.shape[0], tuple(m.out_features for m in linears), action_space.low, action_space.high)
    for mine, theirs in zip([m for m in actor.latent if isinstance(m, nn.Linear)], linears, strict=True):
        mine.load_state_dict(theirs.state_dict())
    actor.mean.load_state_dict(sb3_actor.mu.state_dict())
    return actor.eval()


def policy_from_actor(actor: Actor) -> Policy:
    """Wrap an actor as a NumPy batch policy: obs (B, obs_dim) -> actions (B, act_dim)."""

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    return act


def load_policy(task_or_path: str | Path, quality: str = "expert") -> Policy:
    """A task's policy (``quality`` expert or medium) or an actor file (a path) as a batch policy.

    Returns obs (B, obs_dim) -> actions (B, act_dim) (PointMaze: dict obs of (B, ...) arrays).
    Locomotion policies are the shipped SAC actors; PointMaze's are the scripted controllers of
    :mod:`tge_ray.data.pointmaze` (medium: noisy, wandering to random goals).
    """
    if str(task_or_path) in pointmaze.MAZES:
        if quality not in ("expert", "medium"):
            raise DataError(f"unknown policy quality {quality!r}: use 'expert' or 'medium'")
        if quality == "expert":
            return pointmaze.WaypointController(str(task_or_path))
        return pointmaze.WaypointController(str(task_or_path), noise_std=0.3, wander=True)
    path = Path(task_or_path)
    if str(task_or_path) in LOCOMOTION_ENVS:
        if quality not in ("expert", "medium"):
            raise DataError(f"unknown policy quality {quality!r}: use 'expert' or 'medium'")
        path = EXPERTS_DIR / f"{task_or_path}_{quality}.pt"
        if not path.is_file():
            raise DataError(
                f"no shipped {quality} policy for {task_or_path!r} ({path}): train it with "
                f"`tge data train-expert {task_or_path}`"
            )
    elif not path.is_file():
        raise DataError(
            f"expert file {str(path)!r} does not exist: give a path to an actor state_dict (.pt) "
            f"or one of the tasks {', '.join(LOCOMOTION_ENVS)}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        actor = Actor.from_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - any failure to read means the file is not an actor
        raise DataError(
            f"expert file {str(path)!r} is not a readable actor state_dict ({type(exc).__name__}): "
            f"save one with torch.save(Actor(...).state_dict(), path) or retrain it"
        ) from None
    return policy_from_actor(actor)


# ----------------------------------------------------------------------------- evaluation


def random_policy(action_space: gym.spaces.Box, seed: int) -> Policy:
    """Uniformly random actions within the bounds, from its own seeded generator (any obs)."""
    rng = np.random.default_rng(seed)
    low, high = action_space.low, action_space.high

    def act(obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        batch = len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)
        return rng.uniform(low, high, size=(batch, *low.shape)).astype(np.float32)

    return act


def evaluate(policy: Policy, env_id: str, *, episodes: int, seed: int, num_envs: int = 5, **env_kwargs) -> np.ndarray:
    """Returns (episodes,) of full episodes of ``policy`` in vectorised copies of ``env_id``.

    Each env is reset once with its own seed (``seed + i``) and then runs episode after episode;
    the first ``episodes`` finished episodes count (in order of env index at each step).
    """
    num_envs = min(num_envs, episodes)
    envs = gym.make_vec(
        env_id, num_envs, vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}, **env_kwargs,
    )
    try:
        obs, _ = envs.reset(seed=[seed + i for i in range(num_envs)])
        running = np.zeros(num_envs)
        returns: list[float] = []
        while len(returns) < episodes:
            obs, reward, terminated, truncated, _ = envs.step(policy(obs))
            running += reward
            for i in np.flatnonzero(terminated | truncated):
                returns.append(float(running[i]))
                running[i] = 0.0
        return np.asarray(returns[:episodes])
    finally:
        envs.close()


# ----------------------------------------------------------------------------- training


def _snapshot_callback(env_id: str, action_space, snapshot_dir: Path, every: int, seed: int,
                       deadline: float | None, progress_bar):
    from stable_baselines3.common.callbacks import BaseCallback

    class Snapshots(BaseCallback):
        """Evaluates and saves the actor every ``every`` steps and at the end; stops at the deadline."""

        def _snapshot(self) -> None:
            actor = actor_from_sac(self.model, action_space)
            returns = evaluate(policy_from_actor(actor), env_id, episodes=5, seed=seed + 10_000)
            torch.save(actor.state_dict(), snapshot_dir / f"step_{self.num_timesteps:08d}.pt")
            with open(snapshot_dir / "log.jsonl", "a") as log:
                log.write(json.dumps({"step": self.num_timesteps, "time": time.time(),
                                      "return": float(returns.mean())}) + "\n")
            if progress_bar is not None:
                progress_bar.set_postfix(ret=f"{returns.mean():.0f}")

        def _on_step(self) -> bool:
            if progress_bar is not None:
                progress_bar.update(1)
            if self.num_timesteps % every == 0:
                self._snapshot()
            return deadline is None or time.time() < deadline

        def _on_training_end(self) -> None:
            if self.num_timesteps % every != 0:
                self._snapshot()

    return Snapshots()


def train_expert(task: str, *, steps: int, seed: int = 0, out_dir: Path | None = None, progress: bool = True,
                 max_seconds: float | None = None, snapshot_every: int = 10_000) -> Path:
    """Train a SAC expert for ``task`` and ship expert + medium actors; returns ``<task>.json``.

    Training stops after ``steps`` env steps or ``max_seconds`` of wall time, whichever first.
    Snapshots go to a fresh scratch folder (printed, removed once shipped), so an interrupted run
    can still be shipped with :func:`ship_expert`; the snapshots' returns are kept in the json.
    """
    from stable_baselines3 import SAC
    from tqdm import tqdm

    if task not in LOCOMOTION_ENVS:
        raise DataError(f"unknown task {task!r} for SAC training: use one of {', '.join(LOCOMOTION_ENVS)}")
    if steps <= 0:
        raise DataError(f"steps={steps} must be > 0: pass a positive number of environment steps")
    env_id = LOCOMOTION_ENVS[task]
    out_dir = Path(out_dir) if out_dir is not None else EXPERTS_DIR
    # A fresh folder per run: two runs (or a test beside a long run) never share snapshots.
    snapshot_dir = Path(tempfile.mkdtemp(prefix=f"tge_expert_{task}_s{seed}_"))
    print(f"snapshots: {snapshot_dir}", file=sys.stderr)

    torch.set_num_threads(1)
    env = gym.make(env_id)
    model = SAC("MlpPolicy", env, learning_starts=10_000, seed=seed, device="cpu", verbose=0)
    started = time.time()
    deadline = started + max_seconds if max_seconds is not None and np.isfinite(max_seconds) else None
    bar = tqdm(total=steps, desc=f"SAC {task}", unit="step") if progress else None
    callback = _snapshot_callback(env_id, env.action_space, snapshot_dir, snapshot_every, seed, deadline, bar)
    try:
        model.learn(total_timesteps=steps, callback=callback)
    finally:
        if bar is not None:
            bar.close()
    env.close()
    command = f"tge data train-expert {task} --steps {steps} --seed {seed}"
    command += f" --max-seconds {max_seconds:g}" if max_seconds is not None else " --max-seconds inf"
    meta = {"command": command, "reproduce": f"tge data train-expert {task} --steps {model.num_timesteps} --seed {seed} --max-seconds inf",
            "seed": seed, "steps_requested": steps, "steps_trained": int(model.num_timesteps),
            "wall_seconds": round(time.time() - started, 1), "algorithm": "SB3 SAC (rl-zoo MuJoCo defaults)"}
    info_path = ship_expert(task, snapshot_dir, out_dir=out_dir, meta=meta)
    shutil.rmtree(snapshot_dir)  # shipped; an interrupted run keeps its snapshots for ship_expert
    return info_path


def _snapshot_state(snapshot_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return torch.load(Path(snapshot_dir) / f"step_{step:08d}.pt", weights_only=True)


def pick_expert(env_id: str, snapshot_dir: Path, log: list[dict], *, candidates: int = CANDIDATES,
                episodes: int = SELECT_EPISODES, seed: int = SELECT_SEED) -> tuple[dict, list[dict]]:
    """The expert snapshot: of the ``candidates`` best by their logged (5-episode) return, the one
    with the best mean over ``episodes`` fresh episodes (seed ``seed``, apart from the recorded
    evaluation's). Picking on five episodes alone favours a lucky snapshot of a policy that often
    falls. Returns (chosen log row, the candidates' re-evaluations).
    """
    ranked = sorted(log, key=lambda row: row["return"], reverse=True)[:candidates]
    trials = []
    for row in ranked:
        actor = Actor.from_state_dict(_snapshot_state(snapshot_dir, row["step"]))
        returns = evaluate(policy_from_actor(actor), env_id, episodes=episodes, seed=seed)
        trials.append({"step": row["step"], "return_mean": float(returns.mean()), "return_std": float(returns.std()),
                       "episodes": episodes, "eval_seed": seed})
    best = max(trials, key=lambda trial: trial["return_mean"])
    return next(row for row in ranked if row["step"] == best["step"]), trials


def ship_expert(task: str, snapshot_dir: Path, *, out_dir: Path | None = None, meta: dict | None = None,
                episodes: int = 10, seed: int = 0) -> Path:
    """Pick expert (:func:`pick_expert`) and medium snapshots, re-evaluate them, write the shipped files."""
    import stable_baselines3

    env_id = LOCOMOTION_ENVS[task]
    out_dir = Path(out_dir) if out_dir is not None else EXPERTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    log = [json.loads(line) for line in (Path(snapshot_dir) / "log.jsonl").read_text().splitlines()]
    best, trials = pick_expert(env_id, snapshot_dir, log)
    medium = min(log, key=lambda row: abs(row["return"] - MEDIUM_FRACTION * best["return"]))
    figures: dict[str, Any] = {"expert_candidates": trials}
    for quality, row in (("expert", best), ("medium", medium)):
        state = _snapshot_state(snapshot_dir, row["step"])
        returns = evaluate(policy_from_actor(Actor.from_state_dict(state)), env_id, episodes=episodes, seed=seed)
        torch.save(state, out_dir / f"{task}_{quality}.pt")
        figures[quality] = {"snapshot_step": row["step"], "return_mean": float(returns.mean()),
                            "return_std": float(returns.std()), "episodes": episodes, "eval_seed": seed}
    env = gym.make(env_id)
    random_returns = evaluate(random_policy(env.action_space, seed), env_id, episodes=episodes, seed=seed)
    env.close()
    figures["random"] = {"return_mean": float(random_returns.mean()), "return_std": float(random_returns.std()),
                         "episodes": episodes, "eval_seed": seed}
    info = {"task": task, "env_id": env_id, **(meta or {}), **figures,
            "snapshots": log, "versions": {"torch": torch.__version__, "stable_baselines3": stable_baselines3.__version__,
                                           "gymnasium": gym.__version__, "python": platform.python_version()}}
    path = out_dir / f"{task}.json"
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    """``python -m tge_ray.data.experts TASK`` (same as ``tge data train-expert TASK``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(LOCOMOTION_ENVS))
    parser.add_argument("--steps", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3300.0, help="wall-time budget ('inf': none)")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    print(train_expert(args.task, steps=args.steps, seed=args.seed, out_dir=args.out_dir,
                       max_seconds=args.max_seconds))


if __name__ == "__main__":
    main()
