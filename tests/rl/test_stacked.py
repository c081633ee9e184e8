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


def test_bf16_hidden_layers_round_their_products_and_the_output_layer_stays_fp32():
    """matmul=bf16: a hidden layer multiplies its input and weight rounded to bfloat16, summing in
    fp32 and rounding the sum to bfloat16 (as autocast does); biases and the output layer are fp32."""
    shape = MLPShape(5, 3, 16, 2, tanh_output=True, matmul="bf16")
    params = init_mlp("net", shape, [torch.Generator().manual_seed(s) for s in (0, 1)])
    x = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(2))
    out = mlp_forward(params, "net", shape, x)
    assert out.dtype == torch.float32
    rounded = lambda t: t.to(torch.bfloat16).double()  # noqa: E731
    for member in range(2):
        h = x[member].double()
        for layer in range(shape.n_layers):
            product = rounded(rounded(h) @ rounded(params[f"net.w{layer}"][member]))
            h = torch.relu(product + params[f"net.b{layer}"][member].double())
        expected = torch.tanh(h @ params["net.w2"][member].double() + params["net.b2"][member].double())
        torch.testing.assert_close(out[member].double(), expected, rtol=2e-3, atol=2e-4)  # a bf16 step at most
    full = mlp_forward(params, "net", MLPShape(5, 3, 16, 2, tanh_output=True), x)
    assert not torch.equal(out, full)  # the rounding shows
    torch.testing.assert_close(out, full, rtol=0.05, atol=0.02)  # and is small
    linear = MLPShape(5, 3, 16, 0, matmul="bf16")  # no hidden layer: the output layer alone, in fp32
    params = init_mlp("lin", linear, [torch.Generator().manual_seed(0)], members_per_policy=2)
    assert params["lin.w0"].shape == (2, 5, 3)
    assert torch.equal(mlp_forward(params, "lin", linear, x), mlp_forward(params, "lin", MLPShape(5, 3, 16, 0), x))


def test_bf16_layers_give_fp32_gradients():
    shape = MLPShape(5, 1, 16, 2, matmul="bf16")
    params = init_mlp("net", shape, [torch.Generator().manual_seed(0)])
    x = torch.randn(1, 6, 5)
    grads = torch.func.grad(lambda p: mlp_forward(p, "net", shape, x).square().sum())(params)
    assert all(g.dtype == torch.float32 and g.shape == params[k].shape and g.abs().sum() > 0 for k, g in grads.items())
