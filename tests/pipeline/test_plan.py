"""The policies a run plans: their labels and configs, and the environments each seed is scored in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tge_ray.config import load_config, resolve_config_path
from tge_ray.pipeline.artifacts import Artifact
from tge_ray.pipeline.policies import plan, policy_key
from tge_ray.rl.train import evaluation_seed

REWARDS = Artifact(Path(), "rewards-test", reused=False)


def labels(*overrides: str) -> list[tuple[str, int, float]]:
    cfg = load_config(resolve_config_path("smoke"), list(overrides))
    return [(r.label, r.offset, r.config.lr) for r in plan(cfg, 0, REWARDS)]


def test_values_that_print_alike_in_short_get_labels_apart():
    planned = labels("methods=[oracle]", "rl.seeds=2", "rl.iql.beta=[1,1.0000001]")
    assert [label for label, _, _ in planned] == ["oracle-iql[beta=1]", "oracle-iql[beta=1.0000001]"]


def test_filtered_bc_is_not_labelled_with_the_bc_rates_it_does_not_use():
    planned = labels("rl.backbone=fbc", "methods=[tge,bc]", "rl.seeds=2", "rl.bc.lr=[0.0003,0.0001]",
                     "rl.fbc.lr=0.001")
    assert planned == [("tge-fbc", 0, 0.001), ("tge-fbc", 1, 0.001),
                       ("bc[lr=0.0003]", 0, 0.0003), ("bc[lr=0.0001]", 1, 0.0001)]


@pytest.mark.parametrize("num_envs", [1, 2, 5, 7])
def test_the_seeds_of_a_run_are_scored_in_environments_of_their_own(num_envs):
    environments = [{evaluation_seed(seed, num_envs) + i for i in range(num_envs)} for seed in range(12)]
    assert sum(map(len, environments)) == len(set().union(*environments))  # no environment seed twice
    assert evaluation_seed(0, num_envs) == 10_000  # seed 0: where its earlier policies were scored


@pytest.mark.parametrize("backbone", ["iql", "rebrac"])
def test_a_learner_s_revision_enters_its_policies_keys_from_1_on(backbone):
    """ReBRAC's revision 1 (its target actor follows the actor before the actor's step) keys its
    policies apart from those stored before; IQL and BC, at revision 0, keep the keys they had."""
    cfg = load_config(resolve_config_path("smoke"), [f"rl.backbone={backbone}", "methods=[tge,bc]"])
    keys = {request.learner: policy_key(request, cfg) for request in plan(cfg, 0, REWARDS)}
    assert set(keys) == {backbone, "bc"}
    assert keys[backbone].get("learner_revision") == (1 if backbone == "rebrac" else None)
    assert "learner_revision" not in keys["bc"]
