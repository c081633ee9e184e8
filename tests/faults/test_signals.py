"""SIGTERM and SIGINT stop `tge run` cleanly: one line, exit 143 or 130, Ray's processes gone, no
lock held, no build folder left; the rerun continues from the finished stages. Real `tge run`
subprocesses on the tiny datasets."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.faults.test_os_errors import leftovers, smoke, tge_env


def interrupt(tiny_datasets, storage: Path, signum: int, stage: str) -> tuple[int, str, list[psutil.Process]]:
    """Start `tge run` in its own process group, send ``signum`` to the group (as Ctrl-C does)
    once ``stage``'s build folder appears, and return the exit code, stderr and the processes the
    run had started."""
    proc = subprocess.Popen([sys.executable, "-m", "tge_ray.cli", *smoke(tiny_datasets, storage)], env=tge_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 600
    while not list((storage / "artifacts").glob(f".{stage}-*.tmp-*")):
        assert proc.poll() is None, f"the run ended before its {stage} stage: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err, children


def assert_clean(storage: Path, children: list[psutil.Process]) -> None:
    """No build folder, no lock held, none of the run's processes (Ray's included) alive."""
    assert leftovers(storage) == []
    for lock in (storage / "artifacts" / ".locks").glob("*.lock"):
        with open(lock) as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a process still holds it
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.info if hasattr(p, "info") else p.pid for p in alive]


def test_sigterm_and_sigint_stop_a_run_and_the_rerun_continues(tiny_datasets, tmp_path):
    storage = tmp_path / "runs"
    resumable = ": finished stages are kept; rerun the same command to continue"

    # SIGTERM while the embeddings are computed: the diffusion model is kept.
    code, err, children = interrupt(tiny_datasets, storage, signal.SIGTERM, "embeddings")
    assert code == 143 and err == f"tge: interrupted (SIGTERM){resumable}\n", err[-3000:]
    assert_clean(storage, children)
    assert len(list((storage / "artifacts").glob("diffusion-*"))) == 1
    assert not list((storage / "artifacts").glob("embeddings-*"))

    # SIGINT (to the process group, as Ctrl-C) while the policies train: the rewards are kept.
    code, err, children = interrupt(tiny_datasets, storage, signal.SIGINT, "policy")
    assert code == 130 and err == f"tge: interrupted (SIGINT){resumable}\n", err[-3000:]
    assert_clean(storage, children)
    assert len(list((storage / "artifacts").glob("rewards-*"))) == 1

    # The rerun reuses every finished stage and trains the policies.
    done = subprocess.run([sys.executable, "-m", "tge_ray.cli", *smoke(tiny_datasets, storage)], env=tge_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [p for p in storage.iterdir() if p.name.startswith("test-hopper-random-v0__")]
    artifacts = json.loads((run_dir / "results.json").read_text())["artifacts"]
    assert {name: a["reused"] for name, a in artifacts.items()} == {
        "diffusion": True, "embeddings": True, "rewards": True,
        "policy-tge-iql-seed0": False,
    }
    assert leftovers(storage) == [] and not list((storage / "artifacts").glob(".*-scratch-*"))
