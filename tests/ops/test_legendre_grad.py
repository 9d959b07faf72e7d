"""Derivatives of the operators: closed forms (scipy), gradcheck, double backward, and the
expanded gradient read in place; on every device (the `device` fixture). References are computed
on the CPU in float64."""

import numpy as np
import pytest
import torch
from helpers.cuda import requires_extension
from helpers.memory import cpu_allocations, cuda_peak_bytes
from helpers.references import DIMS, scipy_legendre_derivative
from helpers.tensors import gram, leaf, to_numpy
from numpy.polynomial import chebyshev
from scipy.special import eval_gegenbauer

import sfrik_plugin

pytestmark = requires_extension

T64 = torch.linspace(-1, 1, 101, dtype=torch.float64)
COEFFS = [0.0, 1.0, 40.0, 40.0]


@pytest.mark.parametrize("dim", DIMS)
def test_backward_op_matches_closed_form_derivative(device, dim):
    t = T64.to(device)
    ones = torch.ones_like(t)
    for degree in range(13):
        coeffs = [0.0] * degree + [1.0]
        got = to_numpy(torch.ops.sfrik.legendre_series_backward(ones, t, coeffs, dim, 1))
        np.testing.assert_allclose(
            got,
            scipy_legendre_derivative(degree, dim, T64.numpy()),
            rtol=1e-11,
            atol=1e-11 * max(1, degree**2),
            err_msg=f"degree {degree}",
        )


@pytest.mark.parametrize("dim", (2, 3, 64, 8192))
def test_autograd_gradient_of_series(device, dim):
    coeffs = [0.3, 1.0, 40.0, 40.0, 2.0]
    t = leaf(T64, device)
    sfrik_plugin.legendre_series(t, coeffs, dim).backward(torch.arange(101, dtype=torch.float64, device=device))
    expected = sum(c * scipy_legendre_derivative(k, dim, T64.numpy()) for k, c in enumerate(coeffs))
    np.testing.assert_allclose(to_numpy(t.grad), expected * np.arange(101), rtol=1e-11, atol=1e-9)


@pytest.mark.parametrize("reduction", ("none", "mean", "sum"))
def test_reduction_gradient(device, reduction):
    # An upstream gradient of 3 (3 everywhere for "none"), on a small and a larger Gram matrix.
    for n, seed in ((40, 5), (300, 2)):
        g = gram(n, generator=torch.Generator().manual_seed(seed))
        x = leaf(g, device)
        out = sfrik_plugin.legendre_series(x, COEFFS, 8192, reduction=reduction)
        out.backward(torch.full_like(out, 3.0))
        scale = 3.0 / g.numel() if reduction == "mean" else 3.0
        expected = scale * sum(c * scipy_legendre_derivative(k, 8192, g.numpy()) for k, c in enumerate(COEFFS))
        rtol = 1e-11 if device == "cpu" else 1e-10  # (the CUDA kernels' own tolerance, as test_cuda.py had it)
        np.testing.assert_allclose(to_numpy(x.grad), expected, rtol=rtol, atol=1e-12, err_msg=f"n = {n}")


def test_second_derivative_matches_closed_form(device):
    # (C_l^a)'' = 4 a (a + 1) C_{l-2}^{a+2} for dim >= 3; Chebyshev's from numpy for dim 2.
    for dim in (2, 3, 7, 1024):
        for degree in (2, 3, 6):
            t = leaf(T64, device)
            (d1,) = torch.autograd.grad(sfrik_plugin.legendre(t, degree, dim).sum(), t, create_graph=True)
            (d2,) = torch.autograd.grad(d1.sum(), t)
            if dim == 2:
                expected = chebyshev.chebval(T64.numpy(), chebyshev.chebder([0] * degree + [1], 2))
            else:
                a = (dim - 2) / 2
                expected = (
                    4 * a * (a + 1) * eval_gegenbauer(degree - 2, a + 2, T64.numpy()) / eval_gegenbauer(degree, a, 1.0)
                )
            np.testing.assert_allclose(to_numpy(d2), expected, rtol=1e-10, atol=1e-9, err_msg=f"{dim} {degree}")


