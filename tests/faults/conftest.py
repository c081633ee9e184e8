"""The fault suite: `tge run` and `tge store` as a user starts them, each in its own process.

``tiny_store`` builds one store of the tiny config (:data:`TINY`) once per session; a test copies
it (:func:`copy_store`) and breaks the copy. ``ray_tmp`` gives each test a short private
``RAY_TMPDIR``, so the Ray processes a run started can be found after it was killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import copy_store

TINY = ("smoke", "rl.steps=10", "evaluation.every=10", "evaluation.episodes=1", "evaluation.num_envs=1",
        "evaluation.max_episode_steps=20", "methods=[tge]")
"""The smoke run's diffusion model, embeddings and rewards with the smallest policy stage: one
TGE-IQL policy, 10 updates."""


def tge_run_command(datasets: dict[str, str], storage: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tge_ray.cli", "run", "-q", *TINY, f"task.offline={datasets['offline']}",
            f"task.expert={datasets['expert']}", f"storage={storage}", *extra]


def tge(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``tge ARGS`` in its own process, its output captured."""
    return subprocess.run([sys.executable, "-m", "tge_ray.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A process in its own process group (so a kill reaches its children), output captured."""
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def kill_when(process: subprocess.Popen, root: Path, pattern: str, timeout: float = 300) -> tuple[bool, str]:
    """SIGKILL the process group as soon as ``root`` holds a folder matching ``pattern``; whether
    it was killed (False: it ended first or the timeout passed) and its stderr."""
    deadline = time.time() + timeout
    killed = False
    while process.poll() is None and time.time() < deadline:
        if root.is_dir() and any(root.glob(pattern)):
            os.killpg(process.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    if not killed and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    return killed, err


def processes_under(folder: Path) -> list[str]:
    """Command lines of the live processes that name ``folder`` (Ray's, with RAY_TMPDIR there)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in text:
            found.append(text.strip())
    return found


@pytest.fixture
def ray_tmp():
    """A short private RAY_TMPDIR (Ray's socket paths must stay under 108 characters)."""
    folder = Path(tempfile.mkdtemp(prefix="tgeray-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def run_env(minari_root, ray_tmp):
    """The environment of a `tge run` subprocess: the tiny datasets, a private Ray temp folder,
    no cluster address."""
    return {**os.environ, "RAY_TMPDIR": str(ray_tmp), "RAY_ADDRESS": ""}


@pytest.fixture(scope="session")
def tiny_store(smoke_run, tiny_datasets, tmp_path_factory):
    """A storage folder with one finished run of :data:`TINY`: its artifacts and its run folder.
    Its first three stages come from the session's smoke store, so only the policy trains here."""
    from tge_ray.config import load_config, resolve_config_path
    from tge_ray.pipeline.run import run_experiment

    storage = copy_store(smoke_run.store, tmp_path_factory.mktemp("tiny") / "store",
                         stages=("diffusion", "embeddings", "rewards"), runs=False)
    overrides = [*TINY[1:], f"task.offline={tiny_datasets['offline']}", f"task.expert={tiny_datasets['expert']}",
                 f"storage={storage}"]
    run_experiment(load_config(resolve_config_path(TINY[0]), overrides), progress=False)
    return storage


def artifact(storage: Path, stage: str) -> Path:
    """The one artifact of ``stage`` in a store of the tiny config."""
    (folder,) = sorted((storage / "artifacts").glob(f"{stage}-*"))
    return folder


def truncate(path: Path) -> tuple[int, int]:
    """Cut ``path`` to half its size; (new size, old size)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return len(data) // 2, len(data)


def flip_bit(path: Path) -> None:
    """Flip one bit in the middle of ``path`` (its size stays)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(data)
