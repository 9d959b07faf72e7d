"""torch.func on the operators and the losses (docs/api.md): the reverse-mode transforms (grad,
vjp, jacrev, vmap and their compositions) give the values of plain autograd and of a loop over the
batch, on every device (the `device` fixture); forward mode (jvp, jacfwd, hessian) and the
multi-process paths are refused with a message that says so."""

import pytest
import torch

import sfrik_plugin
from sfrik_plugin import (
    AUHLoss,
    DistanceKernel,
    GaussianKernel,
    KernelMMDLoss,
    SFRIKLoss,
    legendre_series,
    mmd_uniform,
)

COEFFS = [0.0, 1.0, 40.0, 40.0]
WEIGHTS = (1.0, 40.0, 40.0)

# loss name -> f(z1, z2), each path of the losses: the fused dense two-view function, the tiled
# operator (several tiles), the reduced-precision Gram, the other regularisers
LOSSES = {
    "sfrik_dense": SFRIKLoss(mmd_impl="dense"),
    "sfrik_tiled": SFRIKLoss(mmd_impl="tiled", mmd_tile_size=3),
    "sfrik_bf16_gram": SFRIKLoss(mmd_impl="dense", gram_precision="bf16"),
    "auh": AUHLoss(),
    "kernel_gaussian": KernelMMDLoss(GaussianKernel(2.5)),
    "kernel_distance": KernelMMDLoss(DistanceKernel(1.0)),
}


def _views(device, n=8, q=6, batch=()):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(*batch, n, q, generator=g, dtype=torch.float64).to(device) for _ in range(2)]


def _autograd(f, *inputs):
    """The gradient of the 0-dim f(*inputs) with respect to the first input, by plain autograd."""
    leaf = inputs[0].detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(leaf, *inputs[1:]), leaf)
    return grad


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_grad_of_the_series_is_autograds(device, reduction):
    t = (torch.rand(5, 7, dtype=torch.float64) * 2 - 1).to(device)

    def f(x):
        out = legendre_series(x, COEFFS, 8, reduction=reduction)
        return out.sum() if reduction == "none" else out

    torch.testing.assert_close(torch.func.grad(f)(t), _autograd(f, t), rtol=1e-12, atol=1e-12)
    # second derivative: jacrev of grad, against autograd's double backward (diagonal: elementwise)
    second = torch.func.jacrev(torch.func.grad(f))(t)
    leaf = t.clone().requires_grad_(True)
    (first,) = torch.autograd.grad(f(leaf), leaf, create_graph=True)
    (diagonal,) = torch.autograd.grad(first.sum(), leaf)
    torch.testing.assert_close(second.reshape(t.numel(), t.numel()).diagonal().reshape(t.shape), diagonal)


def test_vmap_of_the_series_is_a_loop(device):
    t = (torch.rand(3, 5, 4, dtype=torch.float64) * 2 - 1).to(device)
    for reduction in ("none", "sum", "mean"):
        batched = torch.func.vmap(lambda x, r=reduction: legendre_series(x, COEFFS, 8, reduction=r))(t)
        looped = torch.stack([legendre_series(x, COEFFS, 8, reduction=reduction) for x in t])
        torch.testing.assert_close(batched, looped, rtol=0, atol=0)
    # the batch dimension elsewhere than first
    torch.testing.assert_close(
        torch.func.vmap(lambda x: legendre_series(x, COEFFS, 8), in_dims=1, out_dims=1)(t),
        legendre_series(t, COEFFS, 8),
    )


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_grad_of_the_losses_is_autograds(device, name):
    loss = LOSSES[name]
    z1, z2 = _views(device)
    torch.testing.assert_close(torch.func.grad(loss)(z1, z2), _autograd(loss, z1, z2), rtol=1e-10, atol=1e-12)
    g1, g2 = torch.func.grad(loss, argnums=(0, 1))(z1, z2)
    torch.testing.assert_close(g2, _autograd(lambda b, a: loss(a, b), z2, z1), rtol=1e-10, atol=1e-12)
    value, vjp = torch.func.vjp(loss, z1, z2)
    torch.testing.assert_close(value, loss(z1, z2))
    torch.testing.assert_close(vjp(torch.ones_like(value))[0], g1)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_vmap_and_per_sample_gradients_of_the_losses_are_a_loop(device, name):
    loss = LOSSES[name]
    z1, z2 = _views(device, n=6, q=5, batch=(3,))
    values = torch.func.vmap(loss)(z1, z2)
    torch.testing.assert_close(values, torch.stack([loss(a, b) for a, b in zip(z1, z2)]), rtol=1e-12, atol=1e-12)
    grads = torch.func.vmap(torch.func.grad(loss))(z1, z2)
    looped = torch.stack([_autograd(loss, a, b) for a, b in zip(z1, z2)])
    torch.testing.assert_close(grads, looped, rtol=1e-10, atol=1e-12)


