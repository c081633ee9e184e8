"""MLPs with a leading member axis: P policies (times E critics) evaluated as one program.

A stacked MLP holds, per layer, a weight (M, fan_in, fan_out) and a bias (M, 1, fan_out), M the
members. ``forward`` maps (M, B, in) to (M, B, out) with one batched matmul (``baddbmm``) per
layer, so P policies cost one kernel per layer instead of P. Under ``torch.compile`` a layer is
``bmm`` plus the bias instead: ATen's ``baddbmm`` first copies the broadcast bias into its whole
(M, B, out) output, where Inductor adds it in the kernel that applies the ReLU anyway.
Parameters live in a flat dict of tensors (``"<net>.w0"``, ``"<net>.b0"``, ...) so that
``torch.func.grad`` can differentiate a pure loss of them and one optimiser can update them all.

Each member is initialised from its own policy's generator, in a fixed order, so a member's
weights depend on its policy's seed alone, not on which other policies share the stack. A
one-unit output layer (critics, value) is a multiply and a sum over the hidden axis rather than
a matmul: CPU BLAS computes an (H, 1) product of one matrix with another kernel than a batch of
them, which would make a policy's numbers depend on the batch it trains in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tge_ray.config.learners import MatmulPrecision

# Flax's LayerNorm epsilon (CORL's ReBRAC is written in JAX/Flax).
LAYER_NORM_EPS = 1e-6


@dataclass(frozen=True)
class MLPShape:
    """An MLP: ``n_layers`` hidden Linear+ReLU(+LayerNorm) layers of width ``hidden``, then a
    Linear to ``out_dim`` (and tanh when ``tanh_output``).

    ``matmul="bf16"`` multiplies each hidden layer's input and weight in bfloat16 (the BLAS sums
    the products in fp32 and rounds the sum to bfloat16, as autocast does; the bias is added in
    fp32); the output layer, the parameters, their gradients and the optimiser stay fp32. An
    actor's state carries it, so a policy acts as it trained."""

    in_dim: int
    out_dim: int
    hidden: int
    n_layers: int
    layer_norm: bool = False
    tanh_output: bool = False
    matmul: MatmulPrecision = "fp32"

    @property
    def dims(self) -> list[int]:
        return [self.in_dim] + [self.hidden] * self.n_layers + [self.out_dim]


def init_mlp(
    name: str,
    shape: MLPShape,
    generators: list[torch.Generator],
    members_per_policy: int = 1,
    *,
    init: str = "torch",
    last_init_bound: float | None = None,
) -> dict[str, torch.Tensor]:
    """Parameters of a stacked MLP, P * members_per_policy members, on the CPU.

    ``init="torch"`` draws like ``nn.Linear`` (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)));
    ``init="edac"`` is CORL ReBRAC's: the same weights, hidden biases 0.1, and the last layer
    U(-b, b) with b = ``last_init_bound``. Policy p's members draw from ``generators[p]``.
    """
    dims = shape.dims
    n_members = len(generators) * members_per_policy
    params: dict[str, torch.Tensor] = {}
    for layer, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        params[f"{name}.w{layer}"] = torch.empty(n_members, fan_in, fan_out)
        params[f"{name}.b{layer}"] = torch.empty(n_members, 1, fan_out)
    if shape.layer_norm:
        for layer in range(shape.n_layers):
            params[f"{name}.ln_scale{layer}"] = torch.ones(n_members, 1, shape.hidden)
            params[f"{name}.ln_shift{layer}"] = torch.zeros(n_members, 1, shape.hidden)
    last = len(dims) - 2
    for policy, generator in enumerate(generators):
        for member in range(policy * members_per_policy, (policy + 1) * members_per_policy):
            for layer, fan_in in enumerate(dims[:-1]):
                weight, bias = params[f"{name}.w{layer}"][member], params[f"{name}.b{layer}"][member]
                if layer == last and last_init_bound is not None:
                    weight.uniform_(-last_init_bound, last_init_bound, generator=generator)
                    bias.uniform_(-last_init_bound, last_init_bound, generator=generator)
                    continue
                bound = 1.0 / math.sqrt(fan_in)
                weight.uniform_(-bound, bound, generator=generator)
                if init == "edac" and layer < last:
                    bias.fill_(0.1)
                else:
                    bias.uniform_(-bound, bound, generator=generator)
    return params


def affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """x @ weight + bias for (M, B, in), (M, in, out), (M, 1, out); see the module docstring.
    ``bf16``: the product of x and weight in bfloat16 (see :class:`MLPShape`)."""
    if bf16:
        return torch.bmm(x.to(torch.bfloat16), weight.to(torch.bfloat16)).float() + bias
    if torch.compiler.is_compiling():
        return torch.bmm(x, weight) + bias
    return torch.baddbmm(bias, x, weight)


def mlp_forward(params: dict[str, torch.Tensor], name: str, shape: MLPShape, x: torch.Tensor) -> torch.Tensor:
    """(M, B, in) -> (M, B, out) through the stacked MLP ``name``."""
    bf16 = shape.matmul == "bf16"
    for layer in range(shape.n_layers):
        x = torch.relu(affine(x, params[f"{name}.w{layer}"], params[f"{name}.b{layer}"], bf16))
        if shape.layer_norm:
            x = F.layer_norm(x, (shape.hidden,), eps=LAYER_NORM_EPS)
            x = torch.addcmul(params[f"{name}.ln_shift{layer}"], x, params[f"{name}.ln_scale{layer}"])
    weight, bias = params[f"{name}.w{shape.n_layers}"], params[f"{name}.b{shape.n_layers}"]
    if shape.out_dim == 1:  # see the module docstring: the same numbers for any number of members
        x = (x * weight.transpose(1, 2)).sum(-1, keepdim=True) + bias
    else:
        x = affine(x, weight, bias)
    return torch.tanh(x) if shape.tanh_output else x


def member_slice(params: dict[str, torch.Tensor], name: str, start: int, stop: int) -> dict[str, torch.Tensor]:
    """The parameters of members [start, stop) of net ``name`` (views)."""
    prefix = f"{name}."
    return {key: value[start:stop] for key, value in params.items() if key.startswith(prefix)}
