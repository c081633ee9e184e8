"""`tge data train-expert`: each --algo's actor export, checkpoint and resume, `tge data make` on its
output, and bad input (tiny budgets on Pendulum-v1, whose episodes are 200 cheap steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch

from tge_ray.cli import main
from tge_ray.data import experts, make
from tge_ray.data.expert_algos import ALGOS
from tge_ray.data.expert_training import (
    EXPORTS,
    RUN_FORMAT,
    RunFolder,
    RunSpec,
    default_run_dir,
    train_expert,
)
from tge_ray.errors import DataError


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    """Default run folders and datasets go under tmp_path, never ~/.cache or ~/.minari; one torch
    thread, as train-expert itself runs (two threads on a busy 2-core machine slow SAC's updates 20x)."""
    monkeypatch.setenv("TGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def export_gap(algo: str) -> tuple[float, float]:
    """(largest |action|, largest |exported actor's action - the library's own deterministic action|)
    of a freshly built learner on Pendulum-v1 (actions in [-2, 2]: the rescaling is checked too)."""
    env = gym.make("Pendulum-v1")
    model = ALGOS[algo].load()("MlpPolicy", env, seed=0, device="cpu")
    actor = EXPORTS[ALGOS[algo].actor](model, env.action_space)
    obs = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    theirs, _ = model.predict(obs, deterministic=True)
    ours = experts.policy_from_actor(experts.Actor.from_state_dict(actor.state_dict()))(obs)
    return float(np.abs(theirs).max()), float(np.abs(ours - theirs).max())


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_each_algo_exports_the_libraries_own_deterministic_action(algo):
    if ALGOS[algo].actor == "jax":  # in its own process: JAX's threads must not meet later tests' forks
        root = Path(__file__).resolve().parents[2]
        done = subprocess.run([sys.executable, "-c", f"from tests.data.test_expert_training import export_gap; "
                               f"print(*export_gap({algo!r}))"], cwd=root, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
        assert done.returncode == 0, done.stderr[-2000:]
        largest, gap = (float(x) for x in done.stdout.split()[-2:])
    else:
        largest, gap = export_gap(algo)
    assert largest > 0.01 and gap < 1e-5


def _equal(first, second) -> bool:
    """Nested dicts/lists of tensors and numbers, compared exactly."""
    if isinstance(first, dict):
        return first.keys() == second.keys() and all(_equal(first[k], second[k]) for k in first)
    if isinstance(first, list | tuple):
        return len(first) == len(second) and all(_equal(a, b) for a, b in zip(first, second))
    if isinstance(first, torch.Tensor):
        return torch.equal(first, second)
    return first == second


def test_checkpoints_restore_weights_optimisers_and_the_replay_ring(tmp_path):
    from stable_baselines3 import SAC

    run = RunFolder(tmp_path / "run")
    run.start(RunSpec(RUN_FORMAT, "pendulum-v1", "Pendulum-v1", "sac", 0, 20))
    model = SAC("MlpPolicy", gym.make("Pendulum-v1"), buffer_size=64, learning_starts=20, seed=0, device="cpu")
    state = {"step": 0, "buffer_rows": 0, "buffer_pos": 0, "buffer_full": False, "sessions": []}
    for _ in range(3):  # 150 rows through a ring of 64: it wraps, and old row files are pruned
        model.learn(50, reset_num_timesteps=model.num_timesteps == 0)
        state = run.checkpoint(model, model.num_timesteps, state)
    assert state["buffer_rows"] == 150 and state["buffer_full"]
    assert sorted(p.name for p in run.rows.glob("*.npz")) == ["rows-0000000050-0000000100.npz",
                                                              "rows-0000000100-0000000150.npz"]
    restored = run.restore(ALGOS["sac"], gym.make("Pendulum-v1"), state)
    assert restored.num_timesteps == 150 and restored._n_updates == model._n_updates
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        assert np.array_equal(getattr(restored.replay_buffer, name), getattr(model.replay_buffer, name)), name
    assert (restored.replay_buffer.pos, restored.replay_buffer.full) == (model.replay_buffer.pos, True)
    assert _equal(restored.policy.state_dict(), model.policy.state_dict())  # actor, critics, targets
    for optimizer in ("actor", "critic"):
        assert _equal(getattr(restored, optimizer).optimizer.state_dict(), getattr(model, optimizer).optimizer.state_dict())
    assert _equal(restored.ent_coef_optimizer.state_dict(), model.ent_coef_optimizer.state_dict())
    assert torch.equal(restored.log_ent_coef, model.log_ent_coef)


def test_a_stopped_training_resumes_and_tge_data_make_takes_its_output(tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    kwargs = {"env_id": "Pendulum-v1", "algo": "sac", "steps": 300, "snapshot_every": 100, "learning_starts": 100,
              "out_dir": out, "run_dir": run, "progress": False}
    first = json.loads(train_expert(stop_at=200, **kwargs).read_text())
    assert not first["finished"] and first["steps_trained"] == 200 and first["run_dir"] == str(run)
    assert [row["step"] for row in first["snapshots"]] == [100, 200]
    assert (run / "checkpoint" / "model-0000000200.zip").is_file()

    second = json.loads(train_expert(**kwargs).read_text())  # the same command: it resumes at step 200
    assert second["finished"] and second["steps_trained"] == 300 and not run.exists()
    assert second["snapshots"][:2] == first["snapshots"] and second["snapshots"][2]["step"] == 300
    assert [(s["from_step"], s["to_step"]) for s in second["sessions"]] == [(0, 200), (200, 300)]
    assert second["wall_seconds"] == pytest.approx(sum(s["wall_seconds"] for s in second["sessions"]))
    assert second["reproduce"] == "tge data train-expert --env Pendulum-v1 --algo sac --steps 300 --seed 0 --max-seconds inf"
    assert second["versions"]["stable-baselines3"] and second["task"] == "pendulum-v1"

    expert_file = out / "pendulum-v1_expert.pt"
    for quality, size in (("medium", {"size": 200}), ("expert", {"episodes": 2})):
        path = make.make_dataset(env_id="Pendulum-v1", expert_path=str(expert_file), quality=quality,
                                 progress=False, **size)
        dataset = minari.load_dataset(f"tge/pendulum-v1/{quality}-v0")
        assert path.name == f"{quality}-v0"
        meta = dataset.storage.metadata
        assert (meta["ref_min_score"], meta["ref_max_score"]) == pytest.approx(
            (second["random"]["return_mean"], second["expert"]["return_mean"]))
        assert f"pendulum-v1_{quality}.pt, sha256 {make._file_digest(out / f'pendulum-v1_{quality}.pt')}" in meta["algorithm_name"]


def test_the_shipped_tasks_keep_their_names_and_commands(tmp_path):
    info = json.loads(train_expert("hopper", steps=300, snapshot_every=100, out_dir=tmp_path, run_dir=tmp_path / "run",
                                   progress=False).read_text())
    assert info["steps_trained"] == 300 and [row["step"] for row in info["snapshots"]] == [100, 200, 300]
    assert info["reproduce"] == "tge data train-expert hopper --algo sac --steps 300 --seed 0 --max-seconds inf"
    candidates = info["expert_candidates"]  # the three best snapshots, re-evaluated on fresh episodes
    assert len(candidates) == 3 and all(c["episodes"] == experts.SELECT_EPISODES for c in candidates)
    assert info["expert"]["snapshot_step"] == max(candidates, key=lambda c: c["return_mean"])["step"]
    # the medium: of the other snapshots, the one whose fresh mean is closest to 0.4 of the expert's
    expert_mean = next(c["return_mean"] for c in candidates if c["step"] == info["expert"]["snapshot_step"])
    assert info["medium_target"] == pytest.approx(experts.MEDIUM_FRACTION * expert_mean)
    medium = info["medium_candidates"]
    assert sorted(c["step"] for c in medium) == sorted({100, 200, 300} - {info["expert"]["snapshot_step"]})
    assert info["medium"]["snapshot_step"] == min(medium, key=lambda c: abs(c["return_mean"] - info["medium_target"]))["step"]
    actions = experts.load_policy(tmp_path / "hopper_expert.pt")(np.zeros((4, 11), np.float32))
    assert actions.shape == (4, 3) and (np.abs(actions) <= 1).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"env_id": "CartPole-v1"}, "Discrete actions, not continuous control"),
        ({"env_id": "NoSuchEnv-v0"}, "cannot make env 'NoSuchEnv-v0'"),
        ({"task": "pointmaze-umaze"}, "unknown task 'pointmaze-umaze'"),
        ({"task": "hopper", "env_id": "Hopper-v5"}, "not both or neither"),
        ({"env_id": "Pendulum-v1", "algo": "ppo"}, "unknown --algo 'ppo'"),
        ({"env_id": "Pendulum-v1", "steps": 0}, "steps=0 must be > 0"),
    ],
)
def test_bad_input_is_one_error_and_writes_nothing(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        train_expert(out_dir=tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_a_run_folder_of_another_env_is_refused_and_left_as_it_was(tmp_path, capsys):
    run = RunFolder(tmp_path / "run")
    run.start(RunSpec(RUN_FORMAT, "pendulum-v1", "Pendulum-v1", "sac", 0, 100))
    before = {p.name: p.read_bytes() for p in run.path.iterdir()}
    with pytest.raises(DataError, match="belongs to a training with env Pendulum-v1, not Hopper-v5"):
        train_expert("hopper", run_dir=run.path, out_dir=tmp_path / "out", progress=False)
    assert main(["data", "train-expert", "--env", "MountainCarContinuous-v0", "--run-dir", str(run.path),
                 "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tge: error: run folder") and "--run-dir" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in run.path.iterdir()} == before and not (tmp_path / "out").exists()


def test_cli_refuses_a_discrete_env_in_one_line(tmp_path, capsys):
    assert main(["data", "train-expert", "--env", "CartPole-v1", "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tge: error: env 'CartPole-v1' has Discrete actions") and err.count("\n") == 1
    assert not default_run_dir("cartpole-v1", "sac", 0).exists() and not (tmp_path / "out").exists()


def test_the_experts_table_names_each_library_without_its_settings():
    rows = experts.shipped_experts()  # `tge data experts`: the records' algorithm, up to its settings
    assert rows["hopper"][-1] == "SB3 SAC" and rows["walker2d"][-1] == "SBX (JAX) TQC"
