"""Bad input gets a clear exception naming the argument, from the public API and from the raw ops,
on every device (the `device` fixture)."""

import math

import numpy as np
import pytest
import torch
from helpers.cuda import requires_extension

import sfrik_plugin

T = torch.linspace(-1, 1, 5)


@pytest.mark.parametrize(
    "q,exc",
    [
        (1, ValueError),
        (0, ValueError),
        (-3, ValueError),
        (2.0, TypeError),
        (3.5, TypeError),
        (True, TypeError),
        ("3", TypeError),
        (None, TypeError),
    ],
)
def test_bad_q(device, q, exc):
    with pytest.raises(exc, match="q must be an integer >= 2"):
        sfrik_plugin.legendre_series(T.to(device), [1.0, 2.0], q)


@pytest.mark.parametrize(
    "coeffs,exc,match",
    [
        ([], ValueError, "coeffs must be non-empty"),
        ([1.0, math.nan], ValueError, r"coeffs must be finite, got coeffs\[1\] = nan"),
        ([math.inf], ValueError, "coeffs must be finite"),
        (torch.tensor([1.0, -math.inf]), ValueError, "coeffs must be finite"),
        ("abc", TypeError, "coeffs must be a sequence of floats"),
        (3.0, TypeError, "coeffs must be a sequence of floats"),
        ([1.0, "x"], TypeError, r"coeffs\[1\] must be a float"),
        ([1.0, True], TypeError, r"coeffs\[1\] must be a float"),
        (torch.ones(2, 2), ValueError, "coeffs must be a 1-D tensor"),
        (torch.ones(3, requires_grad=True), ValueError, "gradients with respect to the coefficients"),
    ],
)
def test_bad_coeffs(device, coeffs, exc, match):
    with pytest.raises(exc, match=match):
        sfrik_plugin.legendre_series(T.to(device), coeffs, 3)


@pytest.mark.parametrize("t", [torch.arange(5), torch.tensor([True]), torch.zeros(2, dtype=torch.complex64)])
def test_non_floating_t(device, t):
    with pytest.raises(TypeError, match="t must be a floating-point tensor"):
        sfrik_plugin.legendre_series(t.to(device), [1.0], 3)


def test_t_not_a_tensor():
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        sfrik_plugin.legendre_series(np.ones(3), [1.0], 3)


def test_bad_reduction_and_degree(device):
    t = T.to(device)
    with pytest.raises(ValueError, match="reduction must be one of"):
        sfrik_plugin.legendre_series(t, [1.0], 3, reduction="max")
    with pytest.raises(ValueError, match="degree must be an integer >= 0"):
        sfrik_plugin.legendre(t, -1, 3)
    with pytest.raises(TypeError, match="degree must be an integer"):
        sfrik_plugin.legendre(t, 1.5, 3)


@requires_extension
def test_raw_ops_check_their_arguments(device):
    ops = torch.ops.sfrik
    t = T.to(device)
    with pytest.raises(ValueError, match="q must be an integer >= 2"):
        ops.legendre_series(t, [1.0], 1)
    with pytest.raises(ValueError, match="coeffs must be a non-empty"):
        ops.legendre_series(t, [], 3)
    with pytest.raises(ValueError, match="coeffs must be finite"):
        ops.legendre_series_reduce(t, [math.nan], 3, True)
    with pytest.raises(TypeError, match="t must be a floating-point tensor"):
        ops.legendre_series(torch.arange(3, device=device), [1.0], 3)
    with pytest.raises(TypeError, match="t must be a floating-point tensor"):
        ops.legendre_series_reduce(torch.arange(3, device=device), [1.0], 3, False)
    with pytest.raises(ValueError, match="grad must have the shape of t"):
        ops.legendre_series_backward(torch.ones(4, device=device), t, [1.0, 2.0], 3, 1)
    with pytest.raises(ValueError, match="grad must have the dtype of t"):
        ops.legendre_series_backward(torch.ones(5, dtype=torch.float64, device=device), t, [1.0, 2.0], 3, 1)
    with pytest.raises(ValueError, match="order must be >= 0"):
        ops.legendre_series_backward(torch.ones(5, device=device), t, [1.0, 2.0], 3, -1)


@requires_extension
def test_out_of_range_values_are_valid_input(device):
    # A Gram matrix of normalised rows can exceed 1 by rounding: the series is defined there.
    t = torch.tensor([1 + 3e-7, -1 - 3e-7], device=device)
    out = sfrik_plugin.legendre_series(t, [0.0, 1.0, 40.0, 40.0], 8192)
    assert torch.isfinite(out).all() and (out.abs() < 81.01).all()
