"""Every diagnostic of `tge diagnose`, in-process, on a real smoke run (real Minari data, env, faiss)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tge_ray.cli import main
from tge_ray.diagnose import DIAGNOSTICS
from tge_ray.errors import TGEError
from tge_ray.pipeline.run_folder import RunFolder


@pytest.fixture(scope="module")
def run(smoke_run):
    """The session's smoke run (TGE, BC and oracle: every stage really ran), opened; diagnostics
    only read it."""
    (run_dir,) = RunFolder.inside(smoke_run.store)
    return RunFolder.open(run_dir)


def test_window_reference(run):
    """The k-NN reward on the standardised windows themselves: its rank correlation with D_mu's
    true reward beside the run's own, and a learner trained on it."""
    from scipy.stats import spearmanr

    from tge_ray.diagnose.window_reference import window_reference

    result = window_reference(run, horizon=1, skip=2, k=1, rl_steps=10)
    assert (result.tge.transitions, result.tge.episodes) == pytest.approx(
        (run.results.true_reward_correlation["transitions"], run.results.true_reward_correlation["episodes"]))
    # H = 1, k = 1: the reward falls with each state's distance to the nearest demo state after
    # the demo's first 2, so it ranks D_mu as that distance does (brute force here).
    task = run.task()
    states, demo = task.standardize(task.mixed.observations), task.standardize(task.demo_observations)[2:]
    nearest = np.sqrt(((states[:, None, :] - demo[None, :, :]) ** 2).sum(-1)).min(1)
    assert result.windows.transitions == pytest.approx(spearmanr(-nearest, task.mixed.rewards).statistic, abs=1e-6)
    assert (result.horizon, result.k, result.skip_demo_start, result.demo_windows) == (1, 1, 2, len(demo))
    assert (result.run_horizon, result.run_k) == (8, run.config.reward.k)
    assert result.policy.learner == "iql" and [step for step, _ in result.policy.eval_history] == [2, 4, 6, 8, 10]
    assert "k-NN on the windows" in "\n".join(result.lines())
    with pytest.raises(TGEError, match="exceeds the 1 expert windows"):  # a skip past the demo: fewer than k
        window_reference(run, skip=100_000, k=2)


def test_rollout_reward(run):
    """Rollouts labelled with the run's own reward (real env, real index), beside D_mu's rewards."""
    from tge_ray.diagnose.rollout_reward import rollout_reward

    result = rollout_reward(run, steps=20, episodes=1)
    assert [row.policy for row in result.rollouts] == ["zero action", "uniform random action",
                                                      *(f"{label}-seed0" for label in run.results.scores)]
    for row in result.rollouts:
        assert 1 <= row.steps <= 20 and math.isfinite(row.tge_reward_mean) and math.isfinite(row.env_return_mean)
    stored = run.rewards().scaled  # D_mu's min-max scaled rewards lie in [0, 1]
    flags = run.expert_flags()
    assert result.d_mu_other_mean == pytest.approx(stored[~flags].mean())
    assert result.d_mu_expert_mean == pytest.approx(stored[flags].mean())
    assert 0.0 <= result.d_mu_other_mean <= 1.0


def test_reward_profile(run):
    """The stored rewards averaged by position in D_mu's episodes, checked against a direct count."""
    from tge_ray.diagnose.reward_profile import reward_profile
    from tge_ray.pipeline.policies import oracle_rewards

    result = reward_profile(run, from_start=(0, 1), to_end=(0, 1000))
    assert result.horizon == 8 and [group.name for group in result.groups] == ["expert-flagged", "other"]
    task, stored = run.task(), run.rewards().scaled
    mixed = task.mixed
    first_rows = mixed.episode_starts[:-1]
    expected = stored[first_rows[~task.expert_flags[first_rows]]].mean()  # step 0 of the random episodes
    assert dict(result.group("other").from_start)[0] == pytest.approx(expected)
    for group in result.groups:  # no episode is 1001 steps long
        assert dict(group.to_end)[1000] is None and 0.0 <= dict(group.to_end)[0] <= 1.0
    oracle, flags = oracle_rewards(task), task.expert_flags  # the true reward as oracle-IQL sees it
    assert result.group("expert-flagged").oracle_mean == pytest.approx(oracle[flags].mean())
    assert result.group("other").oracle_mean == pytest.approx(oracle[~flags].mean())
    contrast = stored[flags].mean() - stored[~flags].mean()
    assert f"contrast (expert-flagged mean - other mean): {contrast:.3f}" in result.lines()[-1]


def test_policy_ceiling(run, tmp_path):
    """Both references trained on the run's D_mu, and the run's curves beside them."""
    from tge_ray.diagnose.policy_ceiling import policy_ceiling

    result = policy_ceiling(run, seeds=(0,), steps=20, every=10, episodes=1, overrides=("evaluation.num_envs=1",))
    assert [row.name for row in result.rows[:2]] == ["bc-expert", "iql-flag"]
    for row in result.rows[:2]:  # evaluated at 10 and 20 updates; the second half is the last evaluation
        assert [step for step, _ in row.eval_history] == [10, 20]
        assert row.final == row.late_mean == row.eval_history[-1][1] and row.late_good_share in (0.0, 1.0)
    from_run = {row.name.split(":")[1]: row.final for row in result.rows[2:]}
    assert from_run == pytest.approx(run.results.scores)  # every method of the run, its final score
    with pytest.raises(TGEError, match="no_such_key"):
        policy_ceiling(run, seeds=(0,), steps=2, overrides=("rl.iql.no_such_key=1",))


def test_expert_share(run):
    """The expert share among the nearest D_mu states, against a brute-force count at step 0."""
    from tge_ray.diagnose.expert_share import expert_share

    task = run.task()
    result = expert_share(task, steps=(0, 1, 10_000), neighbours=3)
    assert result.n_expert_trajs == task.n_expert_trajs and result.expert_transitions == int(task.expert_flags.sum())
    states = task.standardize(task.mixed.observations).astype(np.float64)
    first = task.mixed.episode_starts[:-1]  # each episode's first row
    starts = first[task.expert_flags[first]]
    distances = ((states[starts][:, None, :] - states[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :3]
    shares = dict(result.by_step)
    assert shares[0] == pytest.approx(task.expert_flags[nearest].mean())
    assert shares[10_000] is None and 0.0 <= shares[1] <= 1.0


def test_cli_lists_and_runs_every_diagnostic(run, tmp_path, capsys):
    """`tge diagnose --help` names every diagnostic; a subcommand prints its result and writes
    --json; a folder that is not a run is one line and exit 2, nothing written."""
    with pytest.raises(SystemExit) as done:
        main(["diagnose", "--help"])
    assert done.value.code == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in DIAGNOSTICS)
    for name in DIAGNOSTICS:
        with pytest.raises(SystemExit):
            main(["diagnose", name, "--help"])
        assert "usage: tge diagnose " + name in capsys.readouterr().out

    out = tmp_path / "profile.json"
    assert main(["diagnose", "reward-profile", str(run.path), "--from-start", "0", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{run.path.name}: H = 8" in printed and "expert-flagged" in printed
    assert json.loads(out.read_text())[0]["horizon"] == 8

    bad = tmp_path / "bad.json"
    assert main(["diagnose", "rollout-reward", str(tmp_path), "--json", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tge: error: ") and err.strip().count("\n") == 0 and "not a `tge run` folder" in err
    assert not bad.exists()
