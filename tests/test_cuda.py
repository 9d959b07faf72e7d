"""CUDA kernels against float64 references (run where a GPU is visible and the extension was
built with CUDA; skipped with the reason otherwise)."""
import numpy as np
import pytest
import torch

import sfrik_plugin
from conftest import DIMS, gram, requires_cuda, scipy_legendre_derivative, scipy_series

pytestmark = requires_cuda
COEFFS = [0.0, 1.0, 40.0, 40.0]


@pytest.mark.parametrize("dim", DIMS)
def test_values_match_scipy(dim):
    t = torch.linspace(-1, 1, 4099, dtype=torch.float64)
    coeffs = torch.rand(21, generator=torch.Generator().manual_seed(dim), dtype=torch.float64).tolist()
    got = sfrik_plugin.legendre_series(t.cuda(), coeffs, dim).cpu().numpy()
    np.testing.assert_allclose(got, scipy_series(coeffs, dim, t.numpy()), rtol=0, atol=1e-12 * len(coeffs))


@pytest.mark.parametrize("dtype", (torch.float64, torch.float32, torch.float16, torch.bfloat16))
def test_matches_cpu_kernel(dtype):
    g = gram(777, generator=torch.Generator().manual_seed(1)).to(dtype)
    tol = {torch.float64: 1e-12, torch.float32: 1e-4}.get(dtype, 0.5)
    for reduction in ("none", "mean", "sum"):
        cpu = sfrik_plugin.legendre_series(g, COEFFS, 8192, reduction=reduction)
        gpu = sfrik_plugin.legendre_series(g.cuda(), COEFFS, 8192, reduction=reduction)
        assert gpu.dtype == dtype and gpu.shape == cpu.shape
        torch.testing.assert_close(gpu.cpu().double(), cpu.double(), rtol=tol, atol=tol * 81)


@pytest.mark.parametrize("reduction", ("none", "mean", "sum"))
def test_gradients(reduction):
    g = gram(300, generator=torch.Generator().manual_seed(2))
    x = g.cuda().requires_grad_()
    out = sfrik_plugin.legendre_series(x, COEFFS, 8192, reduction=reduction)
    out.backward(torch.ones_like(out))
    scale = 1 / g.numel() if reduction == "mean" else 1.0
    expected = scale * sum(c * scipy_legendre_derivative(k, 8192, g.numpy()) for k, c in enumerate(COEFFS))
    np.testing.assert_allclose(x.grad.cpu().numpy(), expected, rtol=1e-10, atol=1e-12)
    t = (torch.rand(3, 4, dtype=torch.float64, device="cuda") * 2 - 1).requires_grad_()
    fn = lambda v: sfrik_plugin.legendre_series(v, COEFFS, 7, reduction=reduction)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (t,)) and torch.autograd.gradgradcheck(fn, (t,))


def test_layouts_empty_and_high_degree():
    g = gram(64, generator=torch.Generator().manual_seed(3)).cuda()
    for t in (g.T, g[::3, 1::2], g[0].expand(5, 64), torch.empty(0, 3, device="cuda", dtype=torch.float64)):
        expected = scipy_series(COEFFS, 7, t.cpu().contiguous().numpy())
        got = sfrik_plugin.legendre_series(t, COEFFS, 7)
        assert got.stride() == torch.empty_like(t).stride()
        np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(sfrik_plugin.legendre_series(t, COEFFS, 7, reduction="sum").item(),
                                   expected.sum(), rtol=1e-12)
    # The float64 recurrence table of degree 1000 fits in shared memory (24 KB), that of degree
    # 2000 (48 KB) is read from global memory: both paths.
    t = torch.linspace(-1, 1, 1001, dtype=torch.float64)
    for degree in (1000, 2000):
        got = sfrik_plugin.legendre(t.cuda(), degree, 64).cpu()
        torch.testing.assert_close(got, sfrik_plugin.legendre(t, degree, 64), rtol=0, atol=1e-12)


def test_runs_on_the_current_stream_and_compiles():
    g = gram(128, generator=torch.Generator().manual_seed(4)).float().cuda()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out = sfrik_plugin.legendre_series(g, COEFFS, 8192, reduction="mean")
    stream.synchronize()
    expected = sfrik_plugin.legendre_series(g.cpu(), COEFFS, 8192, reduction="mean")
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()
    fn = torch.compile(lambda x: sfrik_plugin.legendre_series(x, COEFFS, 8192, reduction="mean"), fullgraph=True)
    torch.testing.assert_close(fn(g), out)


def test_autocast_float32():
    z = torch.nn.functional.normalize(torch.randn(64, 128, device="cuda"), dim=1)
    with torch.autocast("cuda", dtype=torch.float16):
        g = z @ z.T
        out = sfrik_plugin.legendre_series(g, COEFFS, 32768, reduction="mean")
    assert g.dtype == torch.float16 and out.dtype == torch.float32


@pytest.mark.parametrize("symmetric", (True, False))
def test_tiled_operator_matches_float64_cpu(symmetric):
    # The device-generic tiled driver with cuBLAS tiles and the CUDA series kernels.
    g = torch.Generator().manual_seed(6)
    x = torch.nn.functional.normalize(torch.randn(1000, 48, generator=g, dtype=torch.float64), dim=1)
    y = None if symmetric else torch.nn.functional.normalize(torch.randn(700, 48, generator=g, dtype=torch.float64), dim=1)
    cpu = torch.ops.sfrik.gram_series_sum(x, y, COEFFS, 48, 256, True, not symmetric)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        gpu = torch.ops.sfrik.gram_series_sum(x.to("cuda", dtype), None if y is None else y.to("cuda", dtype),
                                              COEFFS, 48, 256, True, not symmetric)
        for a, b in zip(gpu, cpu):
            torch.testing.assert_close(a.cpu().double(), b, rtol=tol, atol=tol * max(1.0, b.abs().max().item()))


def test_mmd_uniform_tiled_equals_dense_on_cuda():
    z = torch.randn(3000, 96, generator=torch.Generator().manual_seed(7)).cuda().requires_grad_()
    dense = sfrik_plugin.mmd_uniform(z, (1.0, 40.0, 40.0), impl="dense")
    (g_dense,) = torch.autograd.grad(dense, z)
    tiled = sfrik_plugin.mmd_uniform(z, (1.0, 40.0, 40.0), impl="tiled", tile_size=1024)
    (g_tiled,) = torch.autograd.grad(tiled, z)
    torch.testing.assert_close(tiled, dense, rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(g_tiled, g_dense, rtol=2e-4, atol=2e-4 * g_dense.abs().max().item())
