"""The operators as PyTorch sees them: opcheck (schema, fake kernels, autograd registration,
AOT dispatch) and torch.compile(fullgraph=True) on every device (the `device` fixture), and CPU
autocast (CUDA autocast: test_cuda_kernels.py)."""

import pytest
import torch
from helpers.cuda import requires_extension
from helpers.tensors import gram

import sfrik_plugin

pytestmark = requires_extension

COEFFS = [0.0, 1.0, 40.0, 40.0]


def _samples(device):
    g = gram(12, generator=torch.Generator().manual_seed(9), device=device).float()
    yield g
    yield g.T
    yield g[::2, 1::3]
    yield g.double().requires_grad_()
    yield g.T.clone().requires_grad_()
    yield torch.empty(0, 4, device=device)


@pytest.mark.parametrize("index", range(6))
def test_opcheck(device, index):
    t = list(_samples(device))[index]
    torch.library.opcheck(torch.ops.sfrik.legendre_series.default, (t, COEFFS, 8192))
    for mean in (True, False) if t.numel() else (False,):  # (the mean of nothing is NaN, and NaN != NaN)
        torch.library.opcheck(torch.ops.sfrik.legendre_series_reduce.default, (t, COEFFS, 8192, mean))
        torch.library.opcheck(torch.ops.sfrik.legendre_series_value_and_grad.default, (t, COEFFS, 8192, mean))
    if t.dim() == 2:
        other = torch.rand(t.shape, dtype=t.dtype).to(device).requires_grad_(t.requires_grad)
        torch.library.opcheck(torch.ops.sfrik.row_stats.default, (t, None))
        torch.library.opcheck(torch.ops.sfrik.row_stats.default, (t, other))
    grad = torch.rand(t.shape, dtype=t.dtype).to(device)
    for g in (grad, torch.tensor(0.5, dtype=t.dtype, device=device)):
        torch.library.opcheck(
            torch.ops.sfrik.legendre_series_backward.default, (g.requires_grad_(t.requires_grad), t, COEFFS, 8192, 1)
        )


def _sfrik_regulariser(z):
    z = torch.nn.functional.normalize(z, dim=1)
    return sfrik_plugin.legendre_series(z @ z.T, COEFFS, 256, reduction="mean")


def _elementwise_then_mean(g):
    return sfrik_plugin.legendre_series(g, COEFFS, 256).mean()


def _fused_mean(g):
    return sfrik_plugin.legendre_series(g, COEFFS, 8192, reduction="mean")


@pytest.mark.parametrize("fn", (_sfrik_regulariser, _elementwise_then_mean, _fused_mean))
@pytest.mark.fresh_interpreter
def test_compile_fullgraph_matches_eager(device, fn):
    torch._dynamo.reset()
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(10))
    if fn is _elementwise_then_mean:
        x = gram(64, generator=torch.Generator().manual_seed(10)).float()
    if fn is _fused_mean:
        x = gram(128, generator=torch.Generator().manual_seed(4)).float()
    x_eager, x_comp = x.to(device, copy=True).requires_grad_(), x.to(device, copy=True).requires_grad_()
    eager = fn(x_eager)
    eager.backward()
    compiled = torch.compile(fn, fullgraph=True)(x_comp)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(x_comp.grad, x_eager.grad)
    if fn is _fused_mean:  # the compiled graph calls the same kernel: the same bits
        assert torch.equal(compiled, eager)


@pytest.mark.fresh_interpreter
def test_compiled_graph_calls_the_custom_ops(device):
    # Dynamo must keep the ops whole (not fall back to Python or decompose them).
    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    g = gram(8, device=device).float().requires_grad_()
    torch.compile(_elementwise_then_mean, backend=backend, fullgraph=True)(g)
    code = "\n".join(gm.code for gm in graphs)
    assert "sfrik.legendre_series" in code


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
def test_autocast_runs_in_float32(dtype):
    z = torch.randn(32, 64, generator=torch.Generator().manual_seed(11))
    z = torch.nn.functional.normalize(z, dim=1)
    with torch.autocast("cpu", dtype=dtype):
        g = z @ z.T
        assert g.dtype == dtype
        out = sfrik_plugin.legendre_series(g, COEFFS, 32768)
        red = sfrik_plugin.legendre_series(g, COEFFS, 32768, reduction="mean")
    assert out.dtype == torch.float32 and red.dtype == torch.float32
    # The float32 series of the (rounded) low-precision Gram matrix, outside autocast.
    torch.testing.assert_close(out, sfrik_plugin.legendre_series(g.float(), COEFFS, 32768))
    torch.testing.assert_close(red, out.mean())


def test_autocast_backward_gradient_dtype():
    z = torch.randn(16, 32, generator=torch.Generator().manual_seed(12)).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        zn = torch.nn.functional.normalize(z, dim=1)
        loss = sfrik_plugin.legendre_series(zn @ zn.T, COEFFS, 32, reduction="mean")
    loss.backward()
    assert z.grad.dtype == torch.float32 and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("dtype", (torch.float64, torch.float32, torch.bfloat16))
@pytest.mark.fresh_interpreter
def test_fallback_under_autocast_gives_the_compiled_dtype_and_values(monkeypatch, dtype):
    # The pure-PyTorch fallback keeps the compiled ops' autocast contract: float32 out, except
    # float64, which autocast's float32 rule leaves alone; the tiled sum's GEMMs stay out of autocast.
    import warnings

    import sfrik_plugin.tiled as tiled
    from sfrik_plugin import _extension

    g = gram(24, generator=torch.Generator().manual_seed(13)).to(dtype)
    rows = torch.nn.functional.normalize(torch.randn(40, 32, generator=torch.Generator().manual_seed(14)), dim=1)
    rows = rows.to(torch.float64 if dtype == torch.float64 else torch.float32)

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = [sfrik_plugin.legendre_series(g, COEFFS, 64, reduction=r) for r in ("none", "mean", "sum")]
            return out + [tiled.gram_series_sum(rows, None, COEFFS, 32, 16)]

    compiled = run()
    monkeypatch.setattr(_extension, "available_for", lambda t: False)
    monkeypatch.setattr(tiled, "_use_extension", lambda t: False)
    monkeypatch.delenv("SFRIK_REQUIRE_EXTENSION", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fallback's one-time warning
        fallback = run()
    expected = torch.float64 if dtype == torch.float64 else torch.float32
    for a, b in zip(compiled[:3], fallback[:3]):
        assert a.dtype == b.dtype == expected
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
    assert compiled[3].dtype == fallback[3].dtype == rows.dtype
    torch.testing.assert_close(fallback[3], compiled[3], rtol=1e-6, atol=0)
