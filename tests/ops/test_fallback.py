"""sfrik_plugin.fallback, what runs where the extension has no kernel for a device: the Legendre
series and the row sums under torch.compile, against the compiled operators (values and every
derivative order), against its own eager form and gradcheck in float64; the whole loss on the
fallback paths against the compiled one; a compile failure warned once and computed eagerly. On
every device (the `device` fixture: on a GPU these run Triton kernels, with no CUDA toolkit)."""

from __future__ import annotations

import warnings

import pytest
import torch

import sfrik_plugin
from sfrik_plugin import _extension, fallback

COEFFS, Q = [0.0, 1.0, 40.0, 40.0], 64


@pytest.fixture(autouse=True)
def _needs_the_extension():
    if not sfrik_plugin.extension_info()["loaded"]:
        pytest.skip("compiled extension not loaded: nothing to compare the fallback with")


def grid(device: str, dtype=torch.float32, shape=(37, 29)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return (torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1).to(device, dtype)


def test_series_tables_are_the_derivative_identity():
    # d/dt P_2(q; t) = d/dt (q t^2 - 1) / (q - 1) = 2 q t / (q - 1) = 2 q / (q - 1) P_1(q + 2; t)
    coeffs, dim = fallback.series_tables([0.0, 0.0, 1.0], 5, 1)
    assert dim == 7.0 and coeffs == [0.0, pytest.approx(2 * 5 / 4)]
    assert fallback.series_tables([3.0], 5, 2) == ([0.0], 5.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("order", [0, 1, 2])
@pytest.mark.fresh_interpreter
def test_the_compiled_fallback_equals_the_operator(device, dtype, order):
    t = grid(device, dtype)
    upstream = grid(device, dtype).flip(0)
    ops = torch.ops.sfrik
    tol = {"rtol": 1e-5, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-10}
    want = (
        ops.legendre_series(t, COEFFS, Q) if order == 0 else ops.legendre_series_backward(upstream, t, COEFFS, Q, order)
    )
    got = fallback.series_times(t, None if order == 0 else upstream, COEFFS, Q, order)
    torch.testing.assert_close(got, want, **tol)
    scalar = torch.tensor(0.25, device=device, dtype=dtype)
    torch.testing.assert_close(
        fallback.series_times(t, scalar, COEFFS, Q, order),
        ops.legendre_series_backward(scalar, t, COEFFS, Q, order),
        **tol,
    )
    with fallback.eager():
        torch.testing.assert_close(
            fallback.series_times(t, None, COEFFS, Q, order), fallback.series_times(t, None, COEFFS, Q, order)
        )
    for mean in (False, True):
        torch.testing.assert_close(
            fallback.series_reduce(t, COEFFS, Q, mean), ops.legendre_series_reduce(t, COEFFS, Q, mean), **tol
        )


@pytest.mark.fresh_interpreter
def test_the_fallback_is_differentiable_to_any_order(device):
    t = grid(device, torch.float64, (6, 5)).requires_grad_()
    upstream = grid(device, torch.float64, (6, 5)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: fallback.series_times(x, None, COEFFS, Q), (t,))
    assert torch.autograd.gradgradcheck(lambda x: fallback.series_times(x, None, COEFFS, Q), (t,))
    assert torch.autograd.gradcheck(lambda x, g: fallback.series_times(x, g, COEFFS, Q, 1), (t, upstream))
    assert torch.autograd.gradgradcheck(lambda x: fallback.series_reduce(x, COEFFS, Q, True), (t,))
    # the public API on the fallback paths, against the compiled operator's derivatives
    with _extension.reference_only():
        first = torch.autograd.grad(sfrik_plugin.legendre_series(t, COEFFS, Q, reduction="sum"), t, create_graph=True)[
            0
        ]
        second = torch.autograd.grad(first.sum(), t)[0]
    want_first = torch.ops.sfrik.legendre_series_backward(torch.ones((), dtype=t.dtype, device=device), t, COEFFS, Q, 1)
    want_second = torch.ops.sfrik.legendre_series_backward(
        torch.ones((), dtype=t.dtype, device=device), t, COEFFS, Q, 2
    )
    torch.testing.assert_close(first, want_first, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(second, want_second, rtol=1e-12, atol=1e-10)


@pytest.mark.fresh_interpreter
def test_the_row_sums_fallback_equals_the_operator(device):
    x, y = grid(device, torch.float32, (20, 33)), grid(device, torch.float32, (20, 33)).flip(1)
    with _extension.reference_only():
        from sfrik_plugin.rows import row_stats

        got = (row_stats(x), row_stats(x, y))
    torch.testing.assert_close(got[0], torch.ops.sfrik.row_stats(x, None), rtol=1e-12, atol=0)
    torch.testing.assert_close(got[1], torch.ops.sfrik.row_stats(x, y), rtol=1e-12, atol=0)
    x64 = x.double().requires_grad_()
    y64 = y.double().requires_grad_()
    assert torch.autograd.gradcheck(fallback.row_stats, (x64[:5, :4].detach().requires_grad_(), None))
    assert torch.autograd.gradgradcheck(lambda a, b: fallback.row_stats(a, b), (x64[:5, :4], y64[:5, :4]))


@pytest.mark.parametrize("mmd_impl", ["dense", "tiled"])
@pytest.mark.fresh_interpreter
def test_the_loss_on_the_fallback_paths_equals_the_compiled_loss(device, mmd_impl):
    generator = torch.Generator().manual_seed(4)
    z1 = torch.randn(40, 24, generator=generator).to(device).requires_grad_()
    z2 = (z1.detach() + 0.3 * torch.randn(40, 24, generator=generator).to(device)).requires_grad_()
    options = {"gather_distributed": False, "mmd_impl": mmd_impl, "mmd_tile_size": 16}
    loss = sfrik_plugin.sfrik_loss_func(z1, z2, **options)
    want = torch.autograd.grad(loss, (z1, z2))
    with _extension.reference_only():
        fallback_loss = sfrik_plugin.sfrik_loss_func(z1, z2, **options)
        got = torch.autograd.grad(fallback_loss, (z1, z2))
    torch.testing.assert_close(fallback_loss, loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


@pytest.mark.fresh_interpreter
def test_a_compile_failure_is_warned_once_and_computed_eagerly(monkeypatch):
    t = grid("cpu")

    def broken(*args):
        raise RuntimeError("no compiler here\nmore lines")

    monkeypatch.setattr(fallback, "_FAILED", [])
    monkeypatch.setattr(fallback, "_COMPILED", {fallback._evaluate: broken, fallback._evaluate_sum: broken})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = fallback.series_times(t, None, COEFFS, Q)
        fallback.series_reduce(t, COEFFS, Q, True)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages == [
        "sfrik_plugin's fallback could not torch.compile the Legendre series (RuntimeError: no compiler here): "
        "using the eager pure-PyTorch recurrence (slower, more memory)"
    ]
    assert fallback.compile_failure() == "RuntimeError: no compiler here"
    torch.testing.assert_close(first, torch.ops.sfrik.legendre_series(t, COEFFS, Q), rtol=1e-5, atol=1e-4)


@pytest.mark.fresh_interpreter
def test_the_tables_are_made_once_per_series():
    t = grid("cpu")
    fallback.series_times(t, None, COEFFS, Q)
    size = len(fallback._TABLES)
    fallback.series_times(t * 0.5, None, COEFFS, Q)
    assert len(fallback._TABLES) == size  # no copy from the host at each call (a GPU would wait for it)


@pytest.mark.fresh_interpreter
def test_the_fallback_works_inside_torch_func():
    t = grid("cpu", torch.float64, (5, 4))
    with _extension.reference_only():
        got = torch.func.grad(lambda x: sfrik_plugin.legendre_series(x, COEFFS, Q, reduction="sum"))(t)
    want = torch.ops.sfrik.legendre_series_backward(torch.ones((), dtype=t.dtype), t, COEFFS, Q, 1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-10)
