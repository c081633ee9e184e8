"""`tge data make`: each quality for Hopper and PointMaze at tiny sizes, loaded back through Minari."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import minari
import numpy as np
import pytest

from tge_ray.data import experts, make
from tge_ray.errors import DataError


@pytest.fixture(autouse=True)
def datasets_path(tmp_path, monkeypatch):
    """Every test writes under its own MINARI_DATASETS_PATH, never ~/.minari."""
    root = tmp_path / "datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _returns(dataset) -> np.ndarray:
    return np.array([episode.rewards.sum() for episode in dataset.iterate_episodes()])


def test_hopper_each_quality_loads_with_shipped_reference_scores():
    shipped = json.loads((experts.EXPERTS_DIR / "hopper.json").read_text())
    for quality, kwargs in (("random", {"size": 300}), ("medium", {"size": 301}), ("expert", {"episodes": 2})):
        dataset_id = f"tge/hopper/{quality}-v0"
        make.make_dataset(dataset_id, progress=False, **kwargs)
        dataset = minari.load_dataset(dataset_id)
        assert dataset.storage.metadata["ref_min_score"] == pytest.approx(shipped["random"]["return_mean"])
        assert dataset.storage.metadata["ref_max_score"] == pytest.approx(shipped["expert"]["return_mean"])
        if quality != "random":  # which shipped actor made it
            digest = make._file_digest(experts.EXPERTS_DIR / f"hopper_{quality}.pt")
            assert dataset.storage.metadata["algorithm_name"].endswith(f"sha256 {digest})")
        if quality == "expert":
            assert dataset.total_episodes == 2
            assert all(e.terminations[-1] or e.truncations[-1] for e in dataset.iterate_episodes())
        else:
            assert dataset.total_steps == kwargs["size"]
        episode = next(dataset.iterate_episodes())
        assert episode.observations.shape == (len(episode.actions) + 1, 11)
        normalized = minari.get_normalized_score(dataset, _returns(dataset))
        assert np.isfinite(normalized).all()
        assert dataset.recover_environment(eval_env=True).spec.id == "Hopper-v5"
    expert = minari.load_dataset("tge/hopper/expert-v0")
    assert minari.get_normalized_score(expert, _returns(expert)).mean() > 0.5


def test_pointmaze_each_quality_has_dict_observations_and_fixed_goal_eval_env():
    for quality, kwargs in (("random", {"size": 200}), ("medium", {"size": 200}), ("expert", {"episodes": 2})):
        dataset_id = f"tge/pointmaze-umaze/{quality}-v0"
        make.make_dataset(dataset_id, progress=False, **kwargs)
        dataset = minari.load_dataset(dataset_id)
        episode = next(dataset.iterate_episodes())
        steps = len(episode.actions)
        assert {k: v.shape for k, v in episode.observations.items()} == {
            "achieved_goal": (steps + 1, 2), "desired_goal": (steps + 1, 2), "observation": (steps + 1, 4)}
        assert dataset.total_episodes == 2 if quality == "expert" else dataset.total_steps == 200
        env = dataset.recover_environment(eval_env=True)
        assert env.unwrapped.maze.maze_map[1][1] == "g"  # the documented fixed goal cell (1, 1)
        low, high = dataset.storage.metadata["ref_min_score"], dataset.storage.metadata["ref_max_score"]
        assert (low, high) == make._task_ref_scores("pointmaze-umaze") and high > low + 100
    expert = minari.load_dataset("tge/pointmaze-umaze/expert-v0")
    assert minari.get_normalized_score(expert, _returns(expert)).mean() > 0.8


def test_seed_fixes_the_data_and_existing_data_is_kept_unless_forced():
    def arrays(seed: int, force: bool) -> list[np.ndarray]:
        make.make_dataset("tge/hopper/random-v0", size=150, seed=seed, force=force, progress=False)
        dataset = minari.load_dataset("tge/hopper/random-v0")
        return [np.concatenate([e.observations[:-1], e.actions], axis=1) for e in dataset.iterate_episodes()]

    first = arrays(seed=3, force=False)
    kept = arrays(seed=4, force=False)  # exists: kept as is, seed 4 ignored
    again = arrays(seed=3, force=True)
    other = arrays(seed=4, force=True)
    assert all(np.array_equal(a, b) for a, b in zip(first, kept, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("task", sorted(experts.LOCOMOTION_ENVS))
def test_each_shipped_expert_is_far_above_random(task):
    shipped = experts.expert_record(experts.EXPERTS_DIR / f"{task}_expert.pt")
    random, medium, expert = (shipped[q]["return_mean"] for q in ("random", "medium", "expert"))
    assert random < medium < expert
    returns = experts.evaluate(experts.load_policy(task, "expert"), shipped["env_id"], episodes=2, seed=7)
    assert returns.mean() > random + 0.5 * (expert - random)  # fresh episodes, not the record's


def test_any_env_with_an_expert_file(datasets_path):
    path = make.make_dataset(env_id="Hopper-v5", expert_path=str(experts.EXPERTS_DIR / "hopper_medium.pt"),
                             episodes=1, progress=False)
    assert path == datasets_path / "tge" / "hopper-v5" / "expert-v0"
    dataset = minari.load_dataset("tge/hopper-v5/expert-v0")
    assert dataset.total_episodes == 1 and dataset.storage.metadata["ref_max_score"] > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset_id": "tge/swimmer/random-v0"}, "unknown task 'swimmer'"),
        ({"dataset_id": "tge/hopper/great-v0"}, "unknown quality 'great'"),
        ({"dataset_id": "tge/hopper/random-v0", "size": 0}, "size=0 must be > 0"),
        ({"env_id": "CartPole-v1", "expert_path": "x.pt"}, "not continuous control"),
        ({"env_id": "Hopper-v5", "expert_path": "missing.pt"}, "does not exist"),
        ({"env_id": "Swimmer-v5", "expert_path": "missing/swimmer-v5_expert.pt", "quality": "medium"},
         "'missing/swimmer-v5_expert.pt' does not exist: give the actor file `tge data train-expert --env Swimmer-v5`"),
        ({"env_id": "NoSuchEnv-v0", "expert_path": "x.pt"}, "cannot make env 'NoSuchEnv-v0'"),
        ({"env_id": "Hopper-v5", "expert_path": str(experts.EXPERTS_DIR / "walker2d_expert.pt")},
         "trained on Walker2d-v5 .* pass --env Walker2d-v5"),
        ({"env_id": "Hopper-v5", "expert_path": str(experts.EXPERTS_DIR / "hopper_medium.pt"), "quality": "medium"},
         "quality 'medium' with --env needs"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(kwargs, message, datasets_path):
    with pytest.raises(DataError, match=message):
        make.make_dataset(progress=False, **kwargs)
    assert not (datasets_path / "tge").exists()


def test_corrupt_expert_file_and_full_disk_write_nothing(tmp_path, datasets_path, monkeypatch):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a state dict")
    with pytest.raises(DataError, match="not a readable actor state_dict"):
        make.make_dataset(env_id="Hopper-v5", expert_path=str(corrupt), progress=False)
    # The disk's free space is the environment, not our code: report it as nearly full.
    monkeypatch.setattr(make.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 40, 1 << 40, 1000))
    with pytest.raises(DataError, match="not enough disk space"):
        make.make_dataset("tge/hopper/random-v0", size=100, progress=False)
    assert not (datasets_path / "tge" / "hopper").exists()
    assert not list(datasets_path.parent.glob(".datasets.partial-*"))


def test_a_kept_dataset_made_with_another_expert_is_refused(datasets_path):
    path = make.make_dataset("tge/hopper/random-v0", size=100, progress=False)
    metadata = path / "data" / "metadata.json"
    stale = json.loads(metadata.read_text()) | {"ref_max_score": 1234.5}  # an earlier expert's figure
    metadata.write_text(json.dumps(stale))
    with pytest.raises(DataError, match=r"another expert .* remake it with `tge data make tge/hopper/random-v0 --force`"):
        make.make_dataset("tge/hopper/random-v0", size=100, progress=False)
    assert json.loads(metadata.read_text()) == stale  # refused, not touched
    make.make_dataset("tge/hopper/random-v0", size=100, force=True, progress=False)
    assert minari.load_dataset("tge/hopper/random-v0").storage.metadata["ref_max_score"] == pytest.approx(
        make._task_ref_scores("hopper")[1])


def test_random_policy_is_uniform_within_bounds():
    space = gym.spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 3.0], np.float32))
    actions = experts.random_policy(space, seed=0)(np.zeros((5000, 4)))
    assert actions.shape == (5000, 2)
    assert (actions >= space.low).all() and (actions <= space.high).all()
    assert np.allclose(actions.mean(axis=0), [0.0, 1.5], atol=0.05)


def test_ant_is_a_task_whose_datasets_wait_for_its_expert(tmp_path, datasets_path, monkeypatch):
    assert make.TASKS["ant"].env_id == "Ant-v5" and not make.TASKS["ant"].scripted
    monkeypatch.setattr(experts, "EXPERTS_DIR", tmp_path / "no_experts_yet")
    for quality in make.QUALITIES:
        with pytest.raises(DataError, match=r"no readable expert record .* `tge data train-expert ant`"):
            make.make_dataset(f"tge/ant/{quality}-v0", size=100, episodes=1, progress=False)
    assert not (datasets_path / "tge").exists()


def test_workers_below_one_is_one_line():
    with pytest.raises(DataError, match="workers=0 must be >= 1"):
        make.make_dataset("tge/hopper/random-v0", size=100, workers=0, progress=False)
