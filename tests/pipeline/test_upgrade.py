"""Run folders of earlier versions read as this version's: written here as the old code wrote them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tge_ray.config import dump_config, load_config, to_dict
from tge_ray.errors import ConfigError
from tge_ray.pipeline import files
from tge_ray.pipeline.run_folder import RunFolder, RunFolderError, RunRecord
from tge_ray.pipeline.upgrade import SCHEMA_VERSION, earlier_artifacts, upgrade_config, upgrade_results


def _version_1_folder(tmp_path, *, backbone="fbc"):
    """A run folder and its two artifacts as `tge run` wrote them before records had a
    schema_version: no task.demos (the demo came right after the mixed-in episodes), an rl.fbc
    section without prior or lr, rewards.npz and embeddings.npz written with np.savez."""
    config = to_dict(load_config(None, [f"rl.backbone={backbone}", "rl.bc.lr=0.0005", "seed=3", "embedding.pool=max"]))
    config["diffusion"].update(config.pop("embedding"))  # the embedding's settings were the diffusion section's
    del config["task"]["demos"]
    del config["rl"]["fbc"]["prior"], config["rl"]["fbc"]["lr"]
    del config["rl"]["iql"]["actor"], config["rl"]["seeds"]  # options of version 4
    bc = config["rl"].pop("bc")  # BC's settings were rl.bc_* keys then
    config["rl"].update(bc_hidden=bc["hidden"], bc_layers=bc["n_layers"], bc_lr=bc["lr"],
                        bc_batch_size=bc["batch_size"], bc_lr_schedule=bc["lr_schedule"])
    rewards_dir, embeddings_dir = tmp_path / "artifacts" / "rewards-0123", tmp_path / "artifacts" / "embeddings-4567"
    rewards_dir.mkdir(parents=True)
    embeddings_dir.mkdir(parents=True)
    raw = np.linspace(-2.0, 0.0, 10).astype(np.float32)
    np.savez(rewards_dir / "rewards.npz", raw=raw, scaled=(raw + 2.0) / 2.0)
    np.savez(embeddings_dir / "embeddings.npz", mixed=np.ones((10, 4), np.float32), demos=np.zeros((3, 4), np.float32))
    results = {
        "scores": {f"tge-{backbone}": 41.5, "bc": 12.0},
        "returns": {f"tge-{backbone}": {"mean": 1300.0, "std": 20.0}, "bc": {"mean": 400.0, "std": 5.0}},
        "separation": {"auc": 0.9, "mean_expert": -0.1, "mean_other": -1.5, "n_expert": 4, "n_other": 6},
        "reward_scaling": {"mode": "minmax", "shift": -2.0, "divisor": 2.0, "degenerate": False},
        "eval_history": {f"tge-{backbone}": [[100, 20.0], [200, 41.5]], "bc": [[200, 12.0]]},
        "task": {"offline": "tge/hopper/random-v0", "expert": "tge/hopper/expert-v0", "n_expert_trajs": 2,
                 "n_demos": 1, "mixed_transitions": 10, "mixed_episodes": 3, "expert_transitions_in_mixed": 4,
                 "demo_states": 3},
        "artifacts": {"rewards": {"name": "rewards-0123", "path": str(rewards_dir), "reused": False},
                      "embeddings": {"name": "embeddings-4567", "path": str(embeddings_dir), "reused": True}},
        "config": config,
    }
    run_dir = tmp_path / "tge-hopper-random-v0__fbc__H32__s3__20250101-000000"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run_dir, results


def test_a_version_1_folder_reads_as_it_ran(tmp_path):
    run_dir, written = _version_1_folder(tmp_path)
    run = RunFolder.open(run_dir)
    assert run.results.schema_version == SCHEMA_VERSION
    assert run.config.task.demos == "next" and run.results.task["demos"] == "next"
    assert run.config.rl.fbc.prior == 0.0  # the plain episode mean
    assert run.config.rl.fbc.lr == 0.0005  # the baseline's rate, which filtered BC trained at then
    assert run.config.rl.bc.lr == 0.0005 and run.config.rl.bc.n_layers == 2  # rl.bc_* moved into rl.bc
    assert run.config.rl.iql.actor == "gaussian" and run.config.rl.seeds == 1  # as IQL ran then
    assert run.config.seed == 3 and run.config.rl.backbone == "fbc" and run.config.embedding.pool == "max"
    assert run.results.scores == written["scores"] and run.results.returns["bc"] == (400.0, 5.0)
    assert run.results.eval_history["tge-fbc"] == [(100, 20.0), (200, 41.5)]
    np.testing.assert_array_equal(run.rewards().raw, np.linspace(-2.0, 0.0, 10).astype(np.float32))
    assert run.embeddings().demos.shape == (3, 4)
    assert run.expert_flags().tolist() == [False] * 6 + [True] * 4
    assert run.results.artifacts["embeddings"].reused and run.results.extra == {}


def test_upgrades_leave_what_a_field_already_says(tmp_path):
    run_dir, _ = _version_1_folder(tmp_path)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["task"]["demos"] = "last"
    config["rl"]["fbc"].update(prior=2.0, lr=0.01)
    upgraded = upgrade_config(config)
    assert (upgraded["task"]["demos"], upgraded["rl"]["fbc"]["prior"], upgraded["rl"]["fbc"]["lr"]) == ("last", 2.0, 0.01)
    assert "schema_version" not in upgraded and "demos" not in config["rl"]["fbc"], "the input is not changed"
    no_fbc = {key: value for key, value in config.items() if key != "rl"}  # a run older than rl.fbc itself
    assert "rl" not in upgrade_config(no_fbc)


def test_today_s_record_round_trips_and_keeps_keys_it_does_not_know(tmp_path):
    run_dir, written = _version_1_folder(tmp_path)
    record = RunFolder.open(run_dir).results
    data = {**record.to_json(), "per_seed": {"tge-fbc": [41.5, 40.0]}}  # a key a later version adds
    again = RunRecord.from_json(data)
    assert again.extra == {"per_seed": {"tge-fbc": [41.5, 40.0]}} and again.to_json() == data
    assert upgrade_results(data) == data  # this version's record: nothing to do


def test_a_record_from_a_newer_version_is_one_line(tmp_path):
    run_dir, written = _version_1_folder(tmp_path)
    (run_dir / "results.json").write_text(json.dumps({**written, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(RunFolderError, match=f"newer tge_ray \\(schema_version {SCHEMA_VERSION + 1};") as info:
        RunFolder.open(run_dir)
    assert "\n" not in str(info.value)
    config = tmp_path / "newer.yaml"
    config.write_text(yaml.safe_dump({"schema_version": SCHEMA_VERSION + 1, "seed": 1}))
    with pytest.raises(ConfigError, match="newer tge_ray"):
        load_config(config)


def test_a_written_config_is_stamped_and_loads_back(tmp_path):
    cfg = load_config(None, ["task.demos=next", "seed=2"])
    dump_config(cfg, tmp_path / files.CONFIG_FILE)
    assert yaml.safe_load((tmp_path / files.CONFIG_FILE).read_text())["schema_version"] == SCHEMA_VERSION
    assert load_config(tmp_path / files.CONFIG_FILE) == cfg


def test_gone_and_damaged_artifacts_are_one_line(tmp_path):
    run_dir, written = _version_1_folder(tmp_path)
    (tmp_path / "artifacts" / "rewards-0123" / "rewards.npz").write_bytes(b"PK\x03\x04 cut short")
    run = RunFolder.open(run_dir)
    with pytest.raises(RunFolderError, match="rewards artifact cannot be read") as info:
        run.rewards()
    assert "\n" not in str(info.value)
    (tmp_path / "artifacts" / "rewards-0123" / "rewards.npz").unlink()
    assert run.missing("rewards", "embeddings") == [str(tmp_path / "artifacts" / "rewards-0123" / "rewards.npz")]
    with pytest.raises(RunFolderError, match="rewards artifact is gone"):
        run.rewards()
    with pytest.raises(RunFolderError, match="has no TGE reward stage"):
        run.artifact("diffusion")


def test_tge_report_reads_a_version_1_folder(tmp_path, minari_root, capsys):
    from tge_ray.cli import main

    run_dir, written = _version_1_folder(tmp_path)
    assert main(["report", str(run_dir)]) == 0, capsys.readouterr().err
    text = (run_dir / "report.md").read_text()
    assert "| tge-fbc | 41.50 | 1300.0 ± 20.0 |" in text
    assert "episode returns not shown (datasets not opened" in text  # this test's Minari folder is empty


# ----------------------------------------------------------------------------- earlier artifacts

FINGERPRINTS = {"offline_files": "aaaa", "expert_files": "bbbb"}


def _data_as_the_old_key_had_it(cfg):
    """``data_dependencies`` as the earlier diffusion stage put it into its key."""
    return {"offline": cfg.task.offline, "offline_files": FINGERPRINTS["offline_files"], "expert": cfg.task.expert,
            "expert_files": FINGERPRINTS["expert_files"], "n_expert_trajs": cfg.task.n_expert_trajs, "format": 1}


def _old_keys(cfg, diffusion_name, embeddings_name):
    """The three stages' keys as the code before whole-section keys wrote them, field by field."""
    diffusion = {"data": _data_as_the_old_key_had_it(cfg), "horizon": cfg.windows.horizon,
                 "diffusion": to_dict(cfg.diffusion), "train_workers": cfg.resources.train_workers,
                 "seed": cfg.seed, "window_order": "permuted"}
    embeddings = {"diffusion": diffusion_name, "pool": cfg.embedding.pool, "normalize": cfg.embedding.normalize,
                  "n_demos": cfg.task.n_demos, "format": 1}
    if cfg.task.demos != "next":
        embeddings["demos"] = cfg.task.demos
    rewards = {"embeddings": embeddings_name, "kernel": cfg.reward.kernel, "k": cfg.reward.k,
               "sigma": cfg.reward.sigma, "scale": cfg.reward.scale, "format": 1}
    if cfg.reward.expert_windows != "all":
        rewards["expert_windows"] = cfg.reward.expert_windows
    if cfg.reward.skip_demo_start:
        rewards["skip_demo_start"] = cfg.reward.skip_demo_start
    return {"diffusion": diffusion, "embeddings": embeddings, "rewards": rewards}


