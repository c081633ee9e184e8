"""StackedAdam against torch's Adam, per-policy learning rates and the cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from tge_ray.rl.optim import ParamGroup, StackedAdam, cosine_factor


def test_cosine_factor_by_hand():
    assert cosine_factor(torch.tensor(0), 10).item() == 1.0
    assert cosine_factor(torch.tensor(9), 10).item() == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))
    assert cosine_factor(torch.tensor(25), 10).item() == 0.0  # past the end: stays at 0


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_each_member_follows_torch_adam_at_its_own_rate(schedule):
    torch.manual_seed(0)
    lrs = [1e-2, 3e-3, 1e-1]
    members_per_policy = 2
    stacked = torch.randn(len(lrs) * members_per_policy, 4, 5)
    params = {"w": stacked.clone()}
    opt = StackedAdam(params, [ParamGroup(["w"], torch.tensor(lrs), members_per_policy, schedule)], total_steps=6)
    references = []
    for policy, lr in enumerate(lrs):
        weight = torch.nn.Parameter(stacked[policy * 2 : policy * 2 + 2].clone())
        adam = torch.optim.Adam([weight], lr=lr, foreach=False)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(adam, 6) if schedule == "cosine" else None
        references.append((weight, adam, sched))
    for step in range(6):
        grads = torch.randn_like(stacked) * (step + 1)
        opt.step(params, {"w": grads})
        for policy, (weight, adam, sched) in enumerate(references):
            weight.grad = grads[policy * 2 : policy * 2 + 2].clone()
            adam.step()
            if sched is not None:
                sched.step()
    for policy, (weight, _, _) in enumerate(references):
        torch.testing.assert_close(params["w"][policy * 2 : policy * 2 + 2], weight.detach(), rtol=1e-6, atol=1e-7)
    assert int(opt.step_count) == 6


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_state_round_trip(schedule):
    params = {"w": torch.ones(2, 1, 3)}
    opt = StackedAdam(params, [ParamGroup(["w"], torch.tensor([0.1, 0.2]), schedule=schedule)], total_steps=10)
    opt.step(params, {"w": torch.ones(2, 1, 3)})
    loaded = {"w": params["w"].clone()}
    other = StackedAdam(loaded, [ParamGroup(["w"], torch.tensor([0.1, 0.2]), schedule=schedule)], total_steps=10)
    other.load_state_dict(opt.state_dict())
    assert torch.equal(other.exp_avg["w"], opt.exp_avg["w"]) and int(other.step_count) == 1
    for step in range(3):  # the loaded optimiser continues as the first does (its next step's scalars included)
        grads = {"w": torch.full((2, 1, 3), float(step + 2))}
        opt.step(params, grads)
        other.step(loaded, grads)
    assert torch.equal(loaded["w"], params["w"])
