"""`tge run` end to end on a real local Ray with real Minari data, at the smoke budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import copy_store
from tests.pipeline.test_tensorboard import read_events
from tge_ray.cli import main
from tge_ray.config import load_config, resolve_config_path
from tge_ray.data.task import task_of_summary
from tge_ray.pipeline import files
from tge_ray.pipeline.run import run_experiment
from tge_ray.pipeline.run_folder import RunFolder
from tge_ray.pipeline.upgrade import SCHEMA_VERSION
from tge_ray.reward.kernels import kernel_reward


def _smoke(tiny_datasets, storage, *extra):
    return [
        "smoke",
        f"task.offline={tiny_datasets['offline']}",
        f"task.expert={tiny_datasets['expert']}",
        f"storage={storage}",
        *extra,
    ]


def test_run_writes_folder_and_reuses_artifacts(smoke_run, tiny_datasets, tmp_path):
    out, run_dir = smoke_run.printed, smoke_run.run_dir
    assert "tge-iql" in out and "bc" in out and "oracle-iql" in out and "ROC AUC" in out
    results = json.loads((run_dir / files.RESULTS_FILE).read_text())
    assert results["schema_version"] == SCHEMA_VERSION
    assert set(results["scores"]) == {"tge-iql", "bc", "oracle-iql"}
    assert all(np.isfinite(v) for v in results["scores"].values())
    assert 0.0 <= results["separation"]["auc"] <= 1.0
    assert results["config"]["windows"]["horizon"] == 8
    for name in (files.CONFIG_FILE, files.METRICS_FILE, files.REWARD_HISTOGRAM_FILE, files.EMBEDDING_PROJECTION_FILE):
        assert (run_dir / name).stat().st_size > 0
    for stage in ("diffusion", "policy-tge-iql-seed0", "policy-bc-seed0", "policy-oracle-iql-seed0"):
        assert files.run_checkpoint(run_dir, stage).stat().st_size > 0
    assert load_config(run_dir / files.CONFIG_FILE).task.offline == tiny_datasets["offline"]
    run = RunFolder.open(run_dir)  # the record reads back as written
    assert run.results.to_json() == results and run.config == load_config(run_dir / files.CONFIG_FILE)
    assert len(run.rewards().raw) == len(run.expert_flags()) == len(run.embeddings().mixed)
    events = read_events(run_dir / files.TENSORBOARD_DIR)  # written from what the stages stored
    assert [step for step, _ in events["eval/tge-iql/normalised_score"]] == [s for s, _ in run.results.eval_history["tge-iql"]]
    assert len(events["loss/diffusion"]) > 1 and any(tag.startswith("train/oracle-iql/") for tag in events)
    assert {"reward/raw/expert", "reward/raw/other", "embedding/projection", "reward/histogram"} <= set(events)

    # On a copy of the store: a second run with the same config reuses every stage; a new sigma
    # redoes only rewards + TGE.
    store = copy_store(smoke_run.store, tmp_path / "store")
    cfg = load_config(run_dir / files.CONFIG_FILE, ["reward.sigma=0.5", "methods=[tge]", f"storage={store}"])
    again = run_experiment(cfg, progress=False)
    reused = {name: a["reused"] for name, a in again.artifacts.items()}
    assert reused == {"diffusion": True, "embeddings": True, "rewards": False, "policy-tge-iql-seed0": False}

    # reward.expert_windows=complete changes only the expert index: new rewards, same embeddings.
    cfg = load_config(run_dir / files.CONFIG_FILE, ["reward.expert_windows=complete", "methods=[tge]", "rl.steps=1",
                                                       f"storage={store}"])
    complete = run_experiment(cfg, progress=False)
    assert complete.artifacts["embeddings"]["reused"] and not complete.artifacts["rewards"]["reused"]
    raws = []
    for artifact in (results["artifacts"]["rewards"], complete.artifacts["rewards"]):
        raws.append(files.read_rewards(artifact["path"]).raw)
    assert raws[0].shape == raws[1].shape and not np.array_equal(raws[0], raws[1])

    # reward.skip_demo_start=4 leaves the demo's first 4 windows out of the index: the rewards
    # are the kernel of the distances to the other windows, computed here by brute force.
    cfg = load_config(run_dir / files.CONFIG_FILE, ["reward.skip_demo_start=4", "methods=[tge]", "rl.steps=1",
                                                       f"storage={store}"])
    skipped = run_experiment(cfg, progress=False)
    assert skipped.artifacts["embeddings"]["reused"] and not skipped.artifacts["rewards"]["reused"]
    embeddings = files.read_embeddings(skipped.artifacts["embeddings"]["path"])
    mixed, demos = embeddings.mixed.astype(np.float64), embeddings.demos.astype(np.float64)
    raw = files.read_rewards(skipped.artifacts["rewards"]["path"]).raw
    assert len(demos) > 4  # one demo episode, longer than the skip
    index = demos[4:]
    squared = (mixed**2).sum(1)[:, None] + (index**2).sum(1)[None, :] - 2 * mixed @ index.T
    nearest = np.sqrt(np.clip(np.sort(squared, axis=1)[:, : cfg.reward.k], 0, None))
    expected = kernel_reward(nearest, cfg.reward.kernel, cfg.reward.sigma)
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(raw, raws[0], atol=1e-4)


def test_same_seed_gives_identical_rewards(smoke_run, tiny_datasets, tmp_path):
    """A second store built from nothing with the smoke run's seed: the same rewards, bit for bit."""
    overrides = _smoke(tiny_datasets, tmp_path, "methods=[tge]", "rl.steps=1")[1:]
    result = run_experiment(load_config(resolve_config_path("smoke"), overrides), progress=False)
    assert not result.artifacts["diffusion"]["reused"]
    first = json.loads((smoke_run.run_dir / files.RESULTS_FILE).read_text())["artifacts"]["rewards"]
    assert result.artifacts["rewards"]["name"] == first["name"]
    np.testing.assert_array_equal(files.read_rewards(result.artifacts["rewards"]["path"]).raw,
                                  files.read_rewards(first["path"]).raw)


