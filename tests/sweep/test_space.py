"""Space files: conditional define-by-run sampling and one-line errors before any trial."""

from __future__ import annotations

import optuna
import pytest

from tge_ray.errors import ConfigError
from tge_ray.sweep.space import load_space


def _write(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_conditional_parameters_only_with_their_backbone(tmp_path):
    space = load_space(
        _write(
            tmp_path,
            """
name: t
base: smoke
tasks:
  a: {task.n_expert_trajs: 1}
  b: {task.n_expert_trajs: 2}
space:
  reward.sigma: {loguniform: [0.1, 5.0]}
  rl.backbone:
    choice:
      iql: {rl.iql.expectile: {uniform: [0.6, 0.9]}}
      rebrac: {rl.rebrac.actor_bc_coef: {loguniform: [0.001, 0.1]}}
""",
        )
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        space.sample(trial)
        params = trial.params
        backbone = params["rl.backbone"]
        assert ("rl.iql.expectile" in params) == (backbone == "iql")
        assert ("rl.rebrac.actor_bc_coef" in params) == (backbone == "rebrac")
        cfg = space.config(params)
        assert cfg.rl.backbone == backbone and cfg.task.n_expert_trajs == {"a": 1, "b": 2}[params["task"]]
        assert 0.1 <= cfg.reward.sigma <= 5.0
        seen.add(backbone)
        study.tell(trial, 0.0)
    assert seen == {"iql", "rebrac"}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("space: {reward.sigmaa: {uniform: [0.1, 1]}}", "unknown config key 'reward.sigmaa'"),
        ("space: {reward.kernel: {choice: []}}", "empty choice list"),
        ("space: {reward.sigma: {uniform: [2.0, 1.0]}}", "low bound 2.0 above its high bound 1.0"),
        ("space: {reward.sigma: {normal: [0, 1]}}", "distribution in choice"),
        ("space: {reward.kernel: {choice: [log, cosine]}}", "reward.kernel='cosine'"),
        ("space: {windows.horizon: {choice: [8, 7]}}", "windows.horizon=7 cannot pass"),
        ("space: [unclosed", "does not parse"),
    ],
)
def test_bad_space_files(tmp_path, space, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")) as info:
        load_space(_write(tmp_path, "base: smoke\n" + space))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name", ["smoke", "horizon", "kernel", "backbone", "local_suite", "d4rl_locomotion", "d4rl_files"]
)
def test_shipped_spaces_parse(name):
    from pathlib import Path

    space = load_space(Path(__file__).resolve().parents[2] / "tune_spaces" / f"{name}.yaml")
    assert space.name == name and (space.params or space.tasks)
