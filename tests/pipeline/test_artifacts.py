"""Artifact store: content keys, atomic writes, reuse, one build under concurrent claims."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest

from tge_ray.pipeline.artifacts import ArtifactStore, artifact_key


def test_key_depends_on_content_not_order():
    assert artifact_key({"a": 1, "b": [1, 2]}) == artifact_key({"b": [1, 2], "a": 1})
    assert artifact_key({"a": 1}) != artifact_key({"a": 2})


def test_build_once_then_reuse(tmp_path):
    store = ArtifactStore(str(tmp_path))
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "x.txt").write_text("hello")
        return {"n": 1}

    first = store.get_or_build("stage", {"h": 32}, build)
    second = store.get_or_build("stage", {"h": 32}, build)
    assert not first.reused and second.reused and len(calls) == 1
    assert (second.path / "x.txt").read_text() == "hello"
    assert store.manifest(second)["facts"] == {"n": 1}


def test_failed_build_leaves_nothing_that_loads(tmp_path):
    store = ArtifactStore(str(tmp_path))

    def build(folder):
        (folder / "half.bin").write_bytes(b"\0" * 10)
        raise KeyboardInterrupt  # killed half way

    with pytest.raises(KeyboardInterrupt):
        store.get_or_build("stage", {"h": 1}, build)
    assert store.find("stage", {"h": 1}) is None
    assert not [p for p in store.root.iterdir() if p.name.startswith("stage-")]
    assert not [p for p in store.root.iterdir() if ".tmp-" in p.name]


def test_a_resumable_build_finds_its_scratch_again_after_an_interruption(tmp_path):
    """``resumable=True``: the build gets a scratch folder that an interrupted build leaves with its
    files (a rerun gets the same one back) and that goes once the artifact is in place; a build
    that fails with nothing in it to resume from leaves no scratch folder."""
    store = ArtifactStore(str(tmp_path))
    seen = []

    def interrupted(folder, scratch):
        seen.append(scratch)
        (scratch / "checkpoint.bin").write_bytes(b"state")
        raise KeyboardInterrupt

    def resumed(folder, scratch):
        seen.append(scratch)
        (folder / "model.bin").write_bytes((scratch / "checkpoint.bin").read_bytes() + b" then the rest")

    with pytest.raises(KeyboardInterrupt):
        store.get_or_build("diffusion", {"h": 32}, interrupted, resumable=True)
    assert seen[0].is_dir() and (seen[0] / "checkpoint.bin").is_file()
    artifact = store.get_or_build("diffusion", {"h": 32}, resumed, resumable=True)
    assert seen[1] == seen[0] and (artifact.path / "model.bin").read_bytes() == b"state then the rest"
    assert not seen[0].exists()

    def refused(folder, scratch):
        (scratch / "ray_train").mkdir()  # a folder, but no file: nothing to resume from
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        store.get_or_build("diffusion", {"h": 16}, refused, resumable=True)
    assert not list(store.root.glob(".*-scratch-*")) and not list(store.root.glob(".*.tmp-*"))


def test_concurrent_claims_build_once(tmp_path):
    builds = []

    def build(folder):
        builds.append(threading.get_ident())
        time.sleep(0.3)
        (folder / "model.pt").write_text("weights")

    results = []

    def trial():
        results.append(ArtifactStore(str(tmp_path)).get_or_build("diffusion", {"h": 8}, build))

    threads = [threading.Thread(target=trial) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert sorted(r.reused for r in results) == [False, True, True]


def test_unwritable_storage_is_one_line(tmp_path):
    from tge_ray.errors import TGEError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TGEError, match="cannot be written"):
        ArtifactStore(str(blocker / "sub"))


def test_a_store_makes_no_folders_until_its_first_build(tmp_path):
    """A run that fails before its first stage leaves nothing on disk."""
    storage = tmp_path / "new" / "storage"
    store = ArtifactStore(str(storage))
    assert store.find("stage", {"a": 1}) is None
    assert not (tmp_path / "new").exists()
    artifact = store.get_or_build("stage", {"a": 1}, lambda folder: (folder / "x.txt").write_text("x") and None)
    assert (artifact.path / "x.txt").read_text() == "x"


# ----------------------------------------------------------------------------- verified reuse


def _npz_build(calls):
    def build(folder):
        import numpy as np

        calls.append(folder)
        np.savez(folder / "rewards.npz", raw=np.arange(50.0))
    return build


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_artifact_is_moved_aside_and_rebuilt(tmp_path, damage):
    calls, notes = [], []
    store = ArtifactStore(str(tmp_path))
    first = store.get_or_build("rewards", {"a": 1}, _npz_build(calls), note=notes.append)
    path = first.path / "rewards.npz"
    data = bytearray(path.read_bytes())
    size = len(data)
    if damage == "truncate":
        path.write_bytes(data[: size // 2])
        assert store.find("rewards", {"a": 1}) is None, "a lookup compares sizes"
    else:
        data[size // 2] ^= 0x01
        path.write_bytes(data)
        assert store.find("rewards", {"a": 1}) is not None, "sizes agree: only the hash tells"
    again = store.get_or_build("rewards", {"a": 1}, _npz_build(calls), note=notes.append)
    assert not again.reused and len(calls) == 2
    (line,) = notes
    expected = f"{size // 2} bytes, {size} recorded" if damage == "truncate" else "sha256 differs from the recorded one"
    assert line.startswith(f"{first.name} is damaged (rewards.npz: {expected}): moved aside to .{first.name}.corrupt-")
    (aside,) = [p for p in store.root.iterdir() if ".corrupt-" in p.name]
    assert (aside / "rewards.npz").read_bytes() != (again.path / "rewards.npz").read_bytes()
    assert store.verify(again.path) is None


def test_an_artifact_without_recorded_files_is_checked_once_by_its_zip_crcs(tmp_path):
    import json

    calls, notes = [], []
    store = ArtifactStore(str(tmp_path))
    for deps in ({"a": 1}, {"a": 2}):  # as an earlier version wrote them: no "files" in the manifest
        artifact = store.get_or_build("rewards", deps, _npz_build(calls))
        manifest = json.loads((artifact.path / "manifest.json").read_text())
        del manifest["files"]
        (artifact.path / "manifest.json").write_text(json.dumps(manifest))
    flipped = store.root / store.name("rewards", {"a": 2}) / "rewards.npz"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 3] ^= 0x10
    flipped.write_bytes(data)

    sound = store.get_or_build("rewards", {"a": 1}, _npz_build(calls), note=notes.append)
    assert sound.reused and "files" in store.manifest(sound), "trusted once, its hashes recorded"
    broken = store.get_or_build("rewards", {"a": 2}, _npz_build(calls), note=notes.append)
    assert not broken.reused and len(calls) == 3
    assert len(notes) == 1 and "rewards.npz: member" in notes[0] and "fails its CRC check" in notes[0]


def test_copy_verified_refuses_bytes_that_changed(tmp_path):
    from tge_ray.errors import TGEError
    from tge_ray.pipeline.integrity import copy_verified

    store = ArtifactStore(str(tmp_path))
    artifact = store.get_or_build("rewards", {"a": 1}, _npz_build([]))
    copy_verified(artifact.path, "rewards.npz", tmp_path / "copy.npz")
    assert (tmp_path / "copy.npz").read_bytes() == (artifact.path / "rewards.npz").read_bytes()
    data = bytearray((artifact.path / "rewards.npz").read_bytes())
    data[100] ^= 0xFF
    (artifact.path / "rewards.npz").write_bytes(data)
    with pytest.raises(TGEError, match="rewards.npz: sha256 differs"):
        copy_verified(artifact.path, "rewards.npz", tmp_path / "again.npz")
    assert not (tmp_path / "again.npz").exists()


# ----------------------------------------------------------------------------- the sweep on open


def _dead_pid():
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_open_sweeps_what_dead_processes_left_and_nothing_else(tmp_path):
    import socket

    from tge_ray.pipeline.leftovers import artifact_lock

    store = ArtifactStore(str(tmp_path))
    store.get_or_build("rewards", {"a": 1}, _npz_build([]))
    root, host = store.root, socket.gethostname()
    dead = root / f".rewards-aaaa.tmp-{_dead_pid()}@{host}-abc123"
    earlier = root / ".policy-bbbb.tmp-x1y2z3"  # an earlier version's build: no owner in the name
    alive = root / f".rewards-cccc.tmp-{os.getpid()}@{host}-def456"
    held = root / f".rewards-dddd.tmp-{_dead_pid()}@{host}-ghi789"  # owner gone, but its lock is held
    resumable = root / ".policy-scratch-0123"
    finished = root / ".policy-scratch-4567"
    run_folder = tmp_path / f".tge-hopper__iql__H8__s0__20261204-000000.tmp-{_dead_pid()}@{host}-q1w2e3"
    foreign = tmp_path / ".notes.tmp-abc123"  # another program's: it names no owner
    for folder in (dead, earlier, alive, held, resumable, finished, run_folder, foreign):
        folder.mkdir()
    (resumable / "artifacts.json").write_text('{"artifacts": ["policy-eeee"]}')
    (finished / "artifacts.json").write_text(f'{{"artifacts": ["{store.name("rewards", {"a": 1})}"]}}')
    notes = []
    with artifact_lock(root, "rewards-dddd"):
        ArtifactStore(str(tmp_path), note=notes.append)
    left = {p.name for p in root.iterdir() if p.name.startswith(".") and p.name != ".locks"}
    assert left == {alive.name, held.name, resumable.name}
    assert not run_folder.exists() and foreign.exists()
    assert len(notes) == 1 and notes[0].startswith("removed 4 folder(s) that interrupted runs left")
    # A day later: resume state stays however old (a long run stopped over a weekend continues);
    # one an earlier version left, naming no artifact, goes by age; the released lock's folder goes.
    earlier_resume = root / ".policy-scratch-89ab"
    earlier_resume.mkdir()
    (earlier_resume / "checkpoint.pt").write_bytes(b"state")
    old = time.time() - 25 * 3600
    for path in (resumable, resumable / "artifacts.json", earlier_resume, earlier_resume / "checkpoint.pt"):
        os.utime(path, (old, old))
    store = ArtifactStore(str(tmp_path), note=notes.append)
    assert resumable.exists() and not earlier_resume.exists()
    assert not held.exists(), "lock released: its folder goes too"
    assert [leftover.path for leftover in store.sweep(everything=True)] == [resumable]  # `tge store gc`
    assert not resumable.exists()


def test_a_remote_store_fetches_verifies_and_fetches_a_damaged_mirror_again(tmp_path, monkeypatch):
    """pyarrow's in-memory filesystem stands in for an object store; the local mirror is checked
    like a local store, and a damaged mirror copy is replaced by the remote one."""
    monkeypatch.setenv("TGE_CACHE_DIR", str(tmp_path / "cache"))
    calls, notes = [], []
    store = ArtifactStore("mock://bucket/tge", note=notes.append)
    built = store.get_or_build("rewards", {"a": 1}, _npz_build(calls), note=notes.append)
    assert store.remote and not built.reused and built.path.is_relative_to(tmp_path / "cache")
    shutil.rmtree(built.path)  # the mirror lost it: downloaded again, verified, reused
    again = store.get_or_build("rewards", {"a": 1}, _npz_build(calls), note=notes.append)
    assert again.reused and len(calls) == 1 and store.verify(again.path) is None
    data = bytearray((again.path / "rewards.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (again.path / "rewards.npz").write_bytes(data)
    fixed = store.get_or_build("rewards", {"a": 1}, _npz_build(calls), note=notes.append)
    assert fixed.reused and len(calls) == 1 and store.verify(fixed.path) is None
    assert len(notes) == 1 and "sha256 differs" in notes[0] and notes[0].endswith("fetching it again or building it anew")