def test_k_larger_than_expert_windows_is_one_line(ray_session, tiny_datasets, tmp_path, capsys):
    assert main(["run", "-q", *_smoke(tiny_datasets, tmp_path, "reward.k=100000", "methods=[tge]")]) == 2
    err = capsys.readouterr().err
    assert "reward.k=100000" in err and err.count("\n") == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("test-hopper")], "no run folder for a failed run"
    assert not (tmp_path / "artifacts").exists(), "no artifact folders for a run that built nothing"


def test_unreachable_ray_address(tmp_path):
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "tge_ray.cli", "run", "smoke", "resources.address=127.0.0.1:9", f"storage={tmp_path}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_ADDRESS": ""})
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tge: error: resources.address='127.0.0.1:9' does not answer")


def test_no_expert_data_in_d_mu_writes_strict_json(ray_session, tiny_datasets, tmp_path, capsys):
    """N = 0: the separation diagnostic is undefined; the table says so and results.json holds null.
    The rank correlation with D_mu's true reward needs no expert data: it is recorded, as scipy
    computes it from the run's raw rewards and D_mu."""
    extra = ("task.n_expert_trajs=0", "methods=[tge]", "rl.steps=1", "evaluation.every=1")
    assert main(["run", "-q", *_smoke(tiny_datasets, tmp_path, *extra)]) == 0
    out = capsys.readouterr().out
    assert "separation: none, D_mu holds no expert-flagged transitions" in out and "nan" not in out
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("test-hopper-random-v0__")]

    def reject(constant):
        raise ValueError(f"results.json is not strict JSON: {constant}")

    results = json.loads((run_dir / files.RESULTS_FILE).read_text(), parse_constant=reject)
    assert results["separation"]["auc"] is None and results["separation"]["n_expert"] == 0

    from scipy.stats import spearmanr

    task = task_of_summary(results["task"])
    raw = files.read_rewards(results["artifacts"]["rewards"]["path"]).raw
    rho = spearmanr(raw, task.mixed.rewards).statistic
    assert results["true_reward_correlation"]["transitions"] == pytest.approx(rho, abs=1e-9)
    assert -1.0 <= results["true_reward_correlation"]["episodes"] <= 1.0
    assert f"Spearman {rho:+.3f} per transition" in out


