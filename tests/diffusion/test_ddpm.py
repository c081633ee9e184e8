"""DDPM helpers checked by hand, the loss learns, and stop-and-resume equals one run."""

from __future__ import annotations

import io
import math

import torch

from tge_ray.config import DiffusionConfig
from tge_ray.diffusion.ddpm import EMA, DiffusionTrainerState, cosine_schedule, diffusion_loss, q_sample
from tge_ray.diffusion.unet import TemporalUnet

torch.set_num_threads(1)
TINY = DiffusionConfig(dim=8, dim_mults=(1, 2), n_timesteps=10, lr=3e-3, ema_start=3, ema_decay=0.9)


def test_cosine_schedule_by_hand():
    schedule = cosine_schedule(4, s=0.008)
    f = [math.cos(((t / 4) + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(5)]
    expected_alpha_bar = [f[t] / f[0] for t in range(1, 5)]
    expected_alpha_bar[-1] = expected_alpha_bar[-2] * (1 - 0.999)  # last beta is clipped
    torch.testing.assert_close(schedule.alphas_cumprod, torch.tensor(expected_alpha_bar), rtol=1e-5, atol=1e-7)
    assert schedule.betas.min() > 0 and schedule.betas.max() <= 0.999
    assert torch.all(schedule.alphas_cumprod[1:] < schedule.alphas_cumprod[:-1])


def test_q_sample_by_hand():
    schedule = cosine_schedule(4)
    x0 = torch.full((2, 3, 1), 2.0)
    noise = torch.full((2, 3, 1), -1.0)
    t = torch.tensor([0, 3])
    out = q_sample(x0, t, noise, schedule)
    for row, step in enumerate([0, 3]):
        a = schedule.alphas_cumprod[step]
        torch.testing.assert_close(out[row], torch.full((3, 1), float(2 * a.sqrt() - (1 - a).sqrt())))


def test_loss_of_a_zero_model_is_the_noise_power():
    class Zero(torch.nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    noise = torch.tensor([[[1.0], [2.0]], [[0.0], [-3.0]]])
    loss = diffusion_loss(Zero(), torch.randn(2, 2, 1), torch.tensor([1, 2]), noise, cosine_schedule(4))
    assert loss.item() == (1 + 4 + 0 + 9) / 4


def test_ema_copies_before_start_then_averages():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(model, decay=0.5, start=2)
    model.weight.data.fill_(4.0)
    ema.update(model, step=1)
    assert ema.model.weight.item() == 4.0
    model.weight.data.fill_(0.0)
    ema.update(model, step=2)
    assert ema.model.weight.item() == 2.0


def _toy_windows():
    # Sine windows with random phases: an easy, structured distribution.
    g = torch.Generator().manual_seed(0)
    phase = torch.rand(64, 1, 1, generator=g) * 2 * math.pi
    steps = torch.arange(8.0).view(1, 8, 1)
    return torch.sin(steps * 0.7 + phase) * torch.tensor([1.0, -1.0])  # (64, 8, 2)


def test_loss_decreases_on_a_toy_set():
    torch.manual_seed(0)
    state = DiffusionTrainerState(TemporalUnet(2, 8, TINY), TINY, seed=0)
    x0 = _toy_windows()
    first = [state.update(x0).item() for _ in range(10)]
    for _ in range(80):
        state.update(x0)
    last = [state.update(x0).item() for _ in range(10)]
    assert sum(last) / 10 < 0.6 * sum(first) / 10


def _run(steps: int, state: DiffusionTrainerState | None = None) -> DiffusionTrainerState:
    if state is None:
        torch.manual_seed(1)
        state = DiffusionTrainerState(TemporalUnet(2, 8, TINY), TINY, seed=7)
    x0 = _toy_windows()
    for _ in range(steps):
        state.update(x0[(state.step * 16) % 64:][:16])
    return state


def test_stop_and_resume_equals_an_uninterrupted_run():
    straight = _run(12)

    first_half = _run(6)
    buffer = io.BytesIO()
    torch.save(first_half.state_dict(), buffer)
    torch.manual_seed(12345)  # the global RNG must not matter
    resumed = DiffusionTrainerState(TemporalUnet(2, 8, TINY), TINY, seed=999)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    _run(6, resumed)

    assert resumed.step == straight.step == 12
    for a, b in zip(straight.state_dict()["model"].values(), resumed.state_dict()["model"].values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.state_dict()["ema"].values(), resumed.state_dict()["ema"].values()):
        assert torch.equal(a, b)
