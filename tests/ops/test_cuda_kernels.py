"""What only the CUDA kernels have: agreement with the CPU kernel within a few ulp, double
accumulation and run-to-run determinism of the reductions, the recurrence tables (kernel argument,
shared or global memory, cached), the current stream, CUDA graph capture, CUDA autocast, and TF32
left out of the tiled operator. Run where a GPU is visible and the extension was built with CUDA;
skipped with the reason otherwise, and a failure with SFRIK_REQUIRE_CUDA=1 (scripts/gpu_check.py
sets it).

Values, gradients, layouts, dtypes, reductions, compilation and the tiled sums on CUDA are the
"cuda" cases of the device-parametrised tests (the `device` fixture) in tests/ops and
tests/losses, against the same float64 references as on the CPU."""

import pytest
import torch
from helpers.cuda import requires_cuda
from helpers.tensors import gram

import sfrik_plugin

pytestmark = requires_cuda
COEFFS = [0.0, 1.0, 40.0, 40.0]
HALF_TYPES = (torch.float16, torch.bfloat16)


def compute_eps(dtype) -> float:
    """Machine epsilon of the type the kernels compute in (float32 for the half types)."""
    return torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps


def series_tolerance(dtype, coeffs=COEFFS) -> dict:
    """GPU against CPU kernel, elementwise: the two run the same recurrence in the same compute type
    (FMA contraction may differ), so they differ by a few ulp of the compute type times the size of
    the series (|P_l| <= 1), plus one rounding of the output type."""
    return dict(rtol=torch.finfo(dtype).eps, atol=8 * compute_eps(dtype) * sum(abs(c) for c in coeffs))


@pytest.mark.parametrize("dtype", (torch.float64, torch.float32, torch.float16, torch.bfloat16))
def test_matches_cpu_kernel_within_a_few_ulp(dtype):
    g = gram(777, generator=torch.Generator().manual_seed(1)).to(dtype)
    cpu = sfrik_plugin.legendre_series(g, COEFFS, 8192)
    gpu = sfrik_plugin.legendre_series(g.cuda(), COEFFS, 8192)
    assert gpu.dtype == dtype and gpu.shape == cpu.shape
    torch.testing.assert_close(gpu.cpu().double(), cpu.double(), **series_tolerance(dtype))
    # Reductions: both kernels sum in double (the CPU after float partial sums of 64 terms).
    eps = compute_eps(dtype)
    for reduction, scale in (("mean", 1.0), ("sum", g.numel())):
        cpu = sfrik_plugin.legendre_series(g, COEFFS, 8192, reduction=reduction)
        gpu = sfrik_plugin.legendre_series(g.cuda(), COEFFS, 8192, reduction=reduction)
        assert gpu.dtype == dtype and gpu.shape == ()
        torch.testing.assert_close(
            gpu.cpu().double(),
            cpu.double(),
            rtol=64 * eps + 2 * torch.finfo(dtype).eps,
            atol=scale * series_tolerance(dtype)["atol"],
        )


@pytest.mark.parametrize("dtype", (torch.float64, torch.float32))
def test_reduction_is_the_double_sum_of_the_elementwise_values(dtype):
    g = gram(1500, generator=torch.Generator().manual_seed(2)).to(dtype).cuda()
    values = sfrik_plugin.legendre_series(g, COEFFS, 8192).double()
    for reduction, expected in (("sum", values.sum()), ("mean", values.mean())):
        got = sfrik_plugin.legendre_series(g, COEFFS, 8192, reduction=reduction)
        torch.testing.assert_close(got.double(), expected, rtol=2 * torch.finfo(dtype).eps, atol=0)
        # Deterministic: the grid depends on n only and the partials are added in a fixed order.
        assert torch.equal(got, sfrik_plugin.legendre_series(g, COEFFS, 8192, reduction=reduction))


def test_reduction_accumulates_in_double():
    # +1, a small value, -1 in turn in every thread's grid-stride walk: a float accumulator
    # would keep ~7 digits of the small values (relative error ~1e-6); a double one keeps them all.
    n = 1 << 22
    small = torch.full((n,), 1e-4, dtype=torch.float32)
    t = torch.stack([torch.ones(n), small, -torch.ones(n)], dim=1).flatten()  # psi(t) = t
    expected = t.double().sum()
    got = sfrik_plugin.legendre_series(t.cuda(), [0.0, 1.0], 3, reduction="sum")
    torch.testing.assert_close(got.double().cpu(), expected, rtol=2 * torch.finfo(torch.float32).eps, atol=0)


def test_high_degree_tables_match_the_cpu_kernel():
    # Degree <= 64: the table is a kernel argument. Beyond, a cached device copy: the float64
    # table of degree 100 or 1000 (24 KB) is staged in shared memory, that of degree 2000 (48 KB)
    # is read from global memory. Each twice: the second call reads the cache.
    t = torch.linspace(-1, 1, 1001, dtype=torch.float64)
    for degree in (64, 65, 100, 1000, 2000):
        for _ in range(2):
            got = sfrik_plugin.legendre(t.cuda(), degree, 64).cpu()
            torch.testing.assert_close(got, sfrik_plugin.legendre(t, degree, 64), rtol=0, atol=1e-12)