def test_filtered_bc_trains_on_the_best_episodes(smoke_run, tiny_datasets, tmp_path, capsys):
    """rl.backbone=fbc at its defaults: BC on the episodes above Otsu's cut of the shrunk episode
    scores (on the smoke run's rewards, in a copy of its store)."""
    from tge_ray.rl.filtered import top_episodes

    copy_store(smoke_run.store, tmp_path, stages=("diffusion", "embeddings", "rewards"), runs=False)

    extra = ("rl.backbone=fbc", "methods=[tge,bc]", "rl.steps=2", "evaluation.every=2")
    assert main(["run", "-q", *_smoke(tiny_datasets, tmp_path, *extra)]) == 0
    out = capsys.readouterr().out
    assert "tge-fbc" in out and "filtered BC (Otsu cut):" in out
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("test-hopper-random-v0__fbc__")]
    results = json.loads((run_dir / files.RESULTS_FILE).read_text())
    assert set(results["scores"]) == {"tge-fbc", "bc"}
    assert results["artifacts"]["policy-tge-fbc-seed0"]["path"] != results["artifacts"]["policy-bc-seed0"]["path"]
    kept = results["filtered_bc"]
    assert kept["rule"] == "auto" and 0 < kept["episodes"] < kept["episodes_total"]
    # The same selection again from the stored rewards, the task's episode numbers, and a prior
    # of one window (rl.fbc.prior = 1 times windows.horizon rows).
    from tge_ray.data.task import task_of_summary

    task = task_of_summary(results["task"])
    horizon = results["config"]["windows"]["horizon"]
    scaled = files.read_rewards(results["artifacts"]["rewards"]["path"]).scaled
    again = top_episodes(scaled, task.mixed.episode_ids, "auto", prior=float(horizon))
    plain = top_episodes(scaled, task.mixed.episode_ids, "auto")
    assert again.transitions == kept["transitions"] and again.threshold == pytest.approx(kept["threshold"])
    assert plain.threshold != pytest.approx(kept["threshold"])  # the prior did enter the score
    assert kept["expert_share"] == pytest.approx(task.expert_flags[again.mask].mean())
    assert main(["report", str(run_dir)]) == 0
    text = (run_dir / "report.md").read_text()
    assert f"TGE-filtered BC (Otsu cut): {kept['episodes']} of {kept['episodes_total']} episodes" in text
    assert "shrunk towards D_mu's mean by 1 window(s) of H" in text


def test_rl_seeds_train_as_one_batch_and_more_seeds_reuse_the_first(smoke_run, tiny_datasets, tmp_path, capsys):
    """rl.seeds=2: two policies per method over the same rewards (the smoke run's, in a copy of
    its store), reported as mean ± std; asking for three later trains only the third, one policy
    per method in one batch."""
    copy_store(smoke_run.store, tmp_path, stages=("diffusion", "embeddings", "rewards"), runs=False)
    extra = ("methods=[tge,oracle]", "rl.steps=4", "evaluation.every=2", "rl.seeds=2")
    assert main(["run", "-q", *_smoke(tiny_datasets, tmp_path, *extra)]) == 0
    out = capsys.readouterr().out
    assert "(mean ± std, 2 seeds)" in out
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("test-hopper-random-v0__")]
    results = json.loads((run_dir / files.RESULTS_FILE).read_text())
    for label in ("tge-iql", "oracle-iql"):
        policies = results["policies"][label]
        assert [p["seed"] for p in policies] == [0, 1]
        scores = [p["score"] for p in policies]
        assert results["scores"][label] == pytest.approx(np.mean(scores))
        assert results["score_std"][label] == pytest.approx(np.std(scores))
        assert results["eval_history"][label][-1] == [4, pytest.approx(np.mean(scores))]
    assert len({p["artifact"] for rows in results["policies"].values() for p in rows}) == 4

    cfg = load_config(run_dir / files.CONFIG_FILE, ["rl.seeds=3"])
    again = run_experiment(cfg, progress=False)
    reused = {name: a["reused"] for name, a in again.artifacts.items() if name.startswith("policy-")}
    assert reused == {"policy-tge-iql-seed0": True, "policy-tge-iql-seed1": True, "policy-tge-iql-seed2": False,
                      "policy-oracle-iql-seed0": True, "policy-oracle-iql-seed1": True,
                      "policy-oracle-iql-seed2": False}
    assert [p["score"] for p in again.policies["tge-iql"][:2]] == [p["score"] for p in results["policies"]["tge-iql"]]

    # The reports count RL seeds as seeds: the run's table gives mean ± std over its two, the
    # folder's table over the three final policies of seed 0 (the two runs share the first two).
    assert main(["report", str(run_dir)]) == 0
    scores = [p["score"] for p in results["policies"]["tge-iql"]]
    run_row = f"| tge-iql | {np.mean(scores):.2f} ± {np.std(scores):.2f} (2 seeds) |"
    assert run_row in (run_dir / "report.md").read_text()
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "collection")]) == 0
    (row,) = [line for line in (tmp_path / "collection" / "report.md").read_text().splitlines()
              if line.startswith("| test/hopper/random-v0 ")]
    for label in ("tge-iql", "oracle-iql"):
        scores = [p["score"] for p in again.policies[label]]
        assert f"| {np.mean(scores):.1f} ± {np.std(scores):.1f} (3) |" in row, (label, row)


def test_per_seed_hyper_parameters_are_reported_apart(ray_session, tiny_datasets, tmp_path):
    extra = ("methods=[oracle]", "rl.steps=2", "evaluation.every=2", "rl.seeds=2", "rl.iql.beta=[1,10]")
    cfg = load_config(resolve_config_path("smoke"), _smoke(tiny_datasets, tmp_path, *extra)[1:])
    result = run_experiment(cfg, progress=False)
    assert set(result.scores) == {"oracle-iql[beta=1]", "oracle-iql[beta=10]"}
    assert [p["seed"] for p in result.policies["oracle-iql[beta=10]"]] == [1]
