"""Property-based fuzzing (hypothesis) of the operators (sfrik_plugin.series, the sfrik:: ops)
on the CPU; test_fuzz_losses.py does the losses.

Every generated case either raises a TypeError or ValueError naming the bad argument, or matches
an independent float64 oracle (numpy recurrences written in helpers.fuzz, not the package's
reference) within the rounding bound derived there; never a crash, a hang (each example runs under
a watchdog) or a wrong number.

Example counts: see helpers.fuzz (SFRIK_FUZZ_EXAMPLES=N for the long run, scripts/fuzz.py).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from helpers.cuda import requires_extension
from helpers.fuzz import FLOAT_DTYPES, compute_dtype, fuzz_settings, oracle, tolerance, watchdog
from helpers.references import scipy_legendre, scipy_legendre_derivative
from hypothesis import given, note
from hypothesis import strategies as st

import sfrik_plugin

pytestmark = requires_extension

OTHER_DTYPES = (
    torch.int8,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
    torch.complex64,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
)


def assert_matches(got: torch.Tensor, ref, tol, overflow, finite_input, dtype, what: str):
    """got (the kernel) against ref (float64 oracle), elementwise:
      - within tol, or
      - +-inf where a value within tol of the exact one overflows the output dtype that way, or
      - NaN where the input was NaN and the oracle is NaN, or
      - any non-finite value where the oracle's intermediates overflow the compute type or the
        input was +-inf (then the exact polynomial value is out of reach of the recurrence).
    A finite wrong number is never accepted."""
    g = got.detach().double().numpy().reshape(np.shape(ref))
    ref, tol = np.asarray(ref, dtype=np.float64), np.asarray(tol, dtype=np.float64)
    big = torch.finfo(dtype).max
    with np.errstate(all="ignore"):
        ok = np.abs(g - ref) <= tol
        ok |= np.isinf(g) & (np.where(g > 0, ref + tol, -(ref - tol)) >= big)  # reachable overflow
        ok |= np.isnan(g) & np.isnan(ref) & ~finite_input
        ok |= ~np.isfinite(g) & (overflow | (~finite_input & ~np.isnan(ref) & ~np.isfinite(ref)))
        ok |= ~np.isfinite(g) & ~finite_input & np.isnan(ref)
    if not ok.all():
        i = np.flatnonzero(~ok.ravel())[:5]
        raise AssertionError(
            f"{what}: {int((~ok).sum())} of {ok.size} values wrong; first: got "
            f"{g.ravel()[i]}, float64 oracle {ref.ravel()[i]}, tolerance {tol.ravel()[i]}"
        )


def overflows(scale, peak, dtype, grad=1.0):
    limit = torch.finfo(compute_dtype(dtype)).max / 16
    with np.errstate(all="ignore"):
        size = np.fmax(np.fmax(scale, peak), scale * np.abs(grad))
        return ~(size < limit)  # NaN counts


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


def expected_elementwise(t: torch.Tensor, coeffs, dim, order=0, grad=None):
    """(oracle value, tolerance, overflow mask, finite-input mask) for each element of t."""
    x = t.detach().double().numpy()
    value, scale, peak = oracle(x, coeffs, dim, order)
    g = 1.0 if grad is None else grad
    degree = len(coeffs) - 1
    with np.errstate(all="ignore"):
        ref = value * g
    return ref, tolerance(ref, scale, t.dtype, degree, x, g), overflows(scale, peak, t.dtype, g), np.isfinite(x)


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


# ---------------------------------------------------------------------------------------------
# Bad arguments: always a TypeError or ValueError that names one of the bad arguments

BAD_T = [
    torch.arange(3),
    torch.tensor([True]),
    torch.zeros(2, dtype=torch.complex64),
    torch.zeros(2, dtype=torch.uint8),
    torch.zeros(2).to(torch.float8_e4m3fn),
    torch.zeros(2).to(torch.float8_e5m2),
    [0.5],
    np.ones(3),
    0.5,
    None,
    "t",
]
BAD_COEFFS = [
    [],
    [math.nan],
    [1.0, math.inf],
    [1.0, -math.inf],
    ["a"],
    [1.0, None],
    [True],
    [1.0, [2.0]],
    "abc",
    3.0,
    None,
    {1.0, 2.0},
    {0: 1.0},
    torch.ones(2, 2),
    torch.ones(3, requires_grad=True),
    torch.tensor([1.0, math.nan]),
    torch.tensor([]),
    np.array(3.0),
    np.ones((2, 1)),
    np.array([True]),
    np.array([1 + 2j]),
    np.array([math.inf]),
    [1e400],
]
BAD_DIM = [1, 0, -1, -(2**70), 2**63, 10**30, 2.0, 2.5, True, False, "3", None, np.float64(3.0), torch.tensor(3.0), [3]]
BAD_REDUCTION = ["max", "MEAN", None, 1, ""]
BAD_DEGREE = [-1, -(2**40), 2**64, 1.5, 2.0, True, "2", None]


@fuzz_settings(in_suite=150)
@given(data=st.data())
def test_bad_arguments_raise_clear_errors(data):
    api = data.draw(st.sampled_from(["legendre_series", "legendre"]))
    params = ("t", "coeffs", "q", "reduction") if api == "legendre_series" else ("t", "degree", "q")
    bad = [p for p in params if data.draw(st.booleans())] or [data.draw(st.sampled_from(params))]
    pools = {"t": BAD_T, "coeffs": BAD_COEFFS, "q": BAD_DIM, "reduction": BAD_REDUCTION, "degree": BAD_DEGREE}
    good = {
        "t": torch.linspace(-1, 1, 7, dtype=data.draw(st.sampled_from(FLOAT_DTYPES))),
        "coeffs": data.draw(st.sampled_from([[0.5, 1.0], (2.0,), np.array([0.0, 1.0, 3.0]), torch.ones(4)])),
        "q": data.draw(st.sampled_from([2, 3, np.int64(5), torch.tensor(7)])),
        "reduction": data.draw(st.sampled_from(["none", "mean", "sum"])),
        "degree": data.draw(st.integers(0, 5)),
    }
    args = {p: data.draw(st.sampled_from(pools[p])) if p in bad else good[p] for p in params}
    with watchdog(), pytest.raises((TypeError, ValueError)) as err:
        if api == "legendre":
            sfrik_plugin.legendre(args["t"], args["degree"], args["q"])
        else:
            sfrik_plugin.legendre_series(args["t"], args["coeffs"], args["q"], reduction=args["reduction"])
    message = str(err.value)
    # "coeffs[1] must be a float", "q must be an integer >= 2", "coeffs: gradients ...", ...
    assert any(re.match(rf"{name}[ \[:]", message) for name in bad), f"{message!r} names none of {sorted(bad)}"


@fuzz_settings(in_suite=80)
@given(data=st.data())
def test_raw_ops_reject_bad_values(data):
    # The compiled operators check what the schema cannot (torch.ops.sfrik.* called directly).
    ops = torch.ops.sfrik
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES))
    t = torch.linspace(-1, 1, 6, dtype=dtype)
    fault = data.draw(
        st.sampled_from(
            [
                "dim",
                "coeffs_empty",
                "coeffs_nonfinite",
                "order",
                "grad_shape",
                "grad_dtype",
                "t_dtype",
                "derivative_overflow",
            ]
        )
    )
    dim = data.draw(st.integers(-5, 1)) if fault == "dim" else 3
    coeffs = {
        "coeffs_empty": [],
        "coeffs_nonfinite": [1.0, data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))],
        "derivative_overflow": [0.0, 0.0, 1e308],
    }.get(fault, [0.5, 1.0, 2.0])
    order = data.draw(st.integers(-(2**62), -1)) if fault == "order" else 1
    grad = torch.ones_like(t)
    if fault == "grad_shape":
        grad = torch.ones(data.draw(st.sampled_from([(5,), (6, 1), (2, 3), (0,)])), dtype=dtype)
    if fault == "grad_dtype":
        grad = torch.ones(6, dtype=data.draw(st.sampled_from([d for d in FLOAT_DTYPES if d != dtype])))
    if fault == "t_dtype":
        t = torch.zeros(6).to(data.draw(st.sampled_from(OTHER_DTYPES)))
        grad = torch.ones(6)
    expected = {
        "dim": "q must be",
        "coeffs_empty": "coeffs must be",
        "coeffs_nonfinite": "coeffs must be finite",
        "order": "order must be",
        "grad_shape": "grad must have the shape",
        "grad_dtype": "grad must have the dtype",
        "t_dtype": "t must be a floating-point",
        "derivative_overflow": "overflows",
    }[fault]
    op = data.draw(
        st.sampled_from(
            ["series", "reduce", "backward"]
            if fault not in ("order", "grad_shape", "grad_dtype", "derivative_overflow")
            else ["backward"]
        )
    )
    with watchdog(), pytest.raises((TypeError, ValueError), match=expected):
        if op == "series":
            ops.legendre_series(t, coeffs, dim)
        elif op == "reduce":
            ops.legendre_series_reduce(t, coeffs, dim, data.draw(st.booleans()))
        else:
            ops.legendre_series_backward(grad, t, coeffs, dim, order)


@fuzz_settings(in_suite=30)
@given(
    order=st.one_of(st.integers(0, 5), st.integers(2**40, 2**62)),
    degree=st.integers(0, 8),
    dim=st.one_of(st.integers(2, 10), st.integers(2**62, 2**63 - 1)),
)
def test_extreme_dims_and_orders_do_not_hang(order, degree, dim):
    # dim + 2 * order beyond int64 and orders far above the degree (every such derivative is 0).
    t = torch.linspace(-1, 1, 9, dtype=torch.float64)
    coeffs = [1.0 + k for k in range(degree + 1)]
    with watchdog():
        got = torch.ops.sfrik.legendre_series_backward(torch.ones_like(t), t, coeffs, dim, order)
    if order > degree:
        assert torch.equal(got, torch.zeros_like(t))
    else:
        ref, tol, overflow, finite = expected_elementwise(t, coeffs, dim, order=order)
        assert_matches(got, ref, tol, overflow, finite, t.dtype, f"order {order} dim {dim}")


# ---------------------------------------------------------------------------------------------
# What the fuzzer found in the operator API, pinned (each failed before its fix)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_rejected_by_name(dtype):
    t = torch.zeros(3).to(dtype)  # is_floating_point() is True, no kernel handles it
    with pytest.raises(TypeError, match="^t must be a floating-point tensor"):
        sfrik_plugin.legendre_series(t, [1.0, 2.0], 3)
    with pytest.raises(TypeError, match="t must be a floating-point tensor"):
        torch.ops.sfrik.legendre_series(t, [1.0, 2.0], 3)


@pytest.mark.parametrize(
    "coeffs, error, match",
    [
        ({2.0, 1.0}, TypeError, "coeffs must be a sequence"),  # unordered: was accepted
        ({0: 1.0}, TypeError, "coeffs must be a sequence"),  # keys: was accepted
        (np.array(3.0), ValueError, "coeffs must be a 1-D array"),  # was "iteration over a 0-d array"
        (np.array([[1.0], [2.0]]), ValueError, "coeffs must be a 1-D array"),
        (np.array([True, False]), TypeError, "coeffs must hold real numbers"),  # was read as 1.0, 0.0
    ],
)
def test_coeff_containers_rejected_by_name(coeffs, error, match):
    with pytest.raises(error, match=match):
        sfrik_plugin.legendre_series(torch.zeros(3), coeffs, 3)


def test_integers_beyond_int64_rejected_by_name():
    # was the dispatcher's "Expected a value of type 'int' ... found type 'int'"
    with pytest.raises(ValueError, match=r"^q must be an integer between 2 and 2\*\*63 - 1"):
        sfrik_plugin.legendre_series(torch.zeros(3), [1.0], 2**63)
    with pytest.raises(ValueError, match=r"^degree must be an integer between 0 and 2\*\*63 - 1"):
        sfrik_plugin.legendre(torch.zeros(3), 2**64, 3)


def test_huge_order_and_dim_do_not_hang_or_overflow():
    # order 2**40 looped 2**40 times; dim + 2 at dim = 2**63 - 1 was a signed overflow (UBSan).
    t = torch.linspace(-1, 1, 5, dtype=torch.float64)
    with watchdog():
        zero = torch.ops.sfrik.legendre_series_backward(torch.ones_like(t), t, [1.0, 2.0, 3.0], 3, 2**40)
        big_dim = torch.ops.sfrik.legendre_series_backward(torch.ones_like(t), t, [1.0, 2.0, 3.0], 2**63 - 1, 1)
    assert torch.equal(zero, torch.zeros_like(t))
    torch.testing.assert_close(big_dim, 2.0 + 6.0 * t)  # q -> inf: P_2 -> t^2, so psi' -> 2 + 6 t
