"""Values of the compiled operators against scipy, numpy and mpmath references, on every device
(the `device` fixture: "cpu", and "cuda" where a GPU and the CUDA kernels are there). Inputs are
drawn on the CPU and moved; references are computed on the CPU in float64."""

import mpmath
import numpy as np
import pytest
import torch
from helpers.cuda import requires_extension
from helpers.references import DIMS, numpy_recurrence, scipy_legendre, scipy_series
from helpers.tensors import gram, to_numpy

import sfrik_plugin

pytestmark = requires_extension

# [-1, 1] plus values just outside it, as rounding leaves in a Gram matrix.
T64 = torch.cat(
    [
        torch.linspace(-1, 1, 201, dtype=torch.float64),
        torch.tensor([-1 - 1e-6, 1 + 1e-6, 1 + 1e-12], dtype=torch.float64),
    ]
)
# A finer grid of [-1, 1] (4099 points: more than one block of a CUDA launch, a ragged tail).
FINE = torch.linspace(-1, 1, 4099, dtype=torch.float64)
COEFFS = [0.0, 1.0, 40.0, 40.0]


@pytest.mark.parametrize("dim", DIMS)
def test_each_degree_matches_scipy(device, dim):
    t = T64.to(device)
    for degree in range(21):
        got = to_numpy(sfrik_plugin.legendre(t, degree, dim))
        np.testing.assert_allclose(
            got, scipy_legendre(degree, dim, T64.numpy()), rtol=0, atol=1e-12, err_msg=f"degree {degree}, dim {dim}"
        )


@pytest.mark.parametrize("dim", DIMS)
def test_series_matches_scipy(device, dim):
    coeffs = torch.rand(21, generator=torch.Generator().manual_seed(dim), dtype=torch.float64).tolist()
    for t in (T64, FINE):
        got = to_numpy(sfrik_plugin.legendre_series(t.to(device), coeffs, dim))
        np.testing.assert_allclose(got, scipy_series(coeffs, dim, t.numpy()), rtol=0, atol=1e-12 * len(coeffs))


def test_normalised_at_one(device):
    one = torch.ones(3, dtype=torch.float64, device=device)
    for dim in DIMS:
        for degree in (0, 1, 2, 7, 50):
            np.testing.assert_allclose(to_numpy(sfrik_plugin.legendre(one, degree, dim)), 1.0, rtol=1e-13)


@pytest.mark.parametrize("dim", (2, 3, 64, 32768))
def test_degree_1000_stable_and_matches_float64_recurrence(device, dim):
    t = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    got = to_numpy(sfrik_plugin.legendre(t.to(device), 1000, dim))
    np.testing.assert_allclose(got, numpy_recurrence(1000, dim, t.numpy()), rtol=0, atol=1e-11)
    assert np.abs(got).max() <= 1 + 1e-12
    t32 = t.float()  # compare on the same rounded inputs: near +-1 the slope is up to 1000^2
    got32 = to_numpy(sfrik_plugin.legendre(t32.to(device), 1000, dim).double())
    assert np.abs(got32).max() <= 1 + 1e-5
    # float32 rounding of the recurrence constants grows like degree^2 * eps near +-1 (the
    # conditioning of P_1000 there: one float32 ulp of t alone moves it by up to ~0.06).
    np.testing.assert_allclose(got32, numpy_recurrence(1000, dim, t32.double().numpy()), rtol=0, atol=1e-3)


@pytest.mark.parametrize("dim,degree", [(3, 1000), (7, 400), (32768, 1000)])
def test_high_degree_against_mpmath(device, dim, degree):
    # 50-digit arithmetic: the float64 error of the compiled recurrence, not just agreement with it.
    mpmath.mp.dps = 50
    points = [-0.999, -0.5, 0.0, 0.1234, 0.7, 0.9999]

    def exact(x):
        x = mpmath.mpf(x)
        p_prev, p = mpmath.mpf(1), x
        for l in range(1, degree):
            p_prev, p = p, ((2 * l + dim - 2) * x * p - l * p_prev) / (l + dim - 2)
        return float(p)

    got = to_numpy(sfrik_plugin.legendre(torch.tensor(points, dtype=torch.float64, device=device), degree, dim))
    np.testing.assert_allclose(got, [exact(x) for x in points], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dim", (3, 8192))
def test_float32_close_to_float64(device, dim):
    g = gram(300, generator=torch.Generator().manual_seed(1), device=device)
    ref = sfrik_plugin.legendre_series(g, COEFFS, dim)
    got = sfrik_plugin.legendre_series(g.float(), COEFFS, dim)
    assert got.dtype == torch.float32 and got.device.type == device
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=2e-5 * sum(COEFFS))


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_half_inputs_computed_in_float32(device, dtype):
    t = torch.linspace(-1, 1, 1001, dtype=torch.float64).to(dtype)
    coeffs = [0.5, 1.0, 40.0, 40.0]
    got = sfrik_plugin.legendre_series(t.to(device), coeffs, 32768)
    assert got.dtype == dtype
    # Exact float64 value on the same (rounded) inputs, rounded once to the output dtype.
    expected = torch.from_numpy(scipy_series(coeffs, 32768, t.double().numpy())).to(dtype)
    torch.testing.assert_close(got.cpu(), expected, rtol=torch.finfo(dtype).eps, atol=1e-3)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
