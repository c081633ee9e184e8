"""Counter-based random numbers: a pure function of (seed, step, slot), uniform and normal enough."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tge_ray.rl.rng import _mul32, hash32, random_indices, random_normal


def test_mul32_is_the_product_mod_2_32():
    x = torch.tensor([0, 1, 12345, 2**32 - 1, 3_000_000_000], dtype=torch.int64)
    for constant in (0x7FEB352D, 0x846CA68B, 0x9E3779B9):
        expected = [(int(v) * constant) % 2**32 for v in x]
        assert _mul32(x, constant).tolist() == expected


def test_hash32_matches_lowbias32_by_hand():
    def lowbias32(x: int) -> int:
        x ^= x >> 16
        x = (x * 0x7FEB352D) % 2**32
        x ^= x >> 15
        x = (x * 0x846CA68B) % 2**32
        return x ^ (x >> 16)

    values = [0, 1, 2, 255, 2**31, 2**32 - 1]
    assert hash32(torch.tensor(values)).tolist() == [lowbias32(v) for v in values]


def test_a_policys_stream_depends_on_its_seed_and_step_alone():
    step = torch.tensor(17)
    sizes = torch.tensor([1000, 1000, 1000])
    alone = random_indices(torch.tensor([5]), step, 64, torch.tensor([1000]))
    batch = random_indices(torch.tensor([3, 5, 9]), step, 64, sizes)
    assert torch.equal(alone[0], batch[1])
    assert not torch.equal(batch[0], batch[1])
    assert not torch.equal(alone, random_indices(torch.tensor([5]), torch.tensor(18), 64, torch.tensor([1000])))
    noise = random_normal(torch.tensor([3, 5]), step, (8, 3))
    assert noise.shape == (2, 8, 3) and torch.equal(noise[1], random_normal(torch.tensor([5]), step, (8, 3))[0])


def test_indices_are_uniform_in_range():
    sizes = torch.tensor([7, 1000])
    counts = np.zeros(7)
    for step in range(200):
        index = random_indices(torch.tensor([1, 2]), torch.tensor(step), 256, sizes)
        assert int(index[0].min()) >= 0 and int(index[0].max()) < 7 and int(index[1].max()) < 1000
        counts += np.bincount(index[0].numpy(), minlength=7)
    expected = counts.sum() / 7
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 22.5  # 6 degrees of freedom: p = 0.001


def test_normal_moments():
    noise = random_normal(torch.tensor([0]), torch.tensor(3), (100_000,))
    assert abs(float(noise.mean())) < 0.02 and abs(float(noise.std()) - 1.0) < 0.02
    assert float((noise.abs() < 1).float().mean()) == pytest.approx(0.6827, abs=0.01)
