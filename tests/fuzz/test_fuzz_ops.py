"""Property-based fuzzing (hypothesis) of the operators (sfrik_plugin.series, the sfrik:: ops)
on the CPU: their values and gradients; test_fuzz_op_errors.py does their bad arguments and the
fuzzer's findings, test_fuzz_losses.py the losses.

Every generated case matches an independent float64 oracle (numpy recurrences written in
helpers.fuzz, not the package's reference) within the rounding bound derived there; never a crash,
a hang (each example runs under a watchdog) or a wrong number.

Example counts: see helpers.fuzz (SFRIK_FUZZ_EXAMPLES=N for the long run, scripts/fuzz.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from helpers.cuda import requires_extension
from helpers.fuzz import (
    FLOAT_DTYPES,
    assert_matches,
    compute_dtype,
    expected_elementwise,
    fuzz_settings,
    oracle,
    watchdog,
)
from helpers.references import scipy_legendre, scipy_legendre_derivative
from hypothesis import given, note
from hypothesis import strategies as st

import sfrik_plugin

pytestmark = requires_extension


# ---------------------------------------------------------------------------------------------
# Strategies: tensors (shape, dtype, layout, values), coefficients, dims


def special_values(dtype: torch.dtype) -> np.ndarray:
    """+-1 exactly, the nearest values outside [-1, 1] and just inside in this dtype, 0, -0,
    the smallest subnormal, NaN and +-inf."""
    eps = torch.finfo(dtype).eps
    tiny = torch.finfo(dtype).smallest_normal * eps
    return np.array(
        [1.0, -1.0, 1 + eps, -1 - eps, 1 - eps / 2, -1 + eps / 2, 0.0, -0.0, tiny, math.nan, math.inf, -math.inf]
    )


@st.composite
def value_mixes(draw):
    """Per-example fractions: special values, values slightly outside [-1, 1], far outside, NaN/Inf."""
    return dict(
        special=draw(st.sampled_from([0.0, 0.05, 0.3])),
        outside=draw(st.sampled_from([0.0, 0.1, 0.5])),
        far=draw(st.sampled_from([0.0, 0.0, 0.02])),
        nonfinite=draw(st.sampled_from([0.0, 0.0, 0.02])),
    )


def make_values(rng: np.random.Generator, n: int, dtype: torch.dtype, mix: dict) -> np.ndarray:
    v = rng.uniform(-1, 1, n)
    u = rng.uniform(size=n)
    sign = rng.choice([-1.0, 1.0], n)
    outside = u < mix["outside"]
    v[outside] = sign[outside] * (1 + rng.uniform(0, 1e-3, outside.sum()))
    far = rng.uniform(size=n) < mix["far"]
    v[far] = sign[far] * rng.uniform(1, 3, far.sum())
    special = rng.uniform(size=n) < mix["special"]
    pool = special_values(dtype)
    finite_pool = pool[np.isfinite(pool)]
    v[special] = rng.choice(finite_pool, special.sum())
    nonfinite = rng.uniform(size=n) < mix["nonfinite"]
    v[nonfinite] = rng.choice(np.array([math.nan, math.inf, -math.inf]), nonfinite.sum())
    return v


LAYOUTS = ("contiguous", "transposed", "sliced", "offset", "expanded", "channels_last", "permuted")


def build_tensor(rng, shape, dtype, layout, mix, axis: int = 0) -> torch.Tensor:
    """A tensor of `shape` and `dtype` laid out as `layout` (falls back to contiguous where the
    layout needs more dimensions)."""

    def fill(base_shape):
        n = int(np.prod(base_shape, dtype=np.int64))
        return torch.from_numpy(make_values(rng, n, dtype, mix)).reshape(base_shape).to(dtype)

    nd = len(shape)
    if layout == "transposed" and nd >= 2:
        return fill(shape[::-1]).permute(*reversed(range(nd)))
    if layout == "permuted" and nd >= 3:
        perm = [nd - 1] + list(range(nd - 1))
        inverse = [perm.index(i) for i in range(nd)]
        return fill([shape[p] for p in inverse]).permute(*perm)
    if layout == "sliced" and nd >= 1:
        step = 2 + axis % 2
        base = list(shape)
        base[-1] = shape[-1] * step
        return fill(base)[..., ::step]
    if layout == "offset" and nd >= 1:  # nonzero storage offset, gaps in the first dim
        base = [shape[0] * 2 + 1, *shape[1:]]
        return fill(base)[1::2]
    if layout == "expanded" and nd >= 1:
        a = axis % nd
        base = list(shape)
        base[a] = 1
        return fill(base).expand(*shape)
    if layout == "channels_last" and nd == 4:
        return fill(shape).contiguous(memory_format=torch.channels_last)
    return fill(shape)


@st.composite
def shapes(draw):
    kind = draw(st.sampled_from(["small", "small", "small", "empty", "scalar", "one", "large"]))
    if kind == "scalar":
        return ()
    if kind == "one":
        return (1,) * draw(st.integers(1, 3))
    if kind == "empty":
        nd = draw(st.integers(1, 3))
        dims = draw(st.lists(st.integers(0, 4), min_size=nd, max_size=nd))
        dims[draw(st.integers(0, nd - 1))] = 0
        return tuple(dims)
    if kind == "large":  # more than one parallel task of the CPU kernel (grain 16384), ragged tail
        return (draw(st.integers(16385, 40000)),)
    nd = draw(st.integers(1, 4))
    return tuple(draw(st.lists(st.integers(1, 9), min_size=nd, max_size=nd)))


def make_coeffs(rng: np.random.Generator, degree: int) -> list:
    """Coefficients of mixed magnitudes (1e-3 .. 1e3), with zeros and the odd extreme one."""
    c = rng.standard_normal(degree + 1) * 10.0 ** rng.uniform(-3, 3, degree + 1)
    c[rng.uniform(size=degree + 1) < 0.2] = 0.0
    extreme = rng.uniform(size=degree + 1) < 0.01
    c[extreme] = rng.choice([1e-30, -1e-30, 1e30, -1e30], extreme.sum())
    return c.tolist()


def coeff_forms(coeffs: list, form: str):
    """The same coefficients as the API accepts them; returns (argument, values the op sees)."""
    if form == "tuple":
        return tuple(coeffs), coeffs
    if form == "numpy":
        return np.array(coeffs), coeffs
    if form == "tensor64":
        return torch.tensor(coeffs, dtype=torch.float64), coeffs
    if form == "tensor32_strided":
        t32 = torch.tensor(coeffs * 2, dtype=torch.float32)[::2]  # float32 rounding, non-contiguous
        return t32, t32.double().tolist()
    return list(coeffs), coeffs


@st.composite
def series_cases(draw, budget: int = 2_500_000):
    """A valid call of legendre_series: (t, coeffs argument, coeffs seen, dim, reduction)."""
    shape = draw(shapes())
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    layout = draw(st.sampled_from(LAYOUTS))
    numel = int(np.prod(shape, dtype=np.int64))
    max_degree = int(min(1000, budget // max(numel, 1)))
    degree = draw(
        st.one_of(st.integers(0, min(6, max_degree)), st.integers(0, max_degree), st.sampled_from([0, 1, max_degree]))
    )
    dim = draw(st.one_of(st.integers(2, 10), st.integers(2, 100_000), st.sampled_from([2, 3, 32768, 100_000])))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    t = build_tensor(rng, shape, dtype, layout, draw(value_mixes()), axis=draw(st.integers(0, 3)))
    coeffs = make_coeffs(rng, degree)
    arg, seen = coeff_forms(coeffs, draw(st.sampled_from(["list", "tuple", "numpy", "tensor64", "tensor32_strided"])))
    reduction = draw(st.sampled_from(["none", "none", "mean", "sum"]))
    note(
        f"shape={shape} dtype={dtype} layout={layout} stride={t.stride()} degree={degree} dim={dim} "
        f"reduction={reduction} seed={seed}"
    )
    return t, arg, seen, dim, reduction


# ---------------------------------------------------------------------------------------------
# Properties of the operator


@fuzz_settings(in_suite=300)
@given(case=series_cases())
def test_series_matches_float64_oracle(case):
    t, arg, coeffs, dim, reduction = case
    with watchdog():
        got = sfrik_plugin.legendre_series(t, arg, dim, reduction=reduction)
    assert got.dtype == t.dtype and got.device == t.device
    ref, tol, overflow, finite = expected_elementwise(t, coeffs, dim)
    if reduction == "none":
        assert got.shape == t.shape and got.stride() == torch.empty_like(t).stride()
        assert_matches(got, ref, tol, overflow, finite, t.dtype, "elementwise")
        return
    assert got.shape == ()
    n = ref.size
    if n == 0:
        assert (got.item() == 0.0) if reduction == "sum" else math.isnan(got.item())
        return
    with np.errstate(all="ignore"):
        total = ref.sum()
        # the kernel adds kFlushGroups = 64 groups in the compute type before a flush to double
        acc = 64 * torch.finfo(compute_dtype(t.dtype)).eps * np.abs(ref).sum()
        tol_total = tol.sum() + acc + torch.finfo(t.dtype).eps * abs(total)
        if reduction == "mean":
            total, tol_total = total / n, tol_total / n + torch.finfo(t.dtype).eps * abs(total / n)
    assert_matches(
        got.reshape(1),
        np.array([total]),
        np.array([tol_total]),
        np.array([overflow.any()]),
        np.array([finite.all()]),
        t.dtype,
        reduction,
    )


@fuzz_settings(in_suite=100)
@given(case=series_cases(budget=1_000_000), grad_kind=st.sampled_from(["ones", "random", "expanded", "transposed"]))
def test_autograd_gradient_matches_float64_oracle(case, grad_kind):
    t, arg, coeffs, dim, reduction = case
    # a leaf laid out as the kernels lay t out (t's strides when dense, else contiguous)
    x = torch.empty_like(t).copy_(t).requires_grad_()
    with watchdog():
        out = sfrik_plugin.legendre_series(x, arg, dim, reduction=reduction)
        rng = np.random.default_rng(len(coeffs) + dim)
        if reduction == "none":
            if grad_kind == "ones":
                gout = torch.ones_like(out)
            elif grad_kind == "expanded":
                gout = torch.tensor(0.75, dtype=out.dtype).expand_as(out)
            elif grad_kind == "transposed" and out.dim() >= 2:
                rev = list(reversed(range(out.dim())))
                gout = torch.from_numpy(rng.uniform(-2, 2, out.shape[::-1])).to(out.dtype).permute(*rev)
            else:
                gout = torch.from_numpy(rng.uniform(-2, 2, out.shape)).to(out.dtype)
        else:
            gout = torch.tensor(rng.uniform(-2, 2), dtype=out.dtype)
        (grad,) = torch.autograd.grad(out, x, gout)
    assert grad.shape == x.shape and grad.dtype == x.dtype
    g = np.broadcast_to(gout.double().numpy(), x.shape)
    if reduction == "mean":
        g = g / max(x.numel(), 1)
    ref, tol, overflow, finite = expected_elementwise(x, coeffs, dim, order=1, grad=g)
    if reduction == "mean":  # 1/n is rounded to the dtype of the grad before the kernel scales by it
        tol = tol + 2 * torch.finfo(x.dtype).eps * np.abs(ref)
    assert_matches(grad, ref, tol, overflow, finite, x.dtype, f"d/dt ({reduction})")


@fuzz_settings(in_suite=100)
@given(
    case=series_cases(budget=1_000_000),
    order=st.integers(0, 3),
    grad_kind=st.sampled_from(["elementwise", "zero_dim", "expanded", "other_layout"]),
)
def test_backward_op_matches_float64_oracle(case, order, grad_kind):
    # The raw operator autograd builds on: grad * d^order/dt^order psi(t), any grad layout.
    t, _, coeffs, dim, _ = case
    rng = np.random.default_rng(order + dim)
    if grad_kind == "zero_dim":
        grad = torch.tensor(rng.uniform(-2, 2), dtype=t.dtype)
    elif grad_kind == "expanded":
        grad = torch.tensor(rng.uniform(-2, 2), dtype=t.dtype).expand(t.shape)
    else:
        grad = torch.from_numpy(rng.uniform(-2, 2, t.shape)).to(t.dtype)
        if grad_kind == "other_layout" and t.dim() >= 2:
            rev = list(reversed(range(t.dim())))
            grad = grad.permute(*rev).contiguous().permute(*rev)  # same shape, reversed strides
    with watchdog():
        got = torch.ops.sfrik.legendre_series_backward(grad, t, coeffs, dim, order)
    assert got.shape == t.shape and got.stride() == torch.empty_like(t).stride()
    g = np.broadcast_to(grad.double().numpy(), t.shape)
    ref, tol, overflow, finite = expected_elementwise(t, coeffs, dim, order=order, grad=g)
    assert_matches(got, ref, tol, overflow, finite, t.dtype, f"order {order}")


def test_oracle_against_scipy():
    # The oracle itself, against scipy's closed forms (values and first derivatives).
    t = np.linspace(-1, 1, 41)
    for dim in (2, 3, 7, 1000):
        for degree in (0, 1, 2, 5, 17):
            c = [0.0] * degree + [1.0]
            np.testing.assert_allclose(oracle(t, c, dim)[0], scipy_legendre(degree, dim, t), atol=1e-12)
            np.testing.assert_allclose(
                oracle(t, c, dim, 1)[0], scipy_legendre_derivative(degree, dim, t), atol=1e-10 * max(1, degree**2)
            )
    # and the second derivative against a central difference of the first
    h = 1e-6
    c = [0.3, -1.0, 2.0, 0.5, 4.0]
    d2 = (oracle(t + h, c, 5, 1)[0] - oracle(t - h, c, 5, 1)[0]) / (2 * h)
    np.testing.assert_allclose(oracle(t, c, 5, 2)[0], d2, atol=1e-6)
