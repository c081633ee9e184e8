"""Shared fixtures: one local Ray session for the whole suite, the tiny Minari datasets, and one
finished smoke run that every test reading a run folder shares."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def ray_session():
    """One ``ray.init(num_cpus=2)`` shared by every test that needs Ray."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    yield ray
    ray.shutdown()


# ----------------------------------------------------------------------------- tiny Minari data


def write_minari_dataset(dataset_id, *, env_id="Hopper-v5", episodes=5, max_steps=30, seed=0,
                         policy="random", ref_min=-20.0, ref_max=3000.0, corrupt=None):
    """Write a real Minari dataset by rolling out a Gymnasium MuJoCo env with Minari's API.

    ``policy`` is ``random`` (uniform actions) or ``zero`` (a different, deterministic
    behaviour, standing in for a second quality). ``corrupt`` = "nan" puts a NaN into one
    observation before writing (bad-input tests).
    """
    import gymnasium as gym
    import minari
    import numpy as np
    from minari.data_collector import EpisodeBuffer

    env = gym.make(env_id, max_episode_steps=max_steps)
    env.action_space.seed(seed)
    buffers = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + episode)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        while True:
            action = env.action_space.sample() if policy == "random" else np.zeros(env.action_space.shape, np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terms.append(terminated)
            truncs.append(truncated)
            if terminated or truncated:
                break
        observations = np.asarray(observations)
        if corrupt == "nan" and episode == episodes - 1:
            observations[1, 0] = np.nan
        buffers.append(EpisodeBuffer(id=episode, observations=observations, actions=np.asarray(actions),
                                     rewards=np.asarray(rewards), terminations=np.asarray(terms),
                                     truncations=np.asarray(truncs)))
    return minari.create_dataset_from_buffers(
        dataset_id, buffers, env=env_id, eval_env=env_id, algorithm_name=policy, author="tests",
        author_email="tests@example.org", code_permalink="tests/conftest.py",
        ref_min_score=ref_min, ref_max_score=ref_max, description="tiny test dataset",
    )


@pytest.fixture(scope="session")
def minari_root(tmp_path_factory):
    """A private MINARI_DATASETS_PATH and TGE_CACHE_DIR for the whole session."""
    root = tmp_path_factory.mktemp("minari")
    cache = tmp_path_factory.mktemp("tge_cache")
    old = {k: os.environ.get(k) for k in ("MINARI_DATASETS_PATH", "TGE_CACHE_DIR")}
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    os.environ["TGE_CACHE_DIR"] = str(cache)
    yield root
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def tiny_datasets(minari_root):
    """Two tiny Hopper datasets: ``test/hopper/random-v0`` (6 episodes) and
    ``test/hopper/zero-v0`` (8 episodes), playing the suboptimal and the expert data."""
    write_minari_dataset("test/hopper/random-v0", episodes=6, seed=0, policy="random")
    write_minari_dataset("test/hopper/zero-v0", episodes=8, seed=1, policy="zero")
    return {"offline": "test/hopper/random-v0", "expert": "test/hopper/zero-v0"}


# ----------------------------------------------------------------------------- one finished run


@dataclass(frozen=True)
class SmokeRun:
    store: Path
    run_dir: Path
    printed: str  # what `tge run` printed


@pytest.fixture(scope="session")
def smoke_run(ray_session, tiny_datasets, tmp_path_factory) -> SmokeRun:
    """One `tge run -q smoke` of the tiny datasets (TGE-IQL, BC and oracle-IQL: every stage
    really runs), built once per session. Tests only read it; a test that writes to a store (a
    new run, a report, a damaged artifact) works on :func:`copy_store` of it."""
    from tge_ray.cli import main

    store = tmp_path_factory.mktemp("smoke_store")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["run", "-q", "smoke", f"task.offline={tiny_datasets['offline']}",
                     f"task.expert={tiny_datasets['expert']}", f"storage={store}"])
    assert code == 0, printed.getvalue()[-3000:]
    (run_dir,) = [p for p in store.iterdir() if p.name.startswith("test-hopper-random-v0__iql__H8__s0__")]
    return SmokeRun(store, run_dir, printed.getvalue())


def copy_store(store: Path, target: Path, *, stages: tuple[str, ...] | None = None, runs: bool = True) -> Path:
    """A copy of the storage folder ``store`` at ``target``: its artifacts (only those of
    ``stages``, e.g. ``("diffusion", "embeddings")``, when given) and, with ``runs``, its run
    folders, whose records then name the copy's artifacts."""
    target.mkdir(parents=True, exist_ok=True)
    for artifact in (store / "artifacts").iterdir():
        if stages is None or artifact.name.rpartition("-")[0] in stages or artifact.name == ".locks":
            shutil.copytree(artifact, target / "artifacts" / artifact.name, symlinks=True)
    from tge_ray.pipeline import files
    from tge_ray.pipeline.run_folder import RunFolder

    for run_dir in RunFolder.inside(store) if runs else ():
        shutil.copytree(run_dir, target / run_dir.name, symlinks=True)
        for name in (files.RESULTS_FILE, files.CONFIG_FILE):
            record = target / run_dir.name / name
            record.write_text(record.read_text().replace(str(store), str(target)))
    return target