def _delayed_on(stream, target, source):
    """On `stream`, after a busy wait of ~50 ms, copy source into target: a kernel that reads target
    on any other stream runs before the copy and sees target's old contents (zeros)."""
    with torch.cuda.stream(stream):
        torch.cuda._sleep(100_000_000)
        target.copy_(source)


def test_runs_on_the_current_stream():
    # The ops are queued behind the delayed copy on a side stream: launched on that stream they read
    # the copied values; launched on any other stream (the default one, say) they would read zeros.
    g = gram(256, generator=torch.Generator().manual_seed(4)).float()
    stream = torch.cuda.Stream()
    source = g.cuda()
    x = torch.zeros_like(source)
    stream.wait_stream(torch.cuda.current_stream())
    _delayed_on(stream, x, source)
    with torch.cuda.stream(stream):
        mean = sfrik_plugin.legendre_series(x, COEFFS, 8192, reduction="mean")
        values = sfrik_plugin.legendre_series(x, COEFFS, 8192)
        slope = torch.ops.sfrik.legendre_series_backward(torch.ones_like(x), x, COEFFS, 8192, 1)
        tiled = torch.ops.sfrik.gram_series_sum(x, None, COEFFS, 8192, 100, True, False)
    stream.synchronize()
    tol = series_tolerance(torch.float32)
    torch.testing.assert_close(values.cpu(), sfrik_plugin.legendre_series(g, COEFFS, 8192), **tol)
    torch.testing.assert_close(
        mean.cpu(), sfrik_plugin.legendre_series(g, COEFFS, 8192, reduction="mean"), rtol=1e-5, atol=tol["atol"]
    )
    torch.testing.assert_close(
        slope.cpu(),
        torch.ops.sfrik.legendre_series_backward(torch.ones_like(g), g, COEFFS, 8192, 1),
        rtol=1e-5,
        atol=1e-3,
    )
    cpu_tiled = torch.ops.sfrik.gram_series_sum(g, None, COEFFS, 8192, 100, True, False)
    torch.testing.assert_close(tiled[0].cpu(), cpu_tiled[0], rtol=1e-5, atol=1e-3)


