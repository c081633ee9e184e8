"""Stacked MLPs: each member is an ordinary MLP, initialised from its own policy's generator."""

from __future__ import annotations

import torch
from torch import nn

from tge_ray.rl.stacked import LAYER_NORM_EPS, MLPShape, init_mlp, mlp_forward


def reference_mlp(params, name, shape: MLPShape, member: int) -> nn.Sequential:
    """nn.Linear (+ReLU, +LayerNorm) layers holding member ``member``'s weights."""
    layers: list[nn.Module] = []
    for layer in range(shape.n_layers + 1):
        weight, bias = params[f"{name}.w{layer}"][member], params[f"{name}.b{layer}"][member]
        linear = nn.Linear(*weight.shape)
        with torch.no_grad():
            linear.weight.copy_(weight.T)
            linear.bias.copy_(bias[0])
        layers.append(linear)
        if layer < shape.n_layers:
            layers.append(nn.ReLU())
            if shape.layer_norm:
                norm = nn.LayerNorm(shape.hidden, eps=LAYER_NORM_EPS)
                with torch.no_grad():
                    norm.weight.copy_(params[f"{name}.ln_scale{layer}"][member, 0])
                    norm.bias.copy_(params[f"{name}.ln_shift{layer}"][member, 0])
                layers.append(norm)
    if shape.tanh_output:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def test_members_are_ordinary_mlps():
    for shape in (MLPShape(5, 1, 8, 3, layer_norm=True), MLPShape(5, 3, 8, 2, tanh_output=True)):
        generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
        params = init_mlp("net", shape, generators, members_per_policy=2)
        params["net.ln_scale0" if shape.layer_norm else "net.b0"].add_(0.1)  # not the identity
        x = torch.randn(4, 6, 5)
        out = mlp_forward(params, "net", shape, x)
        assert out.shape == (4, 6, shape.out_dim)
        for member in range(4):
            torch.testing.assert_close(out[member], reference_mlp(params, "net", shape, member)(x[member]))


def test_traced_forward_equals_eager():
    """Under torch.compile the layers take their bias after the matmul (Dynamo-traced here)."""
    shape = MLPShape(5, 3, 8, 2, tanh_output=True)
    params = init_mlp("net", shape, [torch.Generator().manual_seed(0)], members_per_policy=2)
    params["net.b0"].add_(0.5)
    x = torch.randn(2, 6, 5)
    traced = torch.compile(mlp_forward, backend="eager", fullgraph=True)(params, "net", shape, x)
    torch.testing.assert_close(traced, mlp_forward(params, "net", shape, x))


def test_a_members_init_depends_on_its_policys_seed_alone():
    shape = MLPShape(5, 2, 8, 2)
    alone = init_mlp("net", shape, [torch.Generator().manual_seed(7)], members_per_policy=2)
    batch = init_mlp("net", shape, [torch.Generator().manual_seed(s) for s in (3, 7)], members_per_policy=2)
    for key, value in alone.items():
        assert torch.equal(value, batch[key][2:4]), key


def test_edac_init():
    shape = MLPShape(4, 1, 8, 2)
    params = init_mlp("c", shape, [torch.Generator().manual_seed(0)], init="edac", last_init_bound=3e-3)
    assert torch.all(params["c.b0"] == 0.1) and torch.all(params["c.b1"] == 0.1)
    assert params["c.w2"].abs().max() <= 3e-3 and params["c.b2"].abs().max() <= 3e-3
    assert params["c.w0"].abs().max() <= 0.5  # 1 / sqrt(fan_in = 4)
