"""The tiled regulariser (sfrik::gram_series_sum and mmd_uniform(mmd_impl="tiled")): values against a
scipy Gegenbauer sum, gradients against float64 autograd of the dense formula, equality with the
dense path (odd sizes, n not a multiple of the tile, one-row tiles), registrations (opcheck) and
argument errors on every device (the `device` fixture: the device-generic driver with cuBLAS
tiles and the CUDA series kernels on "cuda"); CPU memory below one n x n matrix, the CPU matmul
settings, and the "auto" choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.cuda import requires_extension
from helpers.references import scipy_series

from sfrik_experiments.utils.memory import profile_cpu_peak_bytes
from sfrik_plugin.losses import SFRIKLoss
from sfrik_plugin.reference import legendre_series_reference
from sfrik_plugin.regulariser import mmd_uniform
from sfrik_plugin.tiled import AUTO_TILED_ROWS, _gram_series_sum_python, use_tiled

pytestmark = requires_extension

COEFFS = [0.0, 1.0, 40.0, 40.0]
WEIGHTS = (1.0, 40.0, 40.0)


def unit_rows(n: int, q: int, seed: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """n unit rows of q features, drawn on the CPU and moved to `device`."""
    return F.normalize(torch.randn(n, q, generator=torch.Generator().manual_seed(seed), dtype=dtype), dim=1).to(device)


def randn(n: int, q: int, seed: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    return torch.randn(n, q, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


def dense_sum_and_grads(x, y, coeffs, dim):
    """float64 autograd of sum psi(x y^T) through the pure-PyTorch recurrence (independent of the op)."""
    x = x.detach().double().requires_grad_()
    other = x if y is None else y.detach().double().requires_grad_()
    total = legendre_series_reference(x @ other.T, coeffs, dim).sum()
    wanted = (x,) if y is None else (x, other)
    return total.detach(), torch.autograd.grad(total, wanted)


@pytest.mark.parametrize("symmetric", (True, False))
@pytest.mark.parametrize("m,n,tile", [(1, 1, 1), (5, 3, 2), (64, 64, 64), (100, 37, 32), (257, 300, 64), (90, 90, 7)])
def test_op_value_matches_scipy_and_gradients_match_autograd(device, symmetric, m, n, tile):
    q = 12
    x = unit_rows(m, q, seed=m)
    y = None if symmetric else unit_rows(n, q, seed=n + 1)
    total, gx, gy = torch.ops.sfrik.gram_series_sum(
        x.to(device), None if y is None else y.to(device), COEFFS, q, tile, True, not symmetric
    )
    assert total.device.type == gx.device.type == gy.device.type == device
    # cuBLAS sums the tile products in another order than the CPU GEMM
    rtol = 1e-12 if device == "cpu" else 1e-10
    other = x if symmetric else y
    expected = scipy_series(COEFFS, q, (x @ other.T).numpy()).sum()
    np.testing.assert_allclose(total.item(), expected, rtol=rtol)
    _, grads = dense_sum_and_grads(x, y, COEFFS, q)
    torch.testing.assert_close(gx.cpu(), grads[0], rtol=10 * rtol, atol=10 * rtol)
    if symmetric:
        assert gy.shape == (0,)  # grad_y not asked for: an empty tensor, on the device
    else:
        torch.testing.assert_close(gy.cpu(), grads[1], rtol=10 * rtol, atol=10 * rtol)


@pytest.mark.parametrize("symmetric", (True, False))
def test_op_in_float32_and_float64_against_float64_autograd(device, symmetric):
    # Larger sizes (several tiles of 256, a ragged edge) in both dtypes the operator takes.
    x = unit_rows(1000, 48, seed=6)
    y = None if symmetric else unit_rows(700, 48, seed=7)
    expected_total, expected_grads = dense_sum_and_grads(x, y, COEFFS, 48)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        total, gx, gy = torch.ops.sfrik.gram_series_sum(
            x.to(device, dtype), None if y is None else y.to(device, dtype), COEFFS, 48, 256, True, not symmetric
        )
        assert total.dtype == gx.dtype == dtype
        torch.testing.assert_close(total.cpu().double(), expected_total, rtol=tol, atol=0)
        grads = (gx,) if symmetric else (gx, gy)
        if symmetric:
            assert gy.shape == (0,)
        for got, want in zip(grads, expected_grads):
            assert got.shape == want.shape
            torch.testing.assert_close(got.cpu().double(), want, rtol=tol, atol=tol * max(1.0, want.abs().max().item()))


def test_op_without_gradients_returns_empty_gradient_tensors(device):
    x = unit_rows(20, 5, seed=1, device=device)
    total, gx, gy = torch.ops.sfrik.gram_series_sum(x, x, COEFFS, 5, 8, False, False)
    assert gx.shape == (0,) and gy.shape == (0,)
    # y given as the same rows: every pair once, no symmetry shortcut, the same sum.
    symmetric, _, _ = torch.ops.sfrik.gram_series_sum(x, None, COEFFS, 5, 8, False, False)
    torch.testing.assert_close(total, symmetric, rtol=1e-13, atol=0)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize(
    "n,q,tile",
    [(1, 12, 3), (2, 12, 1), (7, 12, 3), (100, 12, 32), (257, 12, 64), (300, 12, 1000), (513, 12, 512)]
    + [(3000, 96, 1024)],  # several large tiles, a ragged edge
)
def test_mmd_uniform_tiled_equals_dense_with_gradients(device, dtype, tol, n, q, tile):
    z = randn(n, q, seed=n, dtype=dtype, device=device).requires_grad_()
    dense = mmd_uniform(z, WEIGHTS, mmd_impl="dense")
    tiled = mmd_uniform(z, WEIGHTS, mmd_impl="tiled", mmd_tile_size=tile)
    (g_dense,) = torch.autograd.grad(dense, z)
    (g_tiled,) = torch.autograd.grad(tiled, z)
    torch.testing.assert_close(tiled, dense, rtol=tol, atol=tol)
    scale = g_dense.abs().max().item()
    # on CUDA, cuBLAS tiles against one cuBLAS GEMM: float32 sums in other orders
    g_tol = 10 * tol if device == "cuda" else tol
    torch.testing.assert_close(g_tiled, g_dense, rtol=g_tol, atol=g_tol * scale)


def test_float32_tiled_against_float64(device):
    z = randn(1000, 64, seed=3, device=device)
    exact = mmd_uniform(z.double(), WEIGHTS, mmd_impl="dense")
    torch.testing.assert_close(
        mmd_uniform(z, WEIGHTS, mmd_impl="tiled", mmd_tile_size=128).double(), exact, rtol=1e-5, atol=1e-6
    )


def test_gradcheck_and_double_backward(device):
    z = randn(40, 6, seed=4, dtype=torch.float64, device=device).requires_grad_()
    fn = lambda v: mmd_uniform(v, (1.0, 2.0, 0.5), mmd_impl="tiled", mmd_tile_size=16)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z,))
    assert torch.autograd.gradgradcheck(fn, (z,))
    x, y = (
        unit_rows(9, 4, seed=5, device=device).requires_grad_(),
        unit_rows(11, 4, seed=6, device=device).requires_grad_(),
    )
    op = lambda a, b: torch.ops.sfrik.gram_series_sum(a, b, COEFFS, 4, 4, True, True)[0]  # noqa: E731
    assert torch.autograd.gradcheck(op, (x, y))
    assert torch.autograd.gradgradcheck(op, (x, y))


def test_gradient_of_the_sum_when_the_op_was_not_asked_for_it(device):
    x = unit_rows(30, 6, seed=7, device=device).requires_grad_()
    total, _, _ = torch.ops.sfrik.gram_series_sum(x, None, COEFFS, 6, 8, False, False)
    (grad,) = torch.autograd.grad(total, x)
    torch.testing.assert_close(grad, dense_sum_and_grads(x, None, COEFFS, 6)[1][0], rtol=1e-11, atol=1e-11)


def test_gradient_outputs_are_not_differentiable(device):
    x = unit_rows(6, 3, seed=8, device=device).requires_grad_()
    _, gx, _ = torch.ops.sfrik.gram_series_sum(x, None, COEFFS, 3, 4, True, False)
    with pytest.raises(NotImplementedError, match="grad_x, grad_y"):
        gx.sum().backward()


@pytest.mark.fresh_interpreter
def test_python_tiles_equal_the_compiled_operator(device):
    for y in (None, unit_rows(50, 8, seed=9, device=device)):
        x = unit_rows(70, 8, seed=10, device=device)
        expected, _, _ = torch.ops.sfrik.gram_series_sum(x, y, COEFFS, 8, 16, False, False)
        torch.testing.assert_close(_gram_series_sum_python(x, y, COEFFS, 8, 16), expected, rtol=1e-12, atol=0)


@pytest.mark.fresh_interpreter
def test_fallback_without_the_operator_equals_dense(device, monkeypatch):
    import sfrik_plugin.tiled as tiled

    monkeypatch.setattr(tiled, "_use_extension", lambda t: False)
    z = randn(45, 7, seed=15, dtype=torch.float64, device=device).requires_grad_()
    dense = mmd_uniform(z, WEIGHTS, mmd_impl="dense")
    fallback = mmd_uniform(z, WEIGHTS, mmd_impl="tiled", mmd_tile_size=8)
    torch.testing.assert_close(fallback, dense, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        torch.autograd.grad(fallback, z)[0], torch.autograd.grad(dense, z)[0], rtol=1e-11, atol=1e-13
    )


def test_sfrik_and_multicrop_losses_tiled_equal_dense(device):
    z = [randn(70, 12, seed=s, dtype=torch.float64, device=device).requires_grad_() for s in range(4)]
    for fn in (
        lambda impl: SFRIKLoss(mmd_impl=impl, mmd_tile_size=32).terms(z[0], z[1]),
        lambda impl: SFRIKLoss(mmd_impl=impl, mmd_tile_size=32).multicrop_terms(z, 2, True),
    ):
        dense, tiled = fn("dense"), fn("tiled")
        for a, b in zip(dense, tiled):
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
        for a, b in zip(
            torch.autograd.grad(dense.loss, z, allow_unused=True), torch.autograd.grad(tiled.loss, z, allow_unused=True)
        ):
            if a is not None:
                torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-13)


@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_peak_memory_is_tiles_not_the_n_by_n_matrix():
    # On the CPU (the profiler's record of the CPU allocator; the bound is the CPU driver's tiles).
    n, q, tile = 4096, 16, 256
    z = torch.randn(n, q, generator=torch.Generator().manual_seed(11)).requires_grad_()
    n_by_n = n * n * 4

    def step(impl):
        z.grad = None
        mmd_uniform(z, WEIGHTS, mmd_impl=impl, mmd_tile_size=tile).backward()

    dense, tiled = profile_cpu_peak_bytes(lambda: step("dense")), profile_cpu_peak_bytes(lambda: step("tiled"))
    assert dense >= n_by_n  # the dense path holds n x n matrices
    assert tiled <= 4 * tile * tile * 4 + 8 * n * q * 4, tiled  # a few tiles + O(n q)


def test_opcheck(device):
    x = unit_rows(33, 5, seed=12, dtype=torch.float32, device=device)
    y = unit_rows(21, 5, seed=13, dtype=torch.float32, device=device)
    for args in (
        (x, None, COEFFS, 5, 8, True, False),
        (x, y, COEFFS, 5, 8, True, True),
        (x, y, COEFFS, 5, 64, False, False),
    ):
        torch.library.opcheck(torch.ops.sfrik.gram_series_sum.default, args)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (
            lambda x: torch.ops.sfrik.gram_series_sum(x.half(), None, COEFFS, 5, 8, False, False),
            TypeError,
            "x must be a float32 or float64",
        ),
        (
            lambda x: torch.ops.sfrik.gram_series_sum(x[0], None, COEFFS, 5, 8, False, False),
            ValueError,
            "x must be 2-D",
        ),
        (
            lambda x: torch.ops.sfrik.gram_series_sum(x, x[:, :3], COEFFS, 5, 8, False, False),
            ValueError,
            "y must have as many features",
        ),
        (
            lambda x: torch.ops.sfrik.gram_series_sum(x, x.double(), COEFFS, 5, 8, False, False),
            ValueError,
            "y must have the dtype",
        ),
        (
            lambda x: torch.ops.sfrik.gram_series_sum(x, None, COEFFS, 5, 8, True, True),
            ValueError,
            "grad_y must be false",
        ),
        (lambda x: torch.ops.sfrik.gram_series_sum(x, None, COEFFS, 5, 0, False, False), ValueError, "tile must be"),
        (lambda x: torch.ops.sfrik.gram_series_sum(x, None, COEFFS, 1, 8, False, False), ValueError, "q must be"),
        (
            lambda x: torch.ops.sfrik.gram_series_sum(x, None, [1.0, float("nan")], 5, 8, False, False),
            ValueError,
            "coeffs must be finite",
        ),
        (lambda x: mmd_uniform(x, WEIGHTS, mmd_impl="flash"), ValueError, "mmd_impl must be one of"),
        (lambda x: mmd_uniform(x, WEIGHTS, mmd_tile_size=0), ValueError, "mmd_tile_size must be an integer >= 1"),
        (lambda x: mmd_uniform(x, WEIGHTS, mmd_tile_size=2.5), TypeError, "mmd_tile_size must be an integer"),
        (lambda x: mmd_uniform(x, WEIGHTS, shard_mmd="yes"), TypeError, "shard_mmd must be a bool"),
        (lambda x: SFRIKLoss(mmd_impl="fast").terms(x, x), ValueError, "impl must be one of"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(device, call, error, match):
    with pytest.raises(error, match=match):
        call(unit_rows(10, 5, seed=14, dtype=torch.float32, device=device))


def test_auto_chooses_by_size():
    assert not use_tiled("auto", 512, 256, 512)  # one tile: dense
    assert use_tiled("auto", 2048, 256, 512)  # n x n work dominates
    assert use_tiled("auto", 2048, 1024, 512)  # q <= n / 2 on a CPU
    assert not use_tiled("auto", 2048, 2048, 512)  # the dense path's half Gram products are faster
    assert not use_tiled("auto", 2048, 8192, 512, torch.device("cpu"))
    assert use_tiled("auto", 8192, 8192, 4096, torch.device("cuda"))  # q <= 4 n elsewhere (not re-measured)
    assert use_tiled("auto", 8192, 8192, 512, torch.device("cpu"))  # and beyond the CPU's measured sizes
    assert not use_tiled("auto", 1024, 8192, 512)  # n x q passes dominate: the fused dense path
    assert use_tiled("auto", AUTO_TILED_ROWS, 10**6, 512)  # memory
    assert use_tiled("tiled", 3, 8, 512) and not use_tiled("dense", 10**6, 8, 512)


def _matmul_settings():
    """The process-wide float32 matmul settings (the legacy getter refuses a mix of the two APIs)."""
    try:
        legacy = torch.get_float32_matmul_precision()
    except RuntimeError:
        legacy = "mixed"
    return legacy, torch.backends.cuda.matmul.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision


@pytest.mark.parametrize("setting", ("high", "medium", "mkldnn-bf16"))
def test_tile_gemms_ignore_the_global_matmul_precision(setting):
    # "medium" (and oneDNN's bf16 setting) make float32 GEMMs on a CPU with AVX512-BF16 run in
    # bfloat16, "high" allows TF32 on a GPU: the tiles must stay in float32 either way, and the
    # settings must come back as they were.
    x = unit_rows(600, 512, seed=21, dtype=torch.float32)
    expected = torch.ops.sfrik.gram_series_sum(x, None, COEFFS, 512, 128, True, False)
    before = torch.get_float32_matmul_precision()
    try:
        if setting == "mkldnn-bf16":
            torch.backends.mkldnn.matmul.fp32_precision = "bf16"
        else:
            torch.set_float32_matmul_precision(setting)
        state = _matmul_settings()
        total, gx, _ = torch.ops.sfrik.gram_series_sum(x, None, COEFFS, 512, 128, True, False)
        assert _matmul_settings() == state
    finally:
        torch.set_float32_matmul_precision(before)
        torch.backends.mkldnn.matmul.fp32_precision = "none"
    assert _matmul_settings() == (before, "ieee" if before == "highest" else "tf32", "none")
    # The same GEMM routine on the same operands: the same bits. (Here, on an AMD EPYC with
    # AVX512-BF16, "medium" sends the GEMMs to oneDNN, whose sums differ in the last bits.)
    assert torch.equal(total, expected[0]) and torch.equal(gx, expected[1])
