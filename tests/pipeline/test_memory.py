"""The policy stage's memory estimate: what a batch holds, counted from the config alone."""

from __future__ import annotations

import numpy as np
import torch

from tge_ray.config import load_config, resolve_config_path
from tge_ray.pipeline import memory
from tge_ray.pipeline.run import _policy_batches
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.table import PolicyData, TransitionTable


def batches_of(*overrides: str):
    return _policy_batches([load_config(resolve_config_path("smoke"), list(overrides))])


def test_a_batch_with_filtered_bc_counts_every_policy_row_list():
    """TGE-filtered-BC and BC share the BC learner; the filtered policies sample a subset of the
    rows, so the batch lists rows for all six policies (int64, up to N each)."""
    batches, columns = batches_of("rl.backbone=fbc", "methods=[tge,bc]", "rl.seeds=3")
    assert list(batches) == ["bc"] and batches["bc"][1:] == (6, True) and columns == 3
    (need,) = memory.policy_needs(batches, 1000, columns, 11, 3, "cpu")
    assert dict(need.parts)["6 x row lists of up to 1,000 rows"] == 48_000  # int64, as TableView lists them


def test_the_row_lists_of_a_batch_are_one_int64_index():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(101, 11)).astype(np.float32)
    transitions = Transitions(obs[:-1], rng.uniform(-1, 1, (100, 3)), rng.uniform(size=100), obs[1:], np.zeros(100))
    table = TransitionTable.build(transitions, {"r": transitions.rewards}, -np.ones(3), np.ones(3))
    stats = [transitions.observation_stats()] * 2
    view = table.view([PolicyData("r"), PolicyData("r", np.arange(0, 100, 4))], 8, stats)
    assert view.rows.dtype == torch.int64 and view.rows.element_size() == memory.INDEX
    assert view.rows.tolist() == list(range(100)) + list(range(0, 100, 4)) and view.sizes.tolist() == [100, 25]


def test_batches_that_sample_every_row_list_none():
    batches, columns = batches_of("methods=[tge,oracle,bc]", "rl.seeds=2")
    assert {learner: value[1:] for learner, value in batches.items()} == {"iql": (4, False), "bc": (2, False)}
    for need in memory.policy_needs(batches, 1000, columns, 11, 3, "cpu"):
        assert not any("row lists" in what for what, _ in need.parts), need
