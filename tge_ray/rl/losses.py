"""Pure loss functions of the offline RL backbones (no modules, no state, no logging).

Shapes: B is the batch, E the critic ensemble, A the action dimension; every function also takes
a leading policy axis P (reductions run over the batch axis, so each policy gets its own loss,
(P,)), and hyper-parameters may be numbers or (P, 1) tensors, one value per policy. Each function
is tested against a value worked out by hand in tests/rl/test_losses.py.
"""

from __future__ import annotations

import math

import torch

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # CORL IQL's clamp of the Gaussian actor's log-std


def asymmetric_l2_loss(diff: torch.Tensor, expectile: float | torch.Tensor) -> torch.Tensor:
    """Expectile regression loss, mean of |tau - 1(u < 0)| * u^2 with u = diff (IQL's V loss).

    ``diff`` is target - prediction, e.g. Q(s, a) - V(s); tau > 0.5 weights positive residuals
    more, so V tracks an upper expectile of Q.
    """
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean(-1)


expectile_loss = asymmetric_l2_loss


def awr_weights(advantages: torch.Tensor, beta: float | torch.Tensor, max_weight: float) -> torch.Tensor:
    """Advantage weights exp(beta * A), clipped above at ``max_weight``; no gradient flows."""
    return torch.exp(beta * advantages.detach()).clamp(max=max_weight)


def gaussian_nll(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """-log N(actions; mean, exp(log_std)) summed over actions: (B, A) -> (B,).

    ``log_std`` (A,) is state-independent and clamped to [-20, 2] as in CORL.
    """
    log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
    z = (actions - mean) * torch.exp(-log_std)
    return (0.5 * z.square() + log_std + 0.5 * math.log(2 * math.pi)).sum(-1)


def awr_actor_loss(weights: torch.Tensor, bc_losses: torch.Tensor) -> torch.Tensor:
    """Advantage-weighted regression: mean_i w_i * l_i (l = NLL or squared error per sample)."""
    return (weights * bc_losses).mean(-1)


def td_target(
    rewards: torch.Tensor, terminals: torch.Tensor, discount: float | torch.Tensor, next_values: torch.Tensor
) -> torch.Tensor:
    """r + gamma * (1 - terminal) * next_value, (B,); no gradient flows into it."""
    return (rewards + discount * (1.0 - terminals) * next_values).detach()


def td_loss(q_values: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Squared TD error of each member, mean over the batch, then ``mean`` or ``sum`` over members.

    q_values (E, B), targets (B,) (or (P, E, B) and (P, B)). IQL (CORL) averages its twin critics'
    losses, ReBRAC sums them.
    """
    per_member = (q_values - targets.unsqueeze(-2)).square().mean(-1)  # (E,) or (P, E)
    return per_member.sum(-1) if reduction == "sum" else per_member.mean(-1)


def rebrac_td_target(
    rewards: torch.Tensor,
    terminals: torch.Tensor,
    discount: float | torch.Tensor,
    next_q: torch.Tensor,
    next_policy_actions: torch.Tensor,
    next_data_actions: torch.Tensor,
    critic_bc_coef: float | torch.Tensor,
) -> torch.Tensor:
    """ReBRAC's critic target: r + gamma (1 - d) (Q'(s', a'~) - beta_2 ||a'~ - a'||^2), (B,).

    a'~ is the (noisy) target-policy action at s', a' the dataset's next action.
    """
    penalty = (next_policy_actions - next_data_actions).square().sum(-1)
    return td_target(rewards, terminals, discount, next_q - critic_bc_coef * penalty)


def rebrac_actor_loss(
    q_values: torch.Tensor,
    policy_actions: torch.Tensor,
    data_actions: torch.Tensor,
    bc_coef: torch.Tensor | float,
    normalize_q: bool = True,
) -> torch.Tensor:
    """mean_i( beta_1,i ||pi(s_i) - a_i||^2 - lambda Q(s_i, pi(s_i)) ), lambda = 1 / mean|Q| (no grad).

    q_values (B,) is the critics' minimum at the policy's actions; ``bc_coef`` is a scalar or a
    per-sample (B,) weight (see :func:`adaptive_bc_weights`).
    """
    penalty = (policy_actions - data_actions).square().sum(-1)
    scale = 1.0 / q_values.detach().abs().mean(-1, keepdim=True) if normalize_q else 1.0
    return (bc_coef * penalty - scale * q_values).mean(-1)


def _unit_rewards(rewards: torch.Tensor, reward_low: float | torch.Tensor,
                  reward_high: float | torch.Tensor) -> torch.Tensor:
    """r~ = clip((r - r_low) / (r_high - r_low), 0, 1), the rewards mapped to [0, 1]."""
    span = torch.clamp(torch.as_tensor(reward_high - reward_low, dtype=rewards.dtype, device=rewards.device), min=1e-8)
    return ((rewards - reward_low) / span).clamp(0.0, 1.0)


def adaptive_bc_weights(
    rewards: torch.Tensor, base_coef: float | torch.Tensor, reward_low: float | torch.Tensor,
    reward_high: float | torch.Tensor,
) -> torch.Tensor:
    """Per-sample actor BC weight for ReBRAC, (B,) -> (B,):

        r~_i = clip((r_i - r_low) / (r_high - r_low), 0, 1)
        w_i  = beta_1 * (1 + r~_i) / (1 + mean_j r~_j)

    The batch mean of w is exactly beta_1 (so the tuned overall constraint strength is kept)
    and every weight lies in [beta_1 / 2, 2 beta_1]: expert-like transitions (high TGE reward)
    are imitated up to twice as hard, the rest are never released from the constraint by more
    than half. Why in :mod:`tge_ray.rl.rebrac`.
    """
    scaled = _unit_rewards(rewards, reward_low, reward_high)
    return base_coef * (1.0 + scaled) / (1.0 + scaled.mean(-1, keepdim=True))


def sharp_bc_weights(
    rewards: torch.Tensor, base_coef: float | torch.Tensor, reward_low: float | torch.Tensor,
    reward_high: float | torch.Tensor, sharpness: float,
) -> torch.Tensor:
    """Per-sample actor BC weight for ReBRAC with sharpness kappa > 0, (B,) -> (B,):

        r~_i = clip((r_i - r_low) / (r_high - r_low), 0, 1)
        w_i  = beta_1 * exp(kappa r~_i) / mean_j exp(kappa r~_j)

    The batch mean of w is exactly beta_1, as in :func:`adaptive_bc_weights`, but the most
    expert-like transition can weigh up to e^kappa times the least (the linear rule: 2 times).
    Computed as exp(kappa (r~ - 1)) <= 1, which cannot overflow.
    """
    weights = torch.exp(sharpness * (_unit_rewards(rewards, reward_low, reward_high) - 1.0))
    return base_coef * weights / weights.mean(-1, keepdim=True)


def bc_loss(predicted_actions: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Behaviour cloning: squared error summed over action dims, mean over the batch."""
    return (predicted_actions - actions).square().sum(-1).mean(-1)