@pytest.mark.parametrize("overrides", [[], ["task.demos=next", "reward.expert_windows=complete",
                                            "reward.skip_demo_start=3", "embedding.pool=max"]])
def test_earlier_keys_are_the_old_code_s(overrides):
    cfg = load_config(None, overrides)
    old = _old_keys(cfg, "diffusion-0123", "embeddings-4567")
    data = {**_data_as_the_old_key_had_it(cfg), "format": 7}  # the format is the old one's, whatever today's
    (diffusion, blocks) = earlier_artifacts("diffusion", to_dict(cfg), data=data)
    assert diffusion.dependencies == old["diffusion"] and diffusion.equal
    assert "window_order" not in blocks.dependencies and not blocks.equal and "consecutive windows" in blocks.why
    (embeddings,) = earlier_artifacts("embeddings", to_dict(cfg), upstream="diffusion-0123")
    assert embeddings.dependencies == old["embeddings"] and embeddings.equal
    (rewards,) = earlier_artifacts("rewards", to_dict(cfg), upstream="embeddings-4567")
    assert rewards.dependencies == old["rewards"] and rewards.equal


def _build(calls, text):
    def build(folder):
        calls.append(text)
        (folder / "made-by.txt").write_text(text)
        return {}

    return build


def test_an_equal_earlier_artifact_is_reused_an_unequal_one_rebuilt(tmp_path):
    from tge_ray.pipeline.artifacts import ArtifactStore

    store = ArtifactStore(str(tmp_path))
    cfg = load_config(None, ["reward.sigma=0.5"])
    old = _old_keys(cfg, "diffusion-0123", "embeddings-4567")
    calls, notes = [], []
    # The earlier version built rewards under its key, and a diffusion model before the
    # permuted window order (its key without window_order).
    store.get_or_build("rewards", old["rewards"], _build(calls, "earlier"))
    blocks = {key: value for key, value in old["diffusion"].items() if key != "window_order"}
    store.get_or_build("diffusion", blocks, _build(calls, "earlier, blocks"))

    earlier = earlier_artifacts("rewards", to_dict(cfg), upstream="embeddings-4567")
    reused = store.get_or_build("rewards", {"new": "key"}, _build(calls, "now"), earlier=earlier, note=notes.append)
    assert reused.reused and (reused.path / "made-by.txt").read_text() == "earlier" and notes == []

    earlier = earlier_artifacts("diffusion", to_dict(cfg), data=_data_as_the_old_key_had_it(cfg))
    rebuilt = store.get_or_build("diffusion", {"new": "key"}, _build(calls, "now"), earlier=earlier, note=notes.append)
    assert not rebuilt.reused and (rebuilt.path / "made-by.txt").read_text() == "now"
    (line,) = notes
    assert line.startswith("diffusion: diffusion-") and "is not reused: it was trained on blocks" in line
    assert calls == ["earlier", "earlier, blocks", "now"]


