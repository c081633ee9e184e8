"""Shipped expert and medium policies: the actor format, loading without an RL library, picking.

Experts are trained by ``tge data train-expert`` (:mod:`tge_ray.data.expert_training`). Every
``snapshot_every`` environment steps the deterministic actor is evaluated and saved; at the end of
each session the best snapshot (by a fresh 20-episode evaluation of the three best,
:func:`pick_expert`) becomes ``<name>_expert.pt`` and the snapshot whose return is closest to
``MEDIUM_FRACTION`` of the expert's, on the same fresh evaluation (:func:`pick_medium`), becomes
``<name>_medium.pt`` (D4RL's "medium" is a policy stopped part-way through the expert's
training). Both are plain ``state_dict``s of :class:`Actor` (obs -> tanh mean -> action bounds)
that load with torch alone; ``<name>.json`` beside them (the record) holds the command, seed,
steps, wall time, returns and library versions. ``<name>`` is the task (``hopper``) or, for any
other env, the env id's :func:`~tge_ray.data.envs.slug`.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from tge_ray.data import pointmaze
from tge_ray.data.envs import LOCOMOTION_ENVS, make_env, make_env_vec
from tge_ray.errors import DataError
from tge_ray.io import atomic_path

EXPERTS_DIR = Path(__file__).parent / "experts"

# The medium policy is the snapshot whose return is closest to this fraction of the expert's: of the
# MEDIUM_CANDIDATES snapshots whose logged return is closest, re-evaluated (see pick_medium).
MEDIUM_FRACTION = 0.4
MEDIUM_CANDIDATES = 5
# The expert is the best of the CANDIDATES snapshots with the best logged return, re-evaluated
# over SELECT_EPISODES episodes from SELECT_SEED (see pick_expert).
CANDIDATES = 3
SELECT_EPISODES = 20
SELECT_SEED = 20_000
# The record's returns (the datasets' reference scores): expert, medium and random policy over this
# many episodes from seed 0; a walker that falls once in ten episodes moves a ten-episode mean by 10%.
REFERENCE_EPISODES = 50

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
    """Copy the deterministic part of an SB3 SAC (or sb3-contrib TQC) actor into an :class:`Actor`."""
    sb3_actor = model.policy.actor
    linears = [m for m in sb3_actor.latent_pi if isinstance(m, nn.Linear)]
    obs_dim = linears[0].in_features if linears else sb3_actor.mu.in_features
    actor = Actor(obs_dim, action_space.shape[0], tuple(m.out_features for m in linears), action_space.low, action_space.high)
    for mine, theirs in zip([m for m in actor.latent if isinstance(m, nn.Linear)], linears, strict=True):
        mine.load_state_dict(theirs.state_dict())
    actor.mean.load_state_dict(sb3_actor.mu.state_dict())
    return actor.eval()


def actor_from_jax(model, action_space: gym.spaces.Box) -> Actor:
    """Copy the deterministic part of an SBX (JAX) SAC or TQC actor into an :class:`Actor`.

    SBX's ``SquashedGaussianActor`` is Dense layers with ReLU, then a ``mean`` and a ``log_std``
    Dense layer (``Dense_0`` .. ``Dense_{n+1}`` in Flax's naming); its deterministic action is
    tanh(mean), rescaled to the bounds by SBX as :class:`Actor` does. Flax kernels are (in, out),
    torch weights (out, in).
    """
    params = model.policy.actor_state.params["params"]
    dense = [params[f"Dense_{i}"] for i in range(len(params))]
    hidden, mean = dense[:-2], dense[-2]  # dense[-1] is log_std, unused by the deterministic actor
    obs_dim = np.asarray(dense[0]["kernel"]).shape[0]
    widths = tuple(np.asarray(layer["kernel"]).shape[1] for layer in hidden)
    actor = Actor(obs_dim, action_space.shape[0], widths, action_space.low, action_space.high)
    with torch.no_grad():
        for mine, theirs in zip([*[m for m in actor.latent if isinstance(m, nn.Linear)], actor.mean],
                                [*hidden, mean], strict=True):
            mine.weight.copy_(torch.as_tensor(np.array(theirs["kernel"]).T))
            mine.bias.copy_(torch.as_tensor(np.array(theirs["bias"])))
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
    Locomotion policies are the shipped RL actors; PointMaze's are the scripted controllers of
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
    envs = make_env_vec(
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
    trials = [_trial(env_id, snapshot_dir, row["step"], episodes, seed) for row in ranked]
    best = max(trials, key=lambda trial: trial["return_mean"])
    return next(row for row in ranked if row["step"] == best["step"]), trials


def pick_medium(env_id: str, snapshot_dir: Path, log: list[dict], target: float, *, exclude: int,
                candidates: int = MEDIUM_CANDIDATES, episodes: int = SELECT_EPISODES,
                seed: int = SELECT_SEED) -> tuple[dict, list[dict]]:
    """The medium snapshot: of the ``candidates`` snapshots (not step ``exclude``, the expert) whose
    logged (5-episode) return is closest to ``target``, the one whose mean over ``episodes`` fresh
    episodes is closest. A snapshot that falls in some of its five logged episodes can look medium
    and walk like the expert on the next twenty. Returns (chosen log row, the re-evaluations).
    """
    others = [row for row in log if row["step"] != exclude] or log  # a run of one snapshot: the expert itself
    near = sorted(others, key=lambda row: abs(row["return"] - target))
    trials = [_trial(env_id, snapshot_dir, row["step"], episodes, seed) for row in near[:candidates]]
    chosen = min(trials, key=lambda trial: abs(trial["return_mean"] - target))
    return next(row for row in near if row["step"] == chosen["step"]), trials


def _trial(env_id: str, snapshot_dir: Path, step: int, episodes: int, seed: int) -> dict[str, Any]:
    """A snapshot's returns over ``episodes`` fresh episodes from ``seed``, as a record row."""
    returns = evaluate(policy_from_actor(Actor.from_state_dict(_snapshot_state(snapshot_dir, step))), env_id,
                       episodes=episodes, seed=seed)
    return {"step": step, "return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "episodes": episodes, "eval_seed": seed}


def ship_expert(name: str, env_id: str, snapshot_dir: Path, *, out_dir: Path | None = None,
                meta: dict | None = None, versions: dict[str, str] | None = None,
                episodes: int = REFERENCE_EPISODES, seed: int = 0) -> Path:
    """Pick expert (:func:`pick_expert`) and medium snapshots, re-evaluate them, write the shipped files.

    Writes ``<name>_expert.pt``, ``<name>_medium.pt`` and the record ``<name>.json`` into
    ``out_dir`` (default: the package's experts folder), each through a temporary file renamed
    into place, the record last; returns the record's path.
    """
    out_dir = Path(out_dir) if out_dir is not None else EXPERTS_DIR
    log = [json.loads(line) for line in (Path(snapshot_dir) / "log.jsonl").read_text().splitlines()]
    best, trials = pick_expert(env_id, snapshot_dir, log)
    target = MEDIUM_FRACTION * next(trial["return_mean"] for trial in trials if trial["step"] == best["step"])
    medium, medium_trials = pick_medium(env_id, snapshot_dir, log, target, exclude=best["step"])
    figures: dict[str, Any] = {"expert_candidates": trials, "medium_target": target, "medium_candidates": medium_trials}
    states = {}
    for quality, row in (("expert", best), ("medium", medium)):
        states[quality] = _snapshot_state(snapshot_dir, row["step"])
        returns = evaluate(policy_from_actor(Actor.from_state_dict(states[quality])), env_id, episodes=episodes, seed=seed)
        figures[quality] = {"snapshot_step": row["step"], "return_mean": float(returns.mean()),
                            "return_std": float(returns.std()), "episodes": episodes, "eval_seed": seed}
    env = make_env(env_id)
    random_returns = evaluate(random_policy(env.action_space, seed), env_id, episodes=episodes, seed=seed)
    env.close()
    figures["random"] = {"return_mean": float(random_returns.mean()), "return_std": float(random_returns.std()),
                         "episodes": episodes, "eval_seed": seed}
    info = {"task": name, "env_id": env_id, **(meta or {}), **figures, "snapshots": log,
            "versions": {"torch": torch.__version__, "gymnasium": gym.__version__, **(versions or {}),
                         "python": platform.python_version()}}
    out_dir.mkdir(parents=True, exist_ok=True)
    for quality, state in states.items():
        _replace(out_dir / f"{name}_{quality}.pt", lambda handle, state=state: torch.save(state, handle))
    path = out_dir / f"{name}.json"
    _replace(path, lambda handle: handle.write((json.dumps(info, indent=2) + "\n").encode()))
    return path


def _replace(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` atomically (:func:`tge_ray.io.atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


def expert_record(expert_path: str | Path) -> dict | None:
    """The ``train-expert`` record beside an expert actor (``<name>_expert.pt`` -> ``<name>.json``).

    None when ``expert_path`` is not named ``<name>_expert.pt`` or has no readable record beside it.
    """
    path = Path(expert_path)
    if not path.name.endswith("_expert.pt"):
        return None
    try:
        record = json.loads((path.parent / f"{path.name.removesuffix('_expert.pt')}.json").read_text())
        readable = all(isinstance(record[quality]["return_mean"], int | float) for quality in ("random", "expert"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if readable and isinstance(record.get("env_id"), str) else None


def shipped_experts() -> dict[str, tuple[str, ...] | None]:
    """task -> (env, expert, medium and random return, steps, algorithm) of its record, None if not shipped."""
    rows: dict[str, tuple[str, ...] | None] = {}
    for task, env_id in LOCOMOTION_ENVS.items():
        record = expert_record(EXPERTS_DIR / f"{task}_expert.pt")
        if record is None or not (EXPERTS_DIR / f"{task}_expert.pt").is_file():
            rows[task] = None
            continue
        returns = [f"{record[q]['return_mean']:.0f} ± {record[q]['return_std']:.0f}" for q in ("expert", "medium", "random")]
        rows[task] = (env_id, *returns, str(record.get("steps_trained", "-")),
                      _library_label(str(record.get("algorithm", "-"))))
    return rows


def _library_label(algorithm: str) -> str:
    """'SBX (JAX) TQC (rl-zoo MuJoCo defaults: ...)' -> 'SBX (JAX) TQC': the record's label without its settings."""
    return algorithm.rsplit(" (", 1)[0] if algorithm.endswith(")") else algorithm
