"""Public API of the Legendre-series operators: argument checks, then the compiled operator
(torch.ops.sfrik.*) or, when it is unavailable for the tensor's device, the pure-PyTorch
reference with a one-time warning (an error with SFRIK_REQUIRE_EXTENSION=1)."""

from __future__ import annotations

import collections.abc
import math
import operator
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

import torch

from . import _extension
from .reference import legendre_series_reference

if TYPE_CHECKING:
    import numpy

if _extension._C is not None:
    from . import ops as _ops  # noqa: F401  (registers fake kernels, autograd and autocast)

Coeffs = Sequence[float] | torch.Tensor
REDUCTIONS = ("none", "mean", "sum")
_warned_devices: set[str] = set()


# The kernels' dtypes: is_floating_point() also admits the float8 types, which no kernel handles.
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_t(t: object) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"t must be a floating-point tensor (float16, bfloat16, float32, float64), got {t.dtype}")


_INT64_MAX = 2**63 - 1


def check_int(value: Any, name: str, minimum: int) -> int:
    """An integer (not a bool or a float) >= minimum, named in the error."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer >= {minimum}, got {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if value > _INT64_MAX:  # the operators take int64; the dispatcher's own error does not name the argument
        raise ValueError(f"{name} must be an integer between {minimum} and 2**63 - 1, got {value}")
    return value


def check_dim(dim: object) -> int:
    """dim is the ambient dimension q of the sphere S^{q-1}; q = 2 gives Chebyshev polynomials."""
    return check_int(dim, "dim", 2)


def _is_numpy_array(value: object) -> TypeGuard[numpy.ndarray]:
    np = sys.modules.get("numpy")  # an array exists only if numpy is imported already
    return np is not None and isinstance(value, np.ndarray)


def check_coeffs(coeffs: Coeffs, name: str = "coeffs") -> list[float]:
    if isinstance(coeffs, torch.Tensor):
        if coeffs.requires_grad:
            raise ValueError(
                f"{name}: gradients with respect to the coefficients are not supported; "
                "pass floats or a tensor that does not require grad"
            )
        if coeffs.dim() != 1:
            raise ValueError(f"{name} must be a 1-D tensor, got shape {tuple(coeffs.shape)}")
        coeffs = coeffs.detach().cpu().tolist()
    elif _is_numpy_array(coeffs):
        if coeffs.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array, got shape {coeffs.shape}")
        if coeffs.dtype.kind not in "fiu":  # bool, complex, objects, strings
            raise TypeError(f"{name} must hold real numbers, got an array of {coeffs.dtype}")
        coeffs = coeffs.tolist()
    elif isinstance(coeffs, (str, bytes, collections.abc.Set, collections.abc.Mapping)) or not hasattr(
        coeffs, "__len__"
    ):
        # sets and mappings have a length but no order of degrees
        raise TypeError(f"{name} must be a sequence of floats or a 1-D tensor, got {type(coeffs).__name__}")
    out = []
    for k, c in enumerate(coeffs):
        if isinstance(c, bool):
            raise TypeError(f"{name}[{k}] must be a float, got {c!r}")
        try:
            c = float(c)
        except (TypeError, ValueError):
            raise TypeError(f"{name}[{k}] must be a float, got {c!r}") from None
        if not math.isfinite(c):
            raise ValueError(f"{name} must be finite, got {name}[{k}] = {c}")
        out.append(c)
    if not out:
        raise ValueError(f"{name} must be non-empty")
    return out


def _use_extension(t: torch.Tensor) -> bool:
    if _extension.available_for(t):
        return True
    reason = (
        _extension.LOAD_ERROR
        if _extension._C is None
        else f"sfrik_plugin._C was built without {t.device.type.upper()} kernels"
    )
    if _extension._require_extension():
        raise RuntimeError(f"{reason}; {_extension.REQUIRE_ENV}=1 forbids the pure-PyTorch fallback")
    if _extension._C is not None and t.device.type not in _warned_devices:
        _warned_devices.add(t.device.type)
        warnings.warn(
            f"{reason}: using the pure-PyTorch reference on {t.device.type} (slower, more memory)",
            RuntimeWarning,
            stacklevel=3,
        )
    return False


def _reference(t: torch.Tensor, coeffs: list[float], dim: int, reduction: str) -> torch.Tensor:
    # Same numerics contract as the compiled op: float16/bfloat16 computed in float32, and
    # float32 output under autocast, except for float64 input, which autocast's float32 rule leaves
    # in float64 (torch.library.register_autocast casts only the lower-precision floating types).
    autocast = torch.is_autocast_enabled(t.device.type) and t.dtype != torch.float64
    out_dtype = torch.float32 if autocast else t.dtype
    work = t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
    with torch.autocast(t.device.type, enabled=False):
        out = legendre_series_reference(work, coeffs, dim)
        if reduction == "mean":
            out = out.mean()
        elif reduction == "sum":
            out = out.sum()
    return out.to(out_dtype)


def legendre_series(t: torch.Tensor, coeffs: Coeffs, dim: int, reduction: str = "none") -> torch.Tensor:
    """sum_k coeffs[k] * P_k(dim; t), with P_k(dim; .) the Legendre polynomial in dimension dim,
    normalised so that P_k(dim; 1) = 1; coeffs[0] is degree 0 (numpy.polynomial.legendre.legval's
    order).

    reduction: "none" (elementwise, same shape as t), "mean" or "sum" over all elements; the
    reductions run fused and never write the elementwise result. Differentiable in t (any order).
    """
    _check_t(t)
    coeffs = check_coeffs(coeffs)
    dim = check_dim(dim)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not _use_extension(t):
        return _reference(t, coeffs, dim, reduction)
    if reduction == "none":
        return torch.ops.sfrik.legendre_series(t, coeffs, dim)
    return torch.ops.sfrik.legendre_series_reduce(t, coeffs, dim, reduction == "mean")


def legendre(t: torch.Tensor, degree: int, dim: int) -> torch.Tensor:
    """P_degree(dim; t), elementwise (P_degree(dim; 1) = 1; dim = 3 is the classical Legendre
    polynomial, dim = 2 Chebyshev's T)."""
    degree = check_int(degree, "degree", 0)
    return legendre_series(t, [0.0] * degree + [1.0], dim)
