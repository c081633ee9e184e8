"""Damaged artifacts, runs killed with SIGKILL in each stage, and concurrent runs on one store,
each with `tge run` in its own process on the tiny config."""

from __future__ import annotations

import json
import re
import shutil
import time

from tests.faults.conftest import (
    artifact,
    copy_store,
    flip_bit,
    kill_when,
    processes_under,
    start,
    tge_run_command,
    truncate,
)
from tge_ray.pipeline import files
from tge_ray.pipeline.artifacts import ArtifactStore
from tge_ray.pipeline.integrity import sha256_of

KINDS = {"diffusion": files.DIFFUSION_FILE, "embeddings": files.EMBEDDINGS_FILE,
         "rewards": files.REWARDS_FILE, "policy": files.POLICY_FILE}
HASH = "sha256 differs from the recorded one"


def _damage(storage, modes):
    """Damage each kind's file as ``modes`` says (truncate or flip); the line each should get."""
    expected = {}
    for stage, mode in modes.items():
        folder = artifact(storage, stage)
        path = folder / KINDS[stage]
        if mode == "truncate":
            new, old = truncate(path)
            what = f"{new} bytes, {old} recorded"
        else:
            flip_bit(path)
            what = HASH
        expected[folder.name] = f"{folder.name} is damaged ({KINDS[stage]}: {what}): moved aside to .{folder.name}.corrupt-"
    return expected


def _damage_lines(stderr):
    return [line.strip().removeprefix("note: ") for line in stderr.splitlines() if " is damaged (" in line]


def _runs(storage):
    return sorted(p for p in storage.iterdir() if (p / files.RESULTS_FILE).is_file())


def _record(run_dir):
    return json.loads((run_dir / files.RESULTS_FILE).read_text())


def _assert_sound(storage, names):
    """Every artifact in ``names`` is there and matches its recorded hashes; no temporary folder."""
    store = ArtifactStore(str(storage), sweep=False)
    for name in names:
        assert store.verify(store.root / name) is None, name
    assert [leftover.kind for leftover in store.leftovers() if leftover.kind != "corrupt"] == []


def test_damaged_artifacts_of_every_kind_are_moved_aside_and_rebuilt(tiny_store, tiny_datasets, tmp_path, run_env):
    """The first run moves the damaged diffusion model aside and is killed while it rebuilds it
    (kill -9 in the diffusion stage); the rerun sweeps its build folder, rebuilds the model and
    moves aside and rebuilds the other three."""
    storage = copy_store(tiny_store, tmp_path / "storage")
    root = storage / "artifacts"
    modes = {"diffusion": "truncate", "embeddings": "flip", "rewards": "truncate", "policy": "flip"}
    expected = _damage(storage, modes)
    damaged = {name: sha256_of(root / name / KINDS[name.rpartition("-")[0]]) for name in expected}
    diffusion = artifact(storage, "diffusion").name
    (before,) = _runs(storage)
    command = tge_run_command(tiny_datasets, storage)

    killed, err = kill_when(start(command, run_env), root, ".diffusion-*.tmp-*")
    assert killed, err[-3000:]
    (line,) = _damage_lines(err)
    assert line.startswith(expected[diffusion]) and line.endswith("; building it anew"), line
    (build,) = [p.name for p in root.glob(".diffusion-*.tmp-*")]
    assert not (root / diffusion).exists()

    process = start(command, run_env)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    assert f"folder(s) that interrupted runs left in {root}: {build}" in err
    lines = _damage_lines(err)
    assert len(lines) == 3, lines
    for name, prefix in expected.items():
        if name != diffusion:
            (line,) = [line for line in lines if line.startswith(f"{name} is damaged")]
            assert line.startswith(prefix) and line.endswith("; building it anew"), line
        (aside,) = root.glob(f".{name}.corrupt-*")
        assert re.fullmatch(rf"\.{name}\.corrupt-\d{{8}}T\d{{6}}Z", aside.name)
        assert sha256_of(aside / KINDS[name.rpartition("-")[0]]) == damaged[name], "the damaged bytes, kept aside"
    (run_dir,) = [p for p in _runs(storage) if p != before]
    record = _record(run_dir)
    assert {ref["name"] for ref in record["artifacts"].values()} == set(expected)
    assert not any(ref["reused"] for ref in record["artifacts"].values()), "each was built anew"
    _assert_sound(storage, expected)
    for stage in ("diffusion", "policy-tge-iql-seed0"):  # the run folder holds the rebuilt, recorded bytes
        name = record["artifacts"][stage]["name"]
        source = root / name / KINDS[name.rpartition("-")[0]]
        manifest = json.loads((root / name / files.MANIFEST_FILE).read_text())
        assert sha256_of(files.run_checkpoint(run_dir, stage)) == sha256_of(source) == manifest["files"][source.name]["sha256"]