@pytest.mark.parametrize("reduction", ("none", "mean", "sum"))
def test_gradcheck_and_gradgradcheck(device, reduction):
    t = torch.rand(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) * 2 - 1
    t = t.to(device).requires_grad_()
    fn = lambda x: sfrik_plugin.legendre_series(x, [0.5, 1.0, 4.0, 4.0, 1.0], 7, reduction=reduction)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (t,))
    assert torch.autograd.gradgradcheck(fn, (t,))
    # Through a transposed view and with a scalar grad broadcast over the input.
    assert torch.autograd.gradcheck(lambda x: fn(x.T), (t,))
    # The series of the CUDA check (dim 7, the SFRIK weights) on another shape.
    u = torch.rand(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(9)) * 2 - 1
    u = u.to(device).requires_grad_()
    fn = lambda v: sfrik_plugin.legendre_series(v, COEFFS, 7, reduction=reduction)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (u,)) and torch.autograd.gradgradcheck(fn, (u,))


def test_backward_op_gradients_in_both_inputs(device):
    t = torch.rand(6, dtype=torch.float64, generator=torch.Generator().manual_seed(7)) * 2 - 1
    grad = torch.rand(6, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    t, grad = t.to(device).requires_grad_(), grad.to(device).requires_grad_()
    scalar_grad = torch.tensor(0.7, dtype=torch.float64, device=device, requires_grad=True)
    for order in (0, 1, 2):
        op = lambda g, x: torch.ops.sfrik.legendre_series_backward(g, x, [0.1, 1.0, 3.0, 2.0], 5, order)  # noqa: E731
        assert torch.autograd.gradcheck(op, (grad, t))
        assert torch.autograd.gradcheck(op, (scalar_grad, t))
        assert torch.autograd.gradgradcheck(op, (grad, t))


def test_expanded_grad_is_not_materialised(device):
    # autograd hands the backward an expanded gradient (out.sum()'s backward: one value, strides 0);
    # the kernel must read that one value, not copy it out to n x n. Measured: the only n x n
    # allocation of the backward is its result, where a copy of the gradient would be a second one
    # (the control, which makes that copy, shows that the measurement sees it).
    n = 2048
    n_by_n = n * n * 4  # one n x n float32 tensor: 16 MiB
    coeffs = [0.0, 1.0, 2.0]
    t = gram(n, generator=torch.Generator().manual_seed(0)).float().to(device)
    expanded = torch.tensor(2.0, device=device).expand(n, n)
    backward = lambda grad: torch.ops.sfrik.legendre_series_backward(grad, t, coeffs, 9, 1)  # noqa: E731
    x = leaf(t, device)
    total = sfrik_plugin.legendre_series(x, coeffs, 9).sum()  # forward outside the measurement
    mean = sfrik_plugin.legendre_series(x, coeffs, 9, reduction="mean")
    calls = {
        "op, expanded grad": lambda: backward(expanded),
        "out.sum().backward()": lambda: total.backward(),
        "mean reduction backward": lambda: mean.backward(),
        "control: the grad copied out": lambda: backward(expanded.contiguous()),
    }
    backward(expanded)  # warm-up (first-call allocations of the kernels and the allocator)
    measured = {}
    for name, call in calls.items():
        x.grad = None
        if device == "cpu":
            measured[name] = sum(1 for size in cpu_allocations(call) if size >= n_by_n)
        else:
            measured[name] = cuda_peak_bytes(call, device) / n_by_n  # in n x n buffers
    control = measured.pop("control: the grad copied out")
    assert control >= 2, f"the measurement does not see a copy of the gradient: {control}"
    for name, buffers in measured.items():
        # one n x n buffer: the result (the gradient of t)
        assert (buffers == 1) if device == "cpu" else (1 <= buffers < 1.5), (name, buffers, measured)
    # and the values are those of the materialised gradient, here and in float64
    torch.testing.assert_close(backward(expanded), backward(expanded.contiguous()), rtol=0, atol=0)
    small = gram(30, device=device)
    grad = torch.tensor(2.0, dtype=torch.float64, device=device).expand_as(small)
    op = lambda g: torch.ops.sfrik.legendre_series_backward(g, small, coeffs, 9, 1)  # noqa: E731
    torch.testing.assert_close(op(grad), op(grad.contiguous()), rtol=0, atol=0)


def test_degree_zero_series_has_zero_gradient(device):
    t = leaf(T64, device)
    sfrik_plugin.legendre_series(t, [5.0], 3, reduction="sum").backward()
    assert torch.equal(t.grad, torch.zeros_like(t))