def _capture(fn, *static):
    """fn(*static) captured in a CUDA graph (after the warm-up on a side stream that capture needs)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn(*static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(*static)
    return graph, out


def test_cuda_graph_capture_and_replay():
    # No host synchronisation and no pageable copy inside the ops: forward and backward of the fused
    # mean, the elementwise op and the tiled operator capture, and a replay on new inputs computes
    # the new values.
    z = torch.nn.functional.normalize(torch.randn(300, 64, generator=torch.Generator().manual_seed(5)), dim=1)
    static_z = z.cuda()
    static_g = (static_z @ static_z.T).requires_grad_()

    def step(g, u):
        g.grad = None
        mean = sfrik_plugin.legendre_series(g, COEFFS, 64, reduction="mean")
        mean.backward()
        values = sfrik_plugin.legendre_series(g.detach(), COEFFS, 64)
        total, gx, _ = torch.ops.sfrik.gram_series_sum(u, None, COEFFS, 64, 128, True, False)
        return mean.detach(), g.grad, values, total, gx

    graph, outs = _capture(step, static_g, static_z)
    new_z = torch.nn.functional.normalize(torch.randn(300, 64, generator=torch.Generator().manual_seed(6)), dim=1)
    with torch.no_grad():
        static_z.copy_(new_z.cuda())
        static_g.copy_(static_z @ static_z.T)
    graph.replay()
    torch.cuda.synchronize()
    g = (new_z @ new_z.T).requires_grad_()
    expected = step(g, new_z)
    for got, want in zip(outs[:4], expected[:4]):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-5)
    # The tiled gradient 2 sum_j psi'(x_i . x_j) x_j: float32 GEMMs over 300 rows, summed in another
    # order on the GPU than on the CPU; each entry within a few float32 roundings of the sum of the
    # magnitudes of its terms.
    slope = torch.ops.sfrik.legendre_series_backward(
        torch.ones((), dtype=torch.float64), (new_z @ new_z.T).double(), COEFFS, 64, 1
    )
    magnitude = 2 * slope.abs() @ new_z.double().abs()
    error = (outs[4].cpu().double() - expected[4].double()).abs()
    assert bool((error <= 8 * torch.finfo(torch.float32).eps * magnitude).all()), float((error / magnitude).max())


def test_cuda_graph_capture_of_a_high_degree_series():
    # Degree > 64: the first call copies the table (refused under capture, with a message saying
    # what to do); once warmed up, the cached table is captured like any other.
    t = torch.linspace(-1, 1, 513, device="cuda")
    coeffs = [0.0] * 80 + [1.0]
    with pytest.raises(RuntimeError, match="call the operator once with the same coefficients"):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            sfrik_plugin.legendre_series(t, [0.0] * 90 + [1.0], 64, reduction="sum")
    graph, out = _capture(lambda x: sfrik_plugin.legendre_series(x, coeffs, 64), t)
    graph.replay()
    torch.testing.assert_close(
        out.cpu(), sfrik_plugin.legendre_series(t.cpu(), coeffs, 64), **series_tolerance(torch.float32, coeffs)
    )


@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_autocast_runs_in_float32_with_the_float32_values(dtype):
    z = torch.nn.functional.normalize(torch.randn(64, 128, generator=torch.Generator().manual_seed(7)), dim=1)
    z = z.cuda()
    with torch.autocast("cuda", dtype=dtype):
        g = z @ z.T
        out = sfrik_plugin.legendre_series(g, COEFFS, 32768)
        mean = sfrik_plugin.legendre_series(g, COEFFS, 32768, reduction="mean")
    assert g.dtype == dtype and out.dtype == torch.float32 and mean.dtype == torch.float32
    # The float32 series of the rounded Gram matrix, on the CPU kernel.
    g32 = g.float().cpu()
    torch.testing.assert_close(
        out.cpu(), sfrik_plugin.legendre_series(g32, COEFFS, 32768), **series_tolerance(torch.float32)
    )
    torch.testing.assert_close(
        mean.cpu(),
        sfrik_plugin.legendre_series(g32, COEFFS, 32768, reduction="mean"),
        rtol=1e-5,
        atol=series_tolerance(torch.float32)["atol"],
    )


def test_tiled_operator_ignores_tf32():
    # A training script that enables TF32 for its network must not lower the Gram tiles' precision
    # (TF32 keeps 10 mantissa bits: ~1e-3 relative error per product).
    x = torch.nn.functional.normalize(torch.randn(1024, 512, generator=torch.Generator().manual_seed(8)), dim=1)
    x = x.cuda()
    exact = torch.ops.sfrik.gram_series_sum(x.double(), None, COEFFS, 512, 256, True, False)
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
        total, gx, _ = torch.ops.sfrik.gram_series_sum(x, None, COEFFS, 512, 256, True, False)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cuda.matmul.fp32_precision == "tf32"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    torch.testing.assert_close(total.double(), exact[0], rtol=1e-5, atol=0)
    torch.testing.assert_close(gx.double(), exact[1], rtol=1e-4, atol=1e-4 * exact[1].abs().max().item())


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16, torch.float16))
@pytest.mark.parametrize("coeffs", ([0.0, 2.0], [0.0, 1.0, 3.0], COEFFS, [0.0, 1.0, 40.0, 40.0, 5.0]))
def test_fast_and_generic_paths_agree(dtype, coeffs):
    # 16-byte aligned operands of degree 1-3 take the fast kernels; an offset of one element (not
    # aligned) or degree 4 the generic one. Elementwise they agree within a few ulp; the trailing
    # elements (n not a multiple of the pack width) are covered.
    base = (torch.rand(4099, generator=torch.Generator().manual_seed(11)) * 2 - 1).to(dtype).cuda()
    aligned, shifted = base[: 4096 + 3], base[1:].clone()[: 4096 + 3]  # same values, clone is aligned
    misaligned = base[1:][: 4096 + 3]
    assert aligned.data_ptr() % 16 == 0 and misaligned.data_ptr() % 16 != 0
    for got, want in (
        (sfrik_plugin.legendre_series(shifted, coeffs, 64), sfrik_plugin.legendre_series(misaligned, coeffs, 64)),
        (
            torch.ops.sfrik.legendre_series_backward(shifted, shifted, coeffs, 64, 1),
            torch.ops.sfrik.legendre_series_backward(misaligned, misaligned, coeffs, 64, 1),
        ),
    ):
        torch.testing.assert_close(got.double(), want.double(), **series_tolerance(dtype, coeffs))
    for t in (aligned, misaligned):
        value, slope = torch.ops.sfrik.legendre_series_value_and_grad(t, coeffs, 64, False)
        torch.testing.assert_close(
            value.cpu().double(),
            sfrik_plugin.legendre_series(t.cpu(), coeffs, 64, reduction="sum").double(),
            rtol=64 * compute_eps(dtype) + 2 * torch.finfo(dtype).eps,
            atol=t.numel() * series_tolerance(dtype, coeffs)["atol"],
        )
        torch.testing.assert_close(
            slope.cpu().double(),
            torch.ops.sfrik.legendre_series_backward(torch.ones_like(t.cpu()), t.cpu(), coeffs, 64, 1).double(),
            **series_tolerance(dtype, coeffs),
        )


def test_fast_reductions_are_deterministic_and_capture_in_a_graph():
    t = (torch.rand(3000, 3001, generator=torch.Generator().manual_seed(12)) * 2 - 1).cuda()
    first = torch.ops.sfrik.legendre_series_value_and_grad(t, COEFFS, 8192, True)
    for _ in range(3):
        again = torch.ops.sfrik.legendre_series_value_and_grad(t, COEFFS, 8192, True)
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    graph, outs = _capture(lambda x: torch.ops.sfrik.legendre_series_value_and_grad(x, COEFFS, 8192, True), t)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(outs[0], first[0]) and torch.equal(outs[1], first[1])