def test_kill_9_in_each_stage_then_a_rerun_finishes(tiny_store, tiny_datasets, tmp_path, run_env, ray_tmp):
    """On a store that holds the diffusion model (the kill in its stage is above), each run is
    killed as soon as its stage's build folder appears; the next one sweeps it, reuses the
    stages before, and is killed in the next stage; the last one finishes."""
    storage = copy_store(tiny_store, tmp_path / "storage")
    root = storage / "artifacts"
    for stage in ("embeddings", "rewards", "policy"):
        shutil.rmtree(artifact(storage, stage))
    shutil.rmtree(_runs(storage)[0])
    command = tge_run_command(tiny_datasets, storage)
    previous = None
    stages = ("diffusion", "embeddings", "rewards", "policy")
    for stage in stages[1:]:
        killed, err = kill_when(start(command, run_env), root, f".{stage}-*.tmp-*")
        assert killed, f"the run ended before its {stage} stage began: {err[-3000:]}"
        if previous is not None:  # this run swept what the one before left
            assert f"folder(s) that interrupted runs left in {root}: {previous}" in err, err[-3000:]
        (previous,) = [p.name for p in root.glob(f".{stage}-*.tmp-*")]
        store = ArtifactStore(str(storage), sweep=False)
        stale = {leftover.path.name: leftover.stale for leftover in store.leftovers()}
        assert stale.pop(previous) == "its process is gone"
        assert all(name.startswith(".policy-scratch-") for name in stale), stale  # resume state only
        done = stages[: stages.index(stage)]
        assert sorted(p.name.rpartition("-")[0] for p in root.iterdir() if not p.name.startswith(".")) == list(done)
        assert not _runs(storage)

    process = start(command, run_env)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    assert f"folder(s) that interrupted runs left in {root}: {previous}" in err
    (run_dir,) = _runs(storage)
    reused = {stage: ref["reused"] for stage, ref in _record(run_dir)["artifacts"].items()}
    assert reused == {"diffusion": True, "embeddings": True, "rewards": True, "policy-tge-iql-seed0": False}
    _assert_sound(storage, [ref["name"] for ref in _record(run_dir)["artifacts"].values()])
    assert not [p for p in root.iterdir() if p.name.startswith(".") and p.name != ".locks"], "no temp folder left"
    assert not [p for p in storage.iterdir() if p.name.startswith(".")]
    deadline = time.time() + 90  # the killed runs' Ray processes followed their drivers (agents within a minute)
    while processes_under(ray_tmp) and time.time() < deadline:
        time.sleep(0.5)
    assert processes_under(ray_tmp) == [], "a Ray process outlived its run"


def test_four_concurrent_runs_on_damaged_artifacts_build_each_once(tiny_store, tiny_datasets, tmp_path, run_env):
    """Four runs of one config start together on a store whose embeddings, rewards and policy are
    damaged: one of them moves each aside and rebuilds it, the others wait for it and reuse it."""
    storage = copy_store(tiny_store, tmp_path / "storage")
    modes = {"embeddings": "truncate", "rewards": "flip", "policy": "truncate"}  # a flipped model: test_store
    expected = _damage(storage, modes)
    (before,) = _runs(storage)

    processes = [start(tge_run_command(tiny_datasets, storage), run_env) for _ in range(4)]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]

    lines = [line for _, err in outputs for line in _damage_lines(err)]
    assert sorted(line.split(" is damaged")[0] for line in lines) == sorted(expected), lines
    for name, prefix in expected.items():
        (line,) = [line for line in lines if line.startswith(f"{name} is damaged")]
        assert line.startswith(prefix), line
        assert len(list((storage / "artifacts").glob(f".{name}.corrupt-*"))) == 1
    records = [_record(run_dir) for run_dir in _runs(storage) if run_dir != before]
    assert len(records) == 4, "four run folders, none over another"
    for name in expected:  # built by exactly one of the four
        built = [r for r in records for ref in r["artifacts"].values() if ref["name"] == name and not ref["reused"]]
        assert len(built) == 1, name
    assert all(r["scores"] == records[0]["scores"] and r["policies"] == records[0]["policies"] for r in records)
    _assert_sound(storage, expected)