def test_stage_keys_hold_whole_sections(tmp_path):
    """A field added to a section would be in the key: every field but those marked NO_RESULT is."""
    from tge_ray.config import key_part

    cfg = load_config(None)
    assert key_part(cfg.reward) == {k: v for k, v in to_dict(cfg.reward).items() if k != "batch_size"}
    assert set(key_part(cfg.task)) == set(to_dict(cfg.task)) - {"download", "make_missing"}
    # nested sections whole, but for a field added later at the value earlier artifacts computed with
    assert key_part(cfg.rl)["iql"] == {k: v for k, v in to_dict(cfg.rl.iql).items() if k != "matmul"}
    assert "pool" not in key_part(cfg.diffusion) and key_part(cfg.embedding) == {"pool": "mean", "normalize": True}


@pytest.mark.parametrize("learner", ["iql", "rebrac", "bc"])
def test_a_policy_s_key_names_bf16_products_and_fp32_ones_keep_their_earlier_key(learner):
    """rl.<learner>.matmul came after the policies in stores were keyed: fp32, what they computed,
    keeps those keys; bf16 gets its own."""
    from tge_ray.config import key_part

    fp32 = load_config(None, [f"rl.{learner}.matmul=fp32"])
    bf16 = load_config(None, [f"rl.{learner}.matmul=bf16"])
    section = getattr(fp32.rl, learner)
    assert key_part(section) == {k: v for k, v in to_dict(section).items() if k != "matmul"}
    assert key_part(getattr(bf16.rl, learner)) == {**key_part(section), "matmul": "bf16"}