def test_jacrev_and_the_second_derivative_of_the_regulariser_are_autograds(device):
    z = _views(device, n=5, q=4)[0]

    def f(x):
        return mmd_uniform(x, WEIGHTS)

    hessian = torch.func.jacrev(torch.func.jacrev(f))(z)
    reference = torch.autograd.functional.hessian(f, z)
    torch.testing.assert_close(hessian, reference, rtol=1e-9, atol=1e-10)
    loss = LOSSES["sfrik_dense"]
    z1, z2 = _views(device, n=5, q=4)
    jacobian = torch.func.jacrev(lambda a: loss(a, z2))(z1)
    torch.testing.assert_close(jacobian, _autograd(loss, z1, z2), rtol=1e-10, atol=1e-12)
    # the fused two-view function's second derivative (its differentiable backward)
    torch.testing.assert_close(
        torch.func.jacrev(torch.func.jacrev(lambda a: loss(a, z2)))(z1),
        torch.autograd.functional.hessian(lambda a: loss(a, z2), z1),
        rtol=1e-9,
        atol=1e-8,
    )


@pytest.mark.parametrize(
    "transform",
    [
        lambda f, x: torch.func.jvp(f, (x,), (torch.ones_like(x),)),
        lambda f, x: torch.func.jacfwd(f)(x),
        lambda f, x: torch.func.hessian(f)(x),
    ],
    ids=["jvp", "jacfwd", "hessian"],
)
@pytest.mark.parametrize("what", ["series", "sfrik", "tiled"])
def test_forward_mode_is_refused_with_a_clear_message(device, transform, what):
    z1, z2 = _views(device, n=4, q=3)
    f = {
        "series": lambda x: legendre_series(x.clamp(-1, 1), COEFFS, 8, reduction="sum"),
        "sfrik": lambda x: LOSSES["sfrik_dense"](x, z2),
        "tiled": lambda x: LOSSES["sfrik_tiled"](x, z2),
    }[what]
    with pytest.raises(NotImplementedError, match=r"forward-mode AD .* is not supported .* use reverse mode"):
        transform(f, z1)


def test_the_raw_operators_vmap_without_the_fallback(device, capfd):
    # torch.ops.sfrik.* have vmap rules: the same values as a loop, and no "performance drop" fallback
    ops = torch.ops.sfrik
    x = torch.randn(3, 5, 4, dtype=torch.float64).to(device)
    y = torch.randn(3, 5, 4, dtype=torch.float64).to(device)
    t = x.clamp(-1, 1)
    cases = [
        (lambda a: ops.legendre_series(a, COEFFS, 8), (t,)),
        (lambda a: ops.legendre_series_reduce(a, COEFFS, 8, True), (t,)),
        (lambda a: ops.legendre_series_backward(a.new_ones(()), a, COEFFS, 8, 2), (t,)),
        (lambda g, a: ops.legendre_series_backward(g, a, COEFFS, 8, 1), (y, t)),
        (lambda a: ops.legendre_series_value_and_grad(a, COEFFS, 8, False), (t,)),
        (lambda a: ops.row_stats(a, None), (x,)),
        (lambda a, b: ops.row_stats(a, b), (x, y)),
        (lambda a: ops.gram_series_sum(a / 3, None, COEFFS, 8, 2, True, False), (x,)),
        (lambda a, b: ops.gram_series_sum(a / 3, b / 3, COEFFS, 8, 2, False, True), (x, y)),
    ]
    for f, args in cases:
        batched = torch.func.vmap(f)(*args)
        looped = [f(*entry) for entry in zip(*args)]
        if isinstance(batched, tuple):
            for i, part in enumerate(batched):
                torch.testing.assert_close(part, torch.stack([out[i] for out in looped]), rtol=0, atol=0)
        else:
            torch.testing.assert_close(batched, torch.stack(looped), rtol=0, atol=0)
    # one argument batched, the other not
    torch.testing.assert_close(
        torch.func.vmap(lambda a: ops.row_stats(a, y[0]))(x), torch.stack([ops.row_stats(a, y[0]) for a in x])
    )
    assert "performance drop" not in capfd.readouterr().err


def test_the_multi_process_paths_refuse_torch_func(monkeypatch):
    from sfrik_plugin import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    z = torch.randn(4, 3, dtype=torch.float64)
    for path in (distributed.gather_rows, lambda u: distributed.sharded_mmd([u], COEFFS, 3, 4)[0]):
        with pytest.raises(NotImplementedError, match=r"2 processes does not support torch\.func"):
            torch.func.grad(lambda u, p=path: p(u).sum())(z)


@pytest.mark.fresh_interpreter
def test_the_losses_still_compile_and_backward_as_before():
    # the setup_context form changes nothing outside torch.func: torch.compile(fullgraph=True) and
    # double backward through the fused function
    z1, z2 = (v.float().requires_grad_(True) for v in _views("cpu"))
    loss = SFRIKLoss()
    eager = loss(z1, z2)
    compiled = torch.compile(loss, fullgraph=True)(z1, z2)
    torch.testing.assert_close(compiled, eager)
    assert sfrik_plugin.extension_info()["loaded"]
