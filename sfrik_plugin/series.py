"""Public API of the Legendre-series operators: argument checks, then the compiled operator
(torch.ops.sfrik.*) or, when it is unavailable for the tensor's device, the fallback (the reference
recurrence under torch.compile, sfrik_plugin.fallback) with a one-time warning that says how to get
the kernels (an error with SFRIK_REQUIRE_EXTENSION=1)."""

from __future__ import annotations

import warnings

import torch

from . import _extension, fallback
from .validation import (
    REDUCTIONS,
    Coeffs,
    check_choice,
    check_coeffs,
    check_floating_tensor,
    check_int,
    check_q,
    renamed_kwargs,
)

if _extension._C is not None:
    from . import ops as _ops  # registers fake kernels, autograd, vmap and autocast; the entry points

_warned_devices: set[str] = set()


def _use_extension(t: torch.Tensor) -> bool:
    if _extension.reference_forced():
        return False  # (a benchmark or test asked for the fallback: no warning, no error)
    if _extension.available_for(t):
        return True
    device = t.device.type
    reason = _extension.LOAD_ERROR if _extension._C is None else f"sfrik_plugin._C was built without {device} kernels"
    if _extension._require_extension():
        raise RuntimeError(f"{reason}; {_extension.REQUIRE_ENV}=1 forbids the pure-PyTorch fallback")
    if _extension._C is not None and device not in _warned_devices:
        _warned_devices.add(device)
        warnings.warn(fallback_warning(device), RuntimeWarning, stacklevel=3)
    return False


def fallback_warning(device: str) -> str:
    """The one-time warning of a device the compiled extension has no kernels for: what runs
    instead, and the command (with the toolkit it needs) that builds the kernels."""
    how = _extension.CUDA_BUILD_HINT if device == "cuda" else _extension.REBUILD_HINT
    return (
        f"sfrik_plugin._C was built without {device.upper()} kernels: using the pure-PyTorch fallback on {device} "
        f"(the recurrence under torch.compile; slower, more memory). To get the {device.upper()} kernels, {how}."
    )


def _reference(t: torch.Tensor, coeffs: list[float], q: int, reduction: str) -> torch.Tensor:
    # Same numerics contract as the compiled op: float16/bfloat16 computed in float32, and
    # float32 output under autocast, except for float64 input, which autocast's float32 rule leaves
    # in float64 (torch.library.register_autocast casts only the lower-precision floating types).
    autocast = torch.is_autocast_enabled(t.device.type) and t.dtype != torch.float64
    out_dtype = torch.float32 if autocast else t.dtype
    work = t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
    with torch.autocast(t.device.type, enabled=False):
        if reduction == "none":
            out = fallback.series_times(work, None, coeffs, q)
        else:
            out = fallback.series_reduce(work, coeffs, q, mean=reduction == "mean")
    return out.to(out_dtype)


@renamed_kwargs(dim="q")
def legendre_series(t: torch.Tensor, coeffs: Coeffs, q: int, reduction: str = "none") -> torch.Tensor:
    """The Legendre series sum_k coeffs[k] P_k(q; t), elementwise or reduced.

    P_k(q; .) is the Legendre polynomial of degree k in dimension q (the sphere S^(q-1) of R^q),
    normalised so that P_k(q; 1) = 1: q = 3 gives the classical Legendre polynomials, q = 2
    Chebyshev's T, other q the Gegenbauer polynomials C_k^((q-2)/2) divided by their value at 1.
    Differentiable in t to any order. The reductions run fused and never write the elementwise
    result.

    Args:
        t: Values in [-1, 1] (e.g. a Gram matrix of unit vectors); float16, bfloat16, float32 or
            float64, any shape and layout, CPU or CUDA. Half inputs are computed in float32.
        coeffs: The coefficients, degree 0 first (numpy.polynomial.legendre.legval's order): a
            non-empty sequence of finite floats, a 1-D array, or a 1-D tensor without gradient.
        q: The sphere's ambient dimension, an integer >= 2. (Was ``dim``: still accepted, with a
            DeprecationWarning, for one release.)
        reduction: "none" (same shape as t), "mean" or "sum" (a 0-dim tensor).

    Returns:
        The series, in t's dtype (float32 under autocast for half inputs).

    Raises:
        TypeError: t is not a floating-point tensor, or coeffs or q have the wrong type.
        ValueError: coeffs is empty or not finite, q < 2, or reduction is unknown.

    Example:
        >>> t = torch.linspace(-1, 1, 5, dtype=torch.float64)
        >>> legendre_series(t, [0.0, 0.0, 1.0], q=3)  # P_2(t) = (3 t^2 - 1) / 2
        tensor([ 1.0000, -0.1250, -0.5000, -0.1250,  1.0000], dtype=torch.float64)
    """
    check_floating_tensor(t, "t")
    coeffs = check_coeffs(coeffs)
    q = check_q(q)
    check_choice(reduction, "reduction", REDUCTIONS)
    if not _use_extension(t):
        return _reference(t, coeffs, q, reduction)
    if reduction == "none":
        return _ops.legendre_series(t, coeffs, q)
    return _ops.legendre_series_reduce(t, coeffs, q, reduction == "mean")


@renamed_kwargs(dim="q")
def legendre(t: torch.Tensor, degree: int, q: int) -> torch.Tensor:
    """The Legendre polynomial P_degree(q; t), elementwise (P_degree(q; 1) = 1).

    Args:
        t: Values in [-1, 1], as for legendre_series.
        degree: An integer >= 0.
        q: The sphere's ambient dimension, an integer >= 2 (was ``dim``, deprecated).

    Returns:
        P_degree(q; t), shaped like t.

    Raises:
        TypeError, ValueError: as legendre_series; degree not an integer >= 0.

    Example:
        >>> legendre(torch.tensor([0.5], dtype=torch.float64), 2, q=2)  # Chebyshev T_2(t) = 2 t^2 - 1
        tensor([-0.5000], dtype=torch.float64)
    """
    degree = check_int(degree, "degree", 0)
    return legendre_series(t, [0.0] * degree + [1.0], q)
