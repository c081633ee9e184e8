"""Networks of the offline RL backbones: plain MLPs, a batched critic ensemble, the tanh actor.

Speed notes (2-core CPUs and GPUs alike): the twin critics are one :class:`EnsembleMLP` whose
first layer is a single wide matmul over the shared input and whose later layers are one
``baddbmm`` over the ensemble axis, so two critics cost one kernel per layer instead of two
MLPs' worth of launches. :class:`TanhPolicy` is the one actor every learner evaluates with: it
takes raw observations, normalises them with the dataset statistics it holds, and maps its tanh
output from [-1, 1] to the environment's action box.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Flax's LayerNorm epsilon (CORL's ReBRAC is written in JAX/Flax).
LAYER_NORM_EPS = 1e-6


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: int,
    n_layers: int,
    *,
    layer_norm: bool = False,
    tanh_output: bool = False,
    init: str = "torch",
    last_init_bound: float | None = None,
) -> nn.Sequential:
    """``n_layers`` hidden Linear+ReLU(+LayerNorm) layers, then a Linear to ``out_dim``.

    ``init="torch"`` keeps nn.Linear's default; ``init="edac"`` is CORL ReBRAC's: weights
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), hidden biases 0.1, and the last layer U(-b, b) with
    ``b = last_init_bound``.
    """
    layers: list[nn.Module] = []
    dims = [in_dim] + [hidden] * n_layers
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        linear = nn.Linear(fan_in, fan_out)
        if init == "edac":
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(linear.weight, -bound, bound)
            nn.init.constant_(linear.bias, 0.1)
        layers += [linear, nn.ReLU()]
        if layer_norm:
            layers.append(nn.LayerNorm(fan_out, eps=LAYER_NORM_EPS))
    last = nn.Linear(dims[-1], out_dim)
    if last_init_bound is not None:
        nn.init.uniform_(last.weight, -last_init_bound, last_init_bound)
        nn.init.uniform_(last.bias, -last_init_bound, last_init_bound)
    layers.append(last)
    if tanh_output:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class EnsembleMLP(nn.Module):
    """``members`` independent MLPs evaluated together; forward returns (members, B).

    Layer 0 is one matmul of the shared input (B, in) with a (in, members*hidden) weight; the
    following layers are ``baddbmm`` over (members, B, hidden). Each member is initialised like
    its own nn.Linear stack (``init="torch"``) or CORL ReBRAC's EDAC scheme (``init="edac"``).
    LayerNorm (after the ReLU, as in CORL) has its own affine parameters per member.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        n_layers: int,
        members: int = 2,
        *,
        layer_norm: bool = False,
        init: str = "torch",
        last_init_bound: float | None = None,
    ) -> None:
        super().__init__()
        self.members, self.hidden, self.n_layers, self.layer_norm = members, hidden, n_layers, layer_norm
        self.first_weight = nn.Parameter(torch.empty(in_dim, members * hidden))  # (in, E*H)
        self.first_bias = nn.Parameter(torch.empty(members * hidden))
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.empty(members, hidden, hidden)) for _ in range(n_layers - 1)]
        )  # each (E, H, H), applied as x @ W
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.empty(members, 1, hidden)) for _ in range(n_layers - 1)]
        )
        self.last_weight = nn.Parameter(torch.empty(members, hidden, 1))
        self.last_bias = nn.Parameter(torch.empty(members, 1, 1))
        if layer_norm:
            self.norm_scales = nn.ParameterList(
                [nn.Parameter(torch.ones(members, 1, hidden)) for _ in range(n_layers)]
            )
            self.norm_shifts = nn.ParameterList(
                [nn.Parameter(torch.zeros(members, 1, hidden)) for _ in range(n_layers)]
            )
        self._init(init, in_dim, last_init_bound)

    @torch.no_grad()
    def _init(self, init: str, in_dim: int, last_init_bound: float | None) -> None:
        def fill(weight: torch.Tensor, bias: torch.Tensor, fan_in: int, hidden_bias: bool) -> None:
            bound = 1.0 / math.sqrt(fan_in)
            # kaiming_uniform(a=sqrt(5)) of nn.Linear has the same bound 1/sqrt(fan_in)
            weight.uniform_(-bound, bound)
            if init == "edac" and hidden_bias:
                bias.fill_(0.1)
            else:
                bias.uniform_(-bound, bound)

        fill(self.first_weight, self.first_bias, in_dim, True)
        for weight, bias in zip(self.weights, self.biases):
            fill(weight, bias, self.hidden, True)
        if last_init_bound is not None:
            self.last_weight.uniform_(-last_init_bound, last_init_bound)
            self.last_bias.uniform_(-last_init_bound, last_init_bound)
        else:
            fill(self.last_weight, self.last_bias, self.hidden, False)

    def _activate(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        x = F.relu(x)
        if self.layer_norm:
            x = F.layer_norm(x, (self.hidden,), eps=LAYER_NORM_EPS)
            x = torch.addcmul(self.norm_shifts[layer], x, self.norm_scales[layer])
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (members, B)."""
        batch = x.shape[0]
        h = torch.addmm(self.first_bias, x, self.first_weight)  # (B, E*H)
        h = h.view(batch, self.members, self.hidden).transpose(0, 1)  # (E, B, H)
        h = self._activate(h, 0)
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases), start=1):
            h = self._activate(torch.baddbmm(bias, h, weight), layer)
        return torch.baddbmm(self.last_bias, h, self.last_weight).squeeze(-1)


class TanhPolicy(nn.Module):
    """Deterministic policy for evaluation: raw obs -> normalise -> MLP -> tanh -> action box.

    Every learner's actor has this shape (IQL's Gaussian uses its mean), so evaluation rebuilds
    any of them from :meth:`state` alone.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: int,
        n_layers: int,
        obs_mean: np.ndarray,
        obs_std: np.ndarray,
        action_low: np.ndarray,
        action_high: np.ndarray,
        *,
        layer_norm: bool = False,
        init: str = "torch",
        last_init_bound: float | None = None,
    ) -> None:
        super().__init__()
        self.config = dict(obs_dim=obs_dim, act_dim=act_dim, hidden=hidden, n_layers=n_layers,
                           layer_norm=layer_norm)
        self.net = mlp(obs_dim, act_dim, hidden, n_layers, layer_norm=layer_norm, tanh_output=True,
                       init=init, last_init_bound=last_init_bound)
        low = torch.as_tensor(np.asarray(action_low, np.float32)).reshape(act_dim)
        high = torch.as_tensor(np.asarray(action_high, np.float32)).reshape(act_dim)
        self.register_buffer("obs_mean", torch.as_tensor(np.asarray(obs_mean, np.float32)).reshape(obs_dim))
        self.register_buffer("obs_std", torch.as_tensor(np.asarray(obs_std, np.float32)).reshape(obs_dim))
        self.register_buffer("action_center", (high + low) / 2)
        self.register_buffer("action_half_range", (high - low) / 2)

    def forward_normalized(self, observations: torch.Tensor) -> torch.Tensor:
        """Normalised observations -> actions in [-1, 1] (training space)."""
        return self.net(observations)

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """Raw observations (B, obs_dim) -> actions (B, act_dim) inside the action box."""
        device = self.obs_mean.device
        obs = torch.as_tensor(np.asarray(observations, np.float32), device=device)
        squeeze = obs.ndim == 1
        obs = obs.reshape(-1, self.obs_mean.shape[0])
        unit = self.net((obs - self.obs_mean) / self.obs_std)
        actions = (self.action_center + self.action_half_range * unit).cpu().numpy()
        return actions[0] if squeeze else actions

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.forward_normalized(observations)

    def state(self) -> dict[str, Any]:
        """Small, picklable description (CPU tensors) that :meth:`from_state` rebuilds."""
        return {
            "class": "TanhPolicy",
            "config": dict(self.config),
            "weights": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str = "cpu") -> TanhPolicy:
        weights = state["weights"]
        center, half = weights["action_center"], weights["action_half_range"]
        policy = cls(
            **{k: v for k, v in state["config"].items() if k != "layer_norm"},
            obs_mean=weights["obs_mean"].numpy(),
            obs_std=weights["obs_std"].numpy(),
            action_low=(center - half).numpy(),
            action_high=(center + half).numpy(),
            layer_norm=state["config"].get("layer_norm", False),
        )
        policy.load_state_dict(weights)
        return policy.to(device).eval()