def test_reductions_match_elementwise(device, dtype):
    g = gram(513, generator=torch.Generator().manual_seed(2)).to(dtype)
    exact = scipy_series(COEFFS, 8192, g.double().numpy())
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for reduction, expected in (("mean", exact.mean()), ("sum", exact.sum())):
        got = sfrik_plugin.legendre_series(g.to(device), COEFFS, 8192, reduction=reduction)
        assert got.shape == () and got.dtype == dtype and got.device.type == device
        np.testing.assert_allclose(got.item(), expected, rtol=tol)


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_half_reduction_is_the_float32_reduction_rounded(device, dtype):
    # The half kernels compute in float32: same per-element values, same double sum, one rounding.
    g = gram(900, generator=torch.Generator().manual_seed(3)).to(dtype).to(device)
    for reduction in ("sum", "mean"):
        half = sfrik_plugin.legendre_series(g, COEFFS, 8192, reduction=reduction)
        single = sfrik_plugin.legendre_series(g.float(), COEFFS, 8192, reduction=reduction)
        assert torch.equal(half, single.to(dtype)), (reduction, half, single)


def test_noncontiguous_inputs_keep_values_and_layout(device):
    base = gram(64, generator=torch.Generator().manual_seed(3), device=device)
    coeffs = [0.1, 1.0, 40.0, 40.0, 3.0]
    cases = {
        "transposed": base.T,
        "sliced": base[::3, 1::2],
        "expanded": base[0].expand(5, 64),
        "channels_last": base.reshape(2, 8, 16, 16).contiguous(memory_format=torch.channels_last),
        "permuted_sliced": base.reshape(4, 16, 64).permute(2, 0, 1)[:, ::2],
        "scalar": base[0, 0],
    }
    for name, t in cases.items():
        expected = torch.as_tensor(scipy_series(coeffs, 7, to_numpy(t.contiguous())))
        got = sfrik_plugin.legendre_series(t, coeffs, 7)
        assert got.device == t.device, name
        torch.testing.assert_close(got.cpu().contiguous(), expected.reshape(t.shape), rtol=0, atol=1e-12, msg=name)
        assert got.stride() == torch.empty_like(t).stride(), name
        for reduction, fn in (("mean", np.mean), ("sum", np.sum)):
            np.testing.assert_allclose(
                sfrik_plugin.legendre_series(t, coeffs, 7, reduction=reduction).item(),
                fn(expected.numpy()),
                rtol=1e-12,
                err_msg=f"{name} {reduction}",
            )


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
def test_empty_inputs(device, dtype):
    for shape in ((0,), (0, 5), (3, 0, 2), (0, 3)):
        t = torch.empty(shape, dtype=dtype, device=device)
        out = sfrik_plugin.legendre_series(t, [1.0, 2.0], 3)
        assert out.shape == shape and out.stride() == torch.empty_like(t).stride() and out.device == t.device
        assert sfrik_plugin.legendre_series(t, [1.0, 2.0], 3, reduction="sum").item() == 0.0
        assert torch.isnan(sfrik_plugin.legendre_series(t, [1.0, 2.0], 3, reduction="mean"))  # as torch.mean


def test_coefficient_forms_agree(device):
    t = torch.linspace(-1, 1, 11, dtype=torch.float64, device=device)
    as_list = sfrik_plugin.legendre_series(t, [0.0, 1.0, 40.0], 64)
    as_tensor = sfrik_plugin.legendre_series(t, torch.tensor([0.0, 1.0, 40.0]), 64)
    as_numpy = sfrik_plugin.legendre_series(t, np.array([0.0, 1.0, 40.0]), np.int64(64))
    torch.testing.assert_close(as_list, as_tensor, rtol=0, atol=0)
    torch.testing.assert_close(as_list, as_numpy, rtol=0, atol=0)


def test_nonfinite_inputs_propagate(device):
    t = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.5], dtype=torch.float64, device=device)
    out = sfrik_plugin.legendre_series(t, [0.0, 1.0, 2.0], 5).cpu()
    assert torch.isnan(out[0]) and not torch.isfinite(out[1]) and not torch.isfinite(out[2])
    assert torch.isfinite(out[3])
    assert torch.isnan(sfrik_plugin.legendre_series(t, [0.0, 1.0, 2.0], 5, reduction="mean"))


def test_large_parallel_input_matches_serial_reference(device):
    # Large enough to be split over threads and blocks of the CPU kernel (and over blocks of a
    # CUDA launch), with a ragged tail.
    g = gram(1031, generator=torch.Generator().manual_seed(4))
    got = sfrik_plugin.legendre_series(g.to(device), COEFFS, 8192)
    np.testing.assert_allclose(to_numpy(got), scipy_series(COEFFS, 8192, g.numpy()), rtol=0, atol=1e-11)
    np.testing.assert_allclose(
        sfrik_plugin.legendre_series(g.to(device), COEFFS, 8192, reduction="sum").item(),
        got.sum().item(),
        rtol=1e-12,
    )


def test_cpu_results_are_the_same_bits_whatever_the_thread_count():
    # The CPU kernels split t into chunks that each thread takes from its own share first and from
    # the others' shares' ends after; the reductions add the per-chunk sums in chunk order. So the
    # values, the sums and the dense-grad backward are the same bits for any number of threads.
    generator = torch.Generator().manual_seed(7)
    t = torch.rand(37 * 32768 + 123, generator=generator) * 2 - 1  # 38 chunks, a ragged last one
    grad = torch.randn(t.shape, generator=generator)
    ops = torch.ops.sfrik
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 5):
            torch.set_num_threads(threads)
            results.append(
                (
                    ops.legendre_series(t, COEFFS, 8192),
                    ops.legendre_series_reduce(t, COEFFS, 8192, False),
                    ops.legendre_series_backward(grad, t, COEFFS, 8192, 1),
                )
            )
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)
