"""`tge store STORAGE list|verify|gc` in its own process, on copies of the tiny store."""

from __future__ import annotations

import shutil
import socket

import pytest

from tests.faults.conftest import artifact, copy_store, flip_bit, tge, truncate
from tge_ray.pipeline import files

KINDS = {"diffusion": files.DIFFUSION_FILE, "embeddings": files.EMBEDDINGS_FILE,
         "rewards": files.REWARDS_FILE, "policy": files.POLICY_FILE}


def _dead_pid():
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("mode", ["truncate", "flip"])
def test_verify_names_each_damaged_kind_and_exits_1(tiny_store, tmp_path, mode):
    storage = copy_store(tiny_store, tmp_path / "storage")
    assert tge("store", str(storage), "verify").returncode == 0
    expected = {}
    for stage, name in KINDS.items():
        path = artifact(storage, stage) / name
        if mode == "truncate":
            new, old = truncate(path)
            expected[path.parent.name] = f"corrupt: {path.parent.name}: {name}: {new} bytes, {old} recorded"
        else:
            flip_bit(path)
            expected[path.parent.name] = f"corrupt: {path.parent.name}: {name}: sha256 differs from the recorded one"

    done = tge("store", str(storage), "verify")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(lines[:-1]) == sorted(expected.values())
    assert lines[-1].startswith(f"verified 4 artifact(s) in {storage / 'artifacts'}: 4 corrupt")
    assert sorted(p.name for p in (storage / "artifacts").iterdir() if not p.name.startswith(".")) == sorted(expected)


def test_list_shows_each_artifact_its_runs_and_the_leftovers(tiny_store, tmp_path):
    storage = copy_store(tiny_store, tmp_path / "storage")
    root = storage / "artifacts"
    (run,) = [p.name for p in storage.iterdir() if (p / files.RESULTS_FILE).is_file()]
    truncate(artifact(storage, "rewards") / files.REWARDS_FILE)
    stale = root / f".policy-0123456789abcdef.tmp-{_dead_pid()}@{socket.gethostname()}-a1b2c3"
    stale.mkdir()
    resumable = root / ".policy-scratch-0011223344556677"
    resumable.mkdir()
    (resumable / files.SCRATCH_FILE).write_text('{"artifacts": ["policy-0123456789abcdef"]}')

    done = tge("store", str(storage), "list")
    assert done.returncode == 0, done.stderr
    rows = {tuple(line.split()[:2]): line for line in done.stdout.splitlines()[1:]}
    assert done.stdout.splitlines()[0].split() == ["stage", "key", "size", "age", "state", "runs"]
    for stage in ("diffusion", "embeddings", "policy"):
        folder = artifact(storage, stage)
        line = rows[(stage, folder.name.rpartition("-")[2])]
        assert " ok " in line and line.endswith(run), line
    rewards = artifact(storage, "rewards")
    assert "corrupt (rewards.npz:" in rows[("rewards", rewards.name.rpartition("-")[2])]
    assert "stale temp (its process is gone)" in rows[("policy", "0123456789abcdef")]
    assert "resumable" in rows[("policy-scratch", "0011223344556677")]
    assert stale.is_dir() and resumable.is_dir(), "list removes nothing"


def test_gc_removes_what_no_run_uses(tiny_store, tmp_path):
    storage = copy_store(tiny_store, tmp_path / "storage")
    root = storage / "artifacts"
    used = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    unused = root / "policy-00000000deadbeef"
    shutil.copytree(artifact(storage, "policy"), unused)
    aside = root / ".rewards-0000000000000000.corrupt-20261204T000000Z"
    shutil.copytree(artifact(storage, "rewards"), aside)
    stale = root / f".embeddings-0123.tmp-{_dead_pid()}@{socket.gethostname()}-zz9"
    stale.mkdir()
    resume = root / ".policy-scratch-ffff"
    resume.mkdir()
    (resume / files.SCRATCH_FILE).write_text('{"artifacts": ["policy-00000000deadbeef0"]}')
    removable = {unused.name, aside.name, stale.name, resume.name}

    dry = tge("store", str(storage), "gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert {line.split()[2] for line in dry.stdout.splitlines()[:-1]} == removable
    assert all(line.startswith("would remove ") for line in dry.stdout.splitlines())
    assert all(path.exists() for path in (unused, aside, stale, resume)), "a dry run removes nothing"

    done = tge("store", str(storage), "gc")
    assert done.returncode == 0, done.stderr
    assert {line.split()[1] for line in done.stdout.splitlines()[:-1]} == removable
    assert done.stdout.splitlines()[-1].startswith("removed 4 folder(s), ") and "kept 4 artifact(s) used by 1 run" in done.stdout
    assert sorted(p.name for p in root.iterdir() if p.name != ".locks") == used
    assert tge("store", str(storage), "verify").returncode == 0
    again = tge("store", str(storage), "gc")
    assert again.stdout.startswith("removed 0 folder(s)")


def test_bad_input_is_one_line_and_exit_2(tiny_store, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    storage = copy_store(tiny_store, tmp_path / "storage")
    cases = [
        (("store", str(tmp_path / "nope"), "list"), f"storage folder {tmp_path / 'nope'} does not exist"),
        (("store", str(empty), "verify"), f"{empty} holds no artifact store"),
        (("store", str(storage), "gc", "--runs", str(empty)), f"no run folders under {empty}"),
        (("store", "s3://bucket/tge", "list"), "tge store reads local folders"),
    ]
    for args, message in cases:
        done = tge(*args)
        assert done.returncode == 2 and done.stdout == "", done
        assert done.stderr.startswith(f"tge: error: {message}") and done.stderr.count("\n") == 1, done.stderr
    (run,) = [p for p in storage.iterdir() if (p / files.RESULTS_FILE).is_file()]
    (run / files.RESULTS_FILE).write_text("{")
    done = tge("store", str(storage), "gc")
    assert done.returncode == 2 and "results.json cannot be read" in done.stderr
    assert len([p for p in (storage / "artifacts").iterdir() if not p.name.startswith(".")]) == 4, "gc removed nothing"
