"""`tge data import`: small D4RL-format HDF5 and .npz files, written here, read back through Minari."""

from __future__ import annotations

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest

from tge_ray.cli import main
from tge_ray.data import d4rl_import
from tge_ray.data.minari_io import open_dataset
from tge_ray.data.task import mix_task
from tge_ray.errors import DataError


@pytest.fixture(autouse=True)
def datasets_path(tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    monkeypatch.setenv("TGE_CACHE_DIR", str(tmp_path / "cache"))
    return root


def d4rl_arrays(env_id="Hopper-v5", steps=300, max_steps=40, seed=0, policy="random", **env_kwargs):
    """Flat arrays as D4RL stores them: rows in step order, episodes ended by terminals or timeouts
    (the short time limit makes both happen), the last episode cut off by the end of the file."""
    env = gym.make(env_id, max_episode_steps=max_steps, **env_kwargs)
    env.action_space.seed(seed)
    rows = {key: [] for key in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")}
    obs, _ = env.reset(seed=seed)
    for step in range(steps):
        action = env.action_space.sample() if policy == "random" else np.zeros(env.action_space.shape, np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(rows, (obs, action, reward, terminated, truncated, next_obs)):
            rows[key].append(value)
        obs = env.reset(seed=seed + step + 1)[0] if terminated or truncated else next_obs
    arrays = {key: np.asarray(value) for key, value in rows.items()}
    arrays["observations"] = arrays["observations"].astype(np.float32)  # D4RL's dtypes
    arrays["actions"] = arrays["actions"].astype(np.float32)
    return arrays


def write_hdf5(path, arrays):
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
        handle.create_dataset("infos/qpos", data=np.zeros((len(arrays["rewards"]), 3)))  # ignored, as in D4RL
    return path


def qlearning_dataset(arrays):
    """d4rl.qlearning_dataset's loop (with timeouts, terminate_on_end=False), the reference."""
    keep = {key: [] for key in ("observations", "actions", "next_observations", "rewards", "terminals")}
    for i in range(len(arrays["rewards"]) - 1):
        if arrays["timeouts"][i]:
            continue
        keep["observations"].append(arrays["observations"][i])
        keep["actions"].append(arrays["actions"][i])
        keep["next_observations"].append(arrays["observations"][i + 1])
        keep["rewards"].append(arrays["rewards"][i])
        keep["terminals"].append(bool(arrays["terminals"][i]))
    return {key: np.asarray(value) for key, value in keep.items()}


def test_hdf5_by_its_d4rl_name_gives_qlearning_transitions_scores_and_eval_env(tmp_path):
    arrays = d4rl_arrays()
    assert arrays["terminals"].any() and arrays["timeouts"].any()  # both ways an episode ends
    path, written = d4rl_import.import_dataset(write_hdf5(tmp_path / "hopper-random-v2.hdf5", arrays))
    assert written and path.name == "random-v2"
    data = open_dataset("d4rl/hopper/random-v2")
    expected = qlearning_dataset(arrays)
    for key in ("observations", "actions", "next_observations", "rewards", "terminals"):
        assert np.allclose(getattr(data, key), expected[key], atol=1e-6), key
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    assert data.n_episodes == len(ends) + 1  # the cut last episode too
    assert data.timeouts.sum() == data.n_episodes - data.terminals.sum()  # every other episode truncated
    assert (data.ref_min_score, data.ref_max_score) == d4rl_import.D4RL_REF_SCORES["hopper"] == (-20.272305, 3234.3)
    dataset = minari.load_dataset("d4rl/hopper/random-v2")
    assert dataset.recover_environment(eval_env=True).spec.id == "Hopper-v5"
    again, rewritten = d4rl_import.import_dataset(tmp_path / "hopper-random-v2.hdf5")  # kept unless forced
    assert again == path and not rewritten


def test_npz_with_given_id_env_and_scores_builds_the_lfo_task(tmp_path):
    offline = tmp_path / "my_random.npz"
    np.savez(offline, **d4rl_arrays(seed=1))
    expert = write_hdf5(tmp_path / "hopper_expert-v2.hdf5", d4rl_arrays(seed=2, steps=400, policy="zero"))
    d4rl_import.import_dataset(offline, dataset_id="mine/hopper/random-v0", env_id="Hopper-v5",
                               ref_min=-20.0, ref_max=3000.0)
    d4rl_import.import_dataset(expert)  # D4RL's own file name: hopper_expert-v2 -> d4rl/hopper/expert-v2
    task = mix_task(open_dataset("mine/hopper/random-v0"), open_dataset("d4rl/hopper/expert-v2"), 2, 1)
    assert task.mixed.ref_max_score == 3000.0 and task.expert_flags.sum() > 0
    assert task.mixed.eval_env_spec.id == "Hopper-v5"


def test_d4rl_ant_drops_its_zero_contact_forces_and_evaluates_without_them(tmp_path):
    arrays = d4rl_arrays("Ant-v5", steps=120, max_steps=50, include_cfrc_ext_in_observation=False)
    arrays["observations"] = np.concatenate([arrays["observations"], np.zeros((120, 84), np.float32)], axis=1)
    d4rl_import.import_dataset(write_hdf5(tmp_path / "ant-medium-v2.hdf5", arrays))
    data = open_dataset("d4rl/ant/medium-v2")
    assert data.obs_dim == 27 and data.ref_max_score == 3879.7
    env = minari.load_dataset("d4rl/ant/medium-v2").recover_environment(eval_env=True)
    assert env.observation_space.shape == (27,) and env.spec.kwargs["contact_cost_weight"] == 0.0
    arrays["observations"][5, 60] = 1.0
    with pytest.raises(DataError, match="contact-force columns 27.. are not zero"):
        d4rl_import.import_dataset(write_hdf5(tmp_path / "ant-expert-v2.hdf5", arrays))


def _broken(arrays, how):
    if how == "missing":
        del arrays["timeouts"]
    elif how == "lengths":
        arrays["actions"] = arrays["actions"][:-3]
    elif how == "nan":
        arrays["rewards"][17] = np.nan
    return arrays


@pytest.mark.parametrize(
    ("how", "suffix", "message"),
    [
        ("missing", ".hdf5", "lacks timeouts: a D4RL-format file needs"),
        ("missing", ".npz", "lacks timeouts"),
        ("lengths", ".hdf5", "differ in length .*actions 297"),
        ("nan", ".npz", "rewards of hopper-random-v2.npz hold NaN or inf \\(first at row 17\\)"),
    ],
)
def test_bad_files_are_one_line_and_write_nothing(tmp_path, datasets_path, capsys, how, suffix, message):
    path = tmp_path / f"hopper-random-v2{suffix}"
    arrays = _broken(d4rl_arrays(), how)
    write_hdf5(path, arrays) if suffix == ".hdf5" else np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        d4rl_import.import_dataset(path)
    assert main(["data", "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tge: error:") and err.count("\n") == 1
    assert not datasets_path.exists() or not any(datasets_path.rglob("*.hdf5"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no reference scores for data.npz"),
        ({"ref_min": 0.0, "ref_max": 1.0}, "no evaluation env for data.npz"),
        ({"ref_min": 0.0, "ref_max": 1.0, "env_id": "Hopper-v5"}, "no dataset id"),
        ({"d4rl_name": "hopper-noisy-v2"}, "not a D4RL locomotion name"),
        ({"d4rl_name": "hopper-random-v2", "env_id": "Walker2d-v5"}, "have 11 columns, Walker2d-v5 gives"),
        ({"d4rl_name": "hopper-random-v2", "env_id": "CartPole-v1"}, "not continuous control"),
        ({"d4rl_name": "hopper-random-v2", "ref_min": 5.0}, "both --ref-min and --ref-max"),
    ],
)
def test_what_the_file_does_not_say_must_be_given(tmp_path, datasets_path, kwargs, message):
    path = tmp_path / "data.npz"
    np.savez(path, **d4rl_arrays(steps=60))
    with pytest.raises(DataError, match=message):
        d4rl_import.import_dataset(path, **kwargs)
    assert not datasets_path.exists() or not any(datasets_path.rglob("*.hdf5"))


def test_d4rl_names_in_both_spellings():
    assert d4rl_import.parse_d4rl_name("hopper-medium-replay-v2") == d4rl_import.D4RLName("hopper", "medium-replay", 2)
    assert d4rl_import.parse_d4rl_name("walker2d_medium_expert-v2").dataset_id == "d4rl/walker2d/medium-expert-v2"
    assert d4rl_import.parse_d4rl_name("antmaze-umaze-v2") is None and d4rl_import.parse_d4rl_name("x") is None
