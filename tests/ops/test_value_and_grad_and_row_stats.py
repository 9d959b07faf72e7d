"""The two operators added for the GPU path, against float64 references written without the
package: sfrik::legendre_series_value_and_grad (the reduction and its derivative from one read of
t) and sfrik::row_stats (double row sums x.x, y.y, x.y), on every device (the `device` fixture),
every floating dtype, with gradients (gradcheck, gradgradcheck)."""

import numpy as np
import pytest
import torch
from helpers.cuda import requires_extension
from helpers.references import scipy_legendre, scipy_legendre_derivative

pytestmark = requires_extension

COEFFS = [0.0, 1.0, 40.0, 40.0]
DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


def eps(dtype) -> float:
    return torch.finfo(dtype).eps


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mean", (True, False))
@pytest.mark.parametrize("coeffs", (COEFFS, [0.5, 2.0], [0.0, 0.0, 1.0, 0.0, 3.0], [1.0, -2.0, 0.5]))
def test_value_and_grad_match_scipy(device, dtype, mean, coeffs):
    # 1001 elements: not a multiple of any pack width (the fast CUDA path's trailing elements).
    t = torch.linspace(-1, 1, 1001, dtype=torch.float64).to(dtype)
    x = t.double().numpy()
    q = 64
    values = sum(c * scipy_legendre(k, q, x) for k, c in enumerate(coeffs))
    slopes = sum(c * scipy_legendre_derivative(k, q, x) for k, c in enumerate(coeffs))
    n = x.size
    value, slope = torch.ops.sfrik.legendre_series_value_and_grad(t.to(device), coeffs, q, mean)
    assert value.dtype == dtype and value.shape == () and slope.dtype == dtype and slope.shape == t.shape
    expected_value = values.mean() if mean else values.sum()
    scale = 1.0 / n if mean else 1.0
    size = sum(abs(c) for c in coeffs)  # |P_l| <= 1
    # compute type float32 (float64 for float64), double sums, one rounding of the output type
    compute = eps(torch.float64 if dtype == torch.float64 else torch.float32)
    total_scale = 1.0 if mean else n
    np.testing.assert_allclose(
        float(value), expected_value, rtol=2 * eps(dtype), atol=total_scale * 16 * compute * size
    )
    bound = max(1, len(coeffs)) ** 2 * size  # |P_l'| <= l^2 on [-1, 1]
    np.testing.assert_allclose(
        slope.cpu().double().numpy(), slopes * scale, rtol=2 * eps(dtype), atol=scale * 16 * compute * bound
    )


def test_value_and_grad_equals_reduce_and_backward(device):
    g = torch.rand(37, 41, generator=torch.Generator().manual_seed(4)).to(device) * 2 - 1
    value, slope = torch.ops.sfrik.legendre_series_value_and_grad(g, COEFFS, 8192, True)
    assert torch.equal(value, torch.ops.sfrik.legendre_series_reduce(g, COEFFS, 8192, True))
    one = torch.tensor(1.0 / g.numel(), device=device)
    torch.testing.assert_close(slope, torch.ops.sfrik.legendre_series_backward(one, g, COEFFS, 8192, 1))
    value, slope = torch.ops.sfrik.legendre_series_value_and_grad(g.T, COEFFS, 8192, False)  # a transposed view
    assert slope.stride() == g.T.stride()
    torch.testing.assert_close(
        slope, torch.ops.sfrik.legendre_series_backward(torch.ones_like(g.T), g.T, COEFFS, 8192, 1)
    )


def test_value_and_grad_gradients(device):
    t = (torch.rand(23, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2 - 1).to(device)
    op = torch.ops.sfrik.legendre_series_value_and_grad
    for mean in (True, False):
        assert torch.autograd.gradcheck(lambda x: op(x, COEFFS, 16, mean), (t.clone().requires_grad_(),))
        assert torch.autograd.gradgradcheck(lambda x: op(x, COEFFS, 16, mean), (t.clone().requires_grad_(),))


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_stats_are_double_sums_of_the_exact_products(device, dtype):
    g = torch.Generator().manual_seed(6)
    # widths around the vector and unroll sizes of both kernels, and one long row
    for q in (1, 3, 8, 9, 1000, 4099):
        x = torch.randn(5, q, generator=g).to(dtype)
        y = torch.randn(5, q, generator=g).to(dtype)
        xd, yd = x.double(), y.double()
        expected = torch.stack([(xd * xd).sum(1), (yd * yd).sum(1), (xd * yd).sum(1)], dim=1)
        got = torch.ops.sfrik.row_stats(x.to(device), y.to(device))
        assert got.dtype == torch.float64 and got.shape == (5, 3)
        # double sums of exact products: only the double rounding of q terms
        torch.testing.assert_close(got.cpu(), expected, rtol=q * 2 * eps(torch.float64), atol=1e-300)
        alone = torch.ops.sfrik.row_stats(x.to(device), None)
        assert alone.shape == (5, 1)
        torch.testing.assert_close(alone.cpu(), expected[:, :1], rtol=q * 2 * eps(torch.float64), atol=1e-300)


def test_row_stats_keep_what_float32_squares_lose(device):
    x = torch.tensor([[1e20, 1e20, 0.0], [1e-25, 0.0, 0.0], [3e30, -1e30, 2e30]], device=device)
    got = torch.ops.sfrik.row_stats(x, None).cpu().squeeze(1)
    expected = (x.cpu().double() ** 2).sum(1)
    torch.testing.assert_close(got, expected, rtol=1e-15, atol=0)
    assert not torch.isfinite((x.float() ** 2).sum(1)[0])  # what the float32 sum gives


def test_row_stats_gradients(device):
    g = torch.Generator().manual_seed(7)
    x, y = (torch.randn(4, 6, dtype=torch.float64, generator=g).to(device).requires_grad_() for _ in range(2))
    op = torch.ops.sfrik.row_stats
    assert torch.autograd.gradcheck(lambda a, b: op(a, b), (x, y))
    assert torch.autograd.gradgradcheck(lambda a, b: op(a, b), (x, y))
    assert torch.autograd.gradcheck(lambda a: op(a, None), (x,))


def test_row_stats_of_strided_and_empty_rows(device):
    x = torch.randn(6, 10, generator=torch.Generator().manual_seed(8)).to(device)
    torch.testing.assert_close(torch.ops.sfrik.row_stats(x.T, None), torch.ops.sfrik.row_stats(x.T.contiguous(), None))
    assert torch.ops.sfrik.row_stats(x[:0], None).shape == (0, 1)
    torch.testing.assert_close(
        torch.ops.sfrik.row_stats(x[:, :0], x[:, :0]).cpu(), torch.zeros(6, 3, dtype=torch.float64)
    )
