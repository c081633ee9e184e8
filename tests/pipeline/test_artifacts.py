"""Artifact store: content keys, atomic writes, reuse, one build under concurrent claims."""

from __future__ import annotations

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