def test_a_version_2_config_moves_pool_to_the_embedding_section(tmp_path):
    config = to_dict(load_config(None))
    pool = config.pop("embedding")
    version_2 = {"schema_version": 2, **config, "diffusion": {**config["diffusion"], **{**pool, "pool": "max"}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(version_2))
    assert load_config(path).embedding.pool == "max"
    with pytest.raises(ConfigError, match="config key 'diffusion.pool' is 'embedding.pool' now: rename it"):
        load_config(None, ["diffusion.pool=max"])


@pytest.mark.parametrize("backbone, scale, resolved", [("fbc", "rank", "rank"), ("iql", "auto", "rank"),
                                                       ("rebrac", "auto", "minmax")])
def test_a_version_4_record_keeps_the_scale_auto_gave_it(tmp_path, backbone, scale, resolved):
    """Up to version 4 ``reward.scale=auto`` gave filtered BC rank rewards (today min-max): such a
    record reads as rank, so a report or a resume sees what it ran with. IQL's and ReBRAC's auto
    did not change and stay auto."""
    config = {"schema_version": 4, **to_dict(load_config(None, [f"rl.backbone={backbone}"]))}
    assert config["reward"]["scale"] == "auto"
    upgraded = upgrade_config(config)
    assert upgraded["reward"]["scale"] == scale
    path = tmp_path / files.CONFIG_FILE
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert load_config(path).reward_scale() == resolved
    today = load_config(None, [f"rl.backbone={backbone}"])
    assert today.reward_scale() == ("minmax" if backbone == "fbc" else resolved), "today's auto, unchanged by the step"
