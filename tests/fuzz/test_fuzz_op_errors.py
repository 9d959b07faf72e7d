"""Property-based fuzzing (hypothesis) of the operators' arguments (sfrik_plugin.series, the
sfrik:: ops called directly) on the CPU: a bad argument always raises a TypeError or ValueError
that names it, extreme dims and derivative orders neither hang nor overflow, and what the fuzzer
found in the operator API stays fixed. test_fuzz_ops.py does the values and gradients.

Example counts: see helpers.fuzz (SFRIK_FUZZ_EXAMPLES=N for the long run, scripts/fuzz.py).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from helpers.cuda import requires_extension
from helpers.fuzz import (
    FLOAT_DTYPES,
    OTHER_DTYPES,
    assert_matches,
    expected_elementwise,
    fuzz_settings,
    watchdog,
)
from hypothesis import given
from hypothesis import strategies as st

import sfrik_plugin

pytestmark = requires_extension


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
