"""Each loss against a value worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from tge_ray.rl import losses


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_asymmetric_l2_loss():
    # weights |0.7 - 1(u<0)| = [0.3, 0.7]; terms [0.3 * 1, 0.7 * 4] = [0.3, 2.8]; mean 1.55
    assert losses.asymmetric_l2_loss(t([-1.0, 2.0]), 0.7).item() == pytest.approx(1.55)
    # tau = 0.5 is half the MSE
    assert losses.expectile_loss(t([-2.0, 2.0]), 0.5).item() == pytest.approx(2.0)


def test_awr_weights_clip_and_no_grad():
    adv = t([0.0, 1.0, 10.0]).requires_grad_()
    w = losses.awr_weights(adv, beta=2.0, max_weight=100.0)
    assert w.tolist() == pytest.approx([1.0, math.exp(2.0), 100.0], rel=1e-6)
    assert not w.requires_grad


def test_gaussian_nll():
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    # N(1; 0, 1): 0.5 + 0 + 0.918939 ; N(2; 0, 2): z = 1 -> 0.5 + log 2 + 0.918939
    nll = losses.gaussian_nll(t([[0.0, 0.0]]), t([0.0, math.log(2.0)]), t([[1.0, 2.0]]))
    assert nll.item() == pytest.approx(0.5 + half_log_2pi + 0.5 + math.log(2.0) + half_log_2pi, rel=1e-6)
    # log-std is clamped at 2: action == mean gives 2 + 0.918939
    assert losses.gaussian_nll(t([[0.0]]), t([5.0]), t([[0.0]])).item() == pytest.approx(2 + half_log_2pi)


def test_awr_actor_loss():
    # (1 * 2 + 3 * 4) / 2 = 7
    assert losses.awr_actor_loss(t([1.0, 3.0]), t([2.0, 4.0])).item() == pytest.approx(7.0)


def test_td_target_and_loss():
    # [1 + 0.9 * 10, 2 + 0 (terminal)] = [10, 2]
    y = losses.td_target(t([1.0, 2.0]), t([0.0, 1.0]), 0.9, t([10.0, 10.0]))
    assert y.tolist() == pytest.approx([10.0, 2.0])
    q = t([[1.0, 2.0], [3.0, 4.0]])  # members' MSE vs [1, 1]: 0.5 and 6.5
    assert losses.td_loss(q, t([1.0, 1.0])).item() == pytest.approx(3.5)
    assert losses.td_loss(q, t([1.0, 1.0]), reduction="sum").item() == pytest.approx(7.0)


def test_rebrac_td_target():
    # 1 + 0.5 * (4 - 2 * ||(1, 0) - (0, 0)||^2) = 2
    y = losses.rebrac_td_target(t([1.0]), t([0.0]), 0.5, t([4.0]), t([[1.0, 0.0]]), t([[0.0, 0.0]]), 2.0)
    assert y.item() == pytest.approx(2.0)


def test_rebrac_actor_loss():
    q, pi, a = t([2.0, -2.0]), t([[1.0], [0.0]]), t([[0.0], [0.0]])
    # lambda = 1 / mean|q| = 0.5; terms (0.5 * 1 - 0.5 * 2, 0 + 0.5 * 2) = (-0.5, 1); mean 0.25
    assert losses.rebrac_actor_loss(q, pi, a, 0.5).item() == pytest.approx(0.25)
    # per-sample coefficients (1, 3): (1 - 1, 0 + 1) -> 0.5
    assert losses.rebrac_actor_loss(q, pi, a, t([1.0, 3.0])).item() == pytest.approx(0.5)
    # without Q normalisation: (0.5 - 2, 0 + 2) -> 0.25
    assert losses.rebrac_actor_loss(q, pi, a, 0.5, normalize_q=False).item() == pytest.approx(0.25)


def test_adaptive_bc_weights():
    # r~ = r, mean 0.5: 0.3 * (1 + r~) / 1.5 = [0.2, 0.3, 0.4, 0.3]
    w = losses.adaptive_bc_weights(t([0.0, 0.5, 1.0, 0.5]), 0.3, 0.0, 1.0)
    assert w.tolist() == pytest.approx([0.2, 0.3, 0.4, 0.3])
    assert w.mean().item() == pytest.approx(0.3)
    # range [-1, 1]: r~ = [0, 0.5, 1, 1 (clipped)], mean 0.625 -> 0.3 * (1 + r~) / 1.625
    w = losses.adaptive_bc_weights(t([-1.0, 0.0, 1.0, 3.0]), 0.3, -1.0, 1.0)
    assert w.tolist() == pytest.approx([0.3 / 1.625, 0.45 / 1.625, 0.6 / 1.625, 0.6 / 1.625])


def test_sharp_bc_weights():
    # kappa = ln 4: exp(kappa r~) = 4^r~ = [1, 2, 4], mean 7/3 -> 0.3 * [3, 6, 12] / 7
    w = losses.sharp_bc_weights(t([0.0, 0.5, 1.0]), 0.3, 0.0, 1.0, math.log(4.0))
    assert w.tolist() == pytest.approx([0.9 / 7, 1.8 / 7, 3.6 / 7])
    assert w.mean().item() == pytest.approx(0.3)
    # the range maps rewards to [0, 1] and clips: r~ = [0, 0, 1, 1] -> [1, 1, 4, 4], mean 2.5
    w = losses.sharp_bc_weights(t([-5.0, -1.0, 1.0, 3.0]), 0.3, -1.0, 1.0, math.log(4.0))
    assert w.tolist() == pytest.approx([0.12, 0.12, 0.48, 0.48])
    # a large kappa does not overflow: the top weight tends to beta_1 * B / (number at the top)
    w = losses.sharp_bc_weights(t([0.0, 1.0]), 0.3, 0.0, 1.0, 500.0)
    assert w.tolist() == pytest.approx([0.0, 0.6])


def test_bc_loss():
    # per-sample squared errors [2, 4], mean 3
    assert losses.bc_loss(t([[1.0, 1.0], [0.0, 0.0]]), t([[0.0, 0.0], [0.0, 2.0]])).item() == pytest.approx(3.0)
